"""Config fields shared by the deep methods, and their `quick` and `paper` profiles.

`paper` (the class defaults) follows the paper's "Comparison methods and implementation detail":
batch 64, Adam, lr 1e-4, weight decay 0.01, images resized to 256 x 256, random 224 x 224 crops and
horizontal flips. Where the paper is silent we chose, and each choice is a field:
- epochs 30 (about 450 optimiser steps at batch 64 on the ~950 training images of a fold): a
  common fine-tuning length for a pretrained ResNet-18 on a dataset this small;
- weights `hub` (ImageNet): the paper "employs the convolutional layers of ResNet-18", and with
  ~950 training images a from-scratch ResNet-18 would be an unusual reading; `--weights none`
  gives the from-scratch variant, `--weights PATH` any local file;
- test view `center`: the 224 x 224 centre crop of the 256 x 256 image, the standard counterpart
  of random-crop training (`resize` feeds the whole image resized to 224 instead);
- Adam's weight decay is the L2 term of `torch.optim.Adam` (what "Adam, weight decay 0.01" means in
  PyTorch code); `optimizer="adamw"` gives decoupled decay;
- plain cross-entropy, no class weighting: the paper names no imbalance handling.

`quick` is sized for a 2-core CPU with no network: resnet18, painseeker-noprsc and painseeker together
run the 6-fold LORO on the 1,138-image replica in a few minutes. See QUICK below for what it trades.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

PAPER = dict(image_size=256, crop_size=224, test_crop="center", epochs=30, batch_size=64, optimizer="adam",
             lr=1e-4, weight_decay=0.01, weights="hub", finetune="full", flip=True, views=8)

# The quick profile: the paper's geometry (256 px images, 224 px crops, a 7 x 7 grid of K = 49 regions,
# so every k_high of the paper's Figure 5 grid, up to 20, is valid) with the backbone frozen: its region
# features are computed once per image (the centre crop, the test view), cached, and shared by resnet18,
# painseeker-noprsc, painseeker and every point of a sensitivity study; only the heads train (30 epochs,
# lr 1e-3: a linear head alone trains fast and safely at the larger rate), on features standardised per
# channel with the training fold's statistics. `views=0` trains the heads on the test view itself;
# `--set views=N` trains on N cached random crop + flip views instead (the paper's augmentation).
# Weights `none`, because `make demo` must run offline: a frozen random ResNet-18 carries little pain
# signal, so the resnet18/PainSeeker rows of a quick run test the whole pipeline at a faithful geometry;
# they are not a reproduction. With real weights the same frozen mode learns: the `lite0` extra's
# ImageNet EfficientNet-Lite0 (rows `lite0-linear` and `painseeker-lite0`) beats the best LBP-SVM.
# What each cached training view buys (benchmarks/quick_views.py, replica seed 0, pooled F1; each view
# costs one more backbone pass over all 1,138 images):
#   views             0 (test view)  1       2       3       4
#   lite0-linear      0.854          0.853   0.852   -       -
#   painseeker-lite0  0.821          0.836   0.835   -       -
#   resnet18          0.477          0.422   0.381   0.393   0.458
#   painseeker        0.600          0.548   0.529   0.541   0.545
# The linear head on real features gains nothing from crop + flip views; PainSeeker's region scores on
# real features gain 0.015 from one (`--set views=1`), at the cost of a second backbone pass (about 45 s
# of `make demo` on 2 cores); the random-backbone rows wander around chance whatever the views.
QUICK = dict(image_size=256, crop_size=224, test_crop="center", epochs=30, batch_size=64, optimizer="adam",
             lr=1e-3, weight_decay=0.01, weights="none", finetune="frozen", flip=True, views=0,
             standardize=True)


@dataclass(frozen=True)
class DeepConfig:
    """Shared deep-method settings (defaults = the `paper` profile)."""

    model: str = "resnet18"
    image_size: int = 256  # side of the images handed to fit/predict
    crop_size: int = 224  # random crop while training, the test view's size
    test_crop: str = "center"  # center | resize
    epochs: int = 30
    batch_size: int = 64
    optimizer: str = "adam"  # adam (L2 weight decay, the paper's) | adamw
    lr: float = 1e-4
    weight_decay: float = 0.01
    weights: str = "hub"  # none | hub | lite0 | PATH
    finetune: str = "full"  # full | frozen (cached backbone features, only the head trains)
    views: int = 8  # frozen mode: cached random crop+flip views per training image (0: train on the test view)
    flip: bool = True
    standardize: bool = False  # frozen mode: standardise region features per channel (training-fold statistics)
    compile: bool = False  # torch.compile the model (full fine-tuning)
    channels_last: bool = True
    amp: bool = True  # bf16 autocast on CUDA; ignored on the CPU

    PROFILES: ClassVar[dict] = {"quick": QUICK, "paper": PAPER}

    def validate(self) -> None:
        from ..errors import InputError

        if self.finetune not in ("full", "frozen"):
            raise InputError(f"finetune={self.finetune!r}: expected full or frozen")
        if self.optimizer not in ("adam", "adamw"):
            raise InputError(f"optimizer={self.optimizer!r}: expected adam or adamw")
        if self.test_crop not in ("center", "resize"):
            raise InputError(f"test_crop={self.test_crop!r}: expected center or resize")
        if self.crop_size > self.image_size:
            raise InputError(f"crop_size {self.crop_size} > image_size {self.image_size}")
        for name in ("epochs", "batch_size", "crop_size"):
            if getattr(self, name) < 1:
                raise InputError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.views < 0:
            raise InputError(f"views must be 0 (train on the test view) or more, got {self.views}")

    @property
    def training_views(self) -> list[int]:
        """Cached views a frozen head trains on: random crop + flip views 1..views, or with views 0 the test view itself."""
        return list(range(1, self.views + 1)) or [0]
