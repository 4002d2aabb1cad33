"""A face detector a lab trains on its own boxes (issue 33): `detector train` and `detector predict`.

Boxes: COCO JSON as CVAT and Label Studio export it (`read_coco`); an image entry with `video` and `frame` keys (the
`faces.json` of `synth --video`) is that frame of that video. At most one face per image; an image without an
annotation has none. The animal of an image: its `subject` or `animal` key, else the first group of the `animal`
regex applied to its `file_name`, else the `file_name`'s first folder.

Model: torchvision's FCOS (Tian et al. 2019: anchor-free, a box per location, no anchor sizes to fit to a lab's
boxes) with a 2-conv head over a 64-channel FPN on the stride 8/16/32 features of `tf_efficientnet_lite0` (timm),
ImageNet-initialised from the `lite0` weights that install offline (`engine.weights.lite0_state_dict`; torchvision's
own ImageNet backbones, e.g. MobileNetV3, need a download). One class, `face`; `detections_per_img=1`. As torchvision's
detection backbones do, BatchNorm is frozen and so are the stem and the first two stages. Chosen over Faster R-CNN on
the synthetic clips (160x120, 400 frames of four animals, two held out, 4 epochs, CPU): Faster R-CNN's first epoch
took 2.7x as long (RPN plus ROI heads) for a mean IoU of 0.85 against FCOS's 0.84. Images are resized so their longer
side is `image_size` (bilinear, antialiased) for training and detection alike; training flips half the images left to
right; AdamW with a one-cycle learning rate. Seeded: the same seed, data and thread count give the same weights.

Metrics (held-out animals): AP@0.5 of the best box per image, all-point interpolated (the area under the precision
envelope, PASCAL VOC 2010+); mean IoU of the best box with the true box (0 where none is found), over images with a
true box; the share of those with IoU >= 0.7.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import sys
import tempfile
from collections import OrderedDict
from dataclasses import asdict, dataclass, replace
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..errors import InputError
from ..paths import atomic_write_text
from .faces import iou

FORMAT = "ratspain-detector/1"
CLASSES = ("face",)
EXPERIMENT = "ratspain-detector"
META, WEIGHTS = "detector.json", "weights.safetensors"
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff")
CHANNELS = 64  # the FPN's and the FCOS head's width
HEAD_CONVS = 2  # conv layers of each FCOS head tower (torchvision's default 4: as good here, and slower)
MODEL = "fcos-tf_efficientnet_lite0-fpn"
MEAN_STD = (0.5, 0.5)  # tf_efficientnet_lite0's input normalisation (timm's pretrained config)


@dataclass(frozen=True)
class Settings:
    """Training and detection settings; the defaults suit the synthetic 160x120 clips on a CPU."""

    image_size: int = 128  # the longer side, px
    epochs: int = 12  # 6 left two of six held-out animals of the test clips under IoU 0.7 on a third of their frames
    batch_size: int = 8
    lr: float = 1e-3
    seed: int = 0
    # FCOS's score, sqrt(class probability x centerness): held-out faces of the synthetic clips score 0.7-0.9, but with
    # no face-less frames to learn from a blank frame scores 0.3-0.5 too; images without a box teach "no face"
    min_score: float = 0.5


@dataclass(frozen=True)
class Item:
    """One image of a COCO file: its `box` (x, y, w, h) or None, and where its pixels are (`path`, and `frame` of a video)."""

    id: int
    animal: str
    box: tuple | None
    width: int
    height: int
    path: Path
    frame: int | None
    entry: dict  # the COCO image entry as read (a folder's image: id, file_name, width, height)


# ---------------------------------------------------------------- reading


def read_coco(path, images_dir=None, animal: str | None = None) -> list[Item]:
    """The images and boxes of a COCO JSON; any problem is one InputError naming the file and the image/annotation id."""
    path = Path(path)
    root = Path(images_dir) if images_dir is not None else path.parent
    try:
        coco = json.loads(path.read_text(encoding="utf-8-sig"))
        images = {im["id"]: im for im in coco["images"]}
        annotations = list(coco.get("annotations", []))
    except (OSError, UnicodeDecodeError, ValueError) as e:
        raise InputError(f"{path}: not a COCO JSON file ({str(e).splitlines()[0]})") from None
    except (KeyError, TypeError, AttributeError):
        raise InputError(f"{path}: not a COCO JSON file (expected `images` with an `id` each, and `annotations`)") from None
    boxes: dict = {}
    for a in annotations:
        what = f"{path}: annotation {a.get('id') if isinstance(a, dict) else a!r}"
        try:
            im = images.get(a["image_id"])
            box = tuple(float(v) for v in a["bbox"])
            if im is None:
                raise InputError(f"{what}: no image {a['image_id']}")
            if a["image_id"] in boxes:
                raise InputError(f"{what}: image {a['image_id']} has a second box; one face per image")
            x, y, w, h = box
            if w <= 0 or h <= 0 or x < -1 or y < -1 or x + w > float(im["width"]) + 1 or y + h > float(im["height"]) + 1:
                raise InputError(f"{what}: box {list(box)} outside image {im['id']} ({im['width']}x{im['height']})")
        except (KeyError, TypeError, ValueError) as e:
            raise InputError(f"{what}: {type(e).__name__} {e} (expected image_id and bbox [x, y, w, h])") from None
        boxes[a["image_id"]] = _clipped(box, float(im["width"]), float(im["height"]))
    categories = {a.get("category_id") for a in annotations}
    if len(categories) > 1:
        raise InputError(f"{path}: annotations of {len(categories)} categories ({sorted(map(str, categories))}); one, the face")
    pattern = re.compile(animal) if animal else None
    items = []
    for image_id, im in images.items():
        try:
            item = _item(im, boxes.get(image_id), root, pattern)
        except (KeyError, TypeError, ValueError) as e:
            raise InputError(f"{path}: image {image_id}: {type(e).__name__} {e}") from None
        if not item.path.is_file():
            raise InputError(f"{path}: image {image_id}: no file {item.path}")
        items.append(item)
    return items


def _clipped(box: tuple, width: float, height: float) -> tuple:
    """The part of a box (x, y, w, h) inside the image (it may stick out by 1 px: rounding in the tools' exports)."""
    x0, y0 = max(box[0], 0.0), max(box[1], 0.0)
    return x0, y0, min(box[0] + box[2], width) - x0, min(box[1] + box[3], height) - y0


def _item(im: dict, box: tuple | None, root: Path, pattern) -> Item:
    name = str(im["file_name"])
    if im.get("subject") or im.get("animal"):
        animal = str(im.get("subject") or im.get("animal"))
    elif pattern is not None:
        m = pattern.search(name)
        if m is None or not m.groups():
            raise ValueError(f"--animal {pattern.pattern!r} does not match {name!r} (or has no group)")
        animal = m.group(1)
    else:
        animal = Path(name).parts[0] if len(Path(name).parts) > 1 else ""
    video = "video" in im and "frame" in im
    return Item(int(im["id"]), animal, box, int(im["width"]), int(im["height"]),
                root / (im["video"] if video else name), int(im["frame"]) if video else None, im)


def read_folder(folder) -> list[Item]:
    """Every image file under `folder` (sorted; no boxes); the animal is the first folder of its relative path."""
    from PIL import Image

    folder = Path(folder)
    files = sorted(f for f in folder.rglob("*") if f.suffix.lower() in IMAGE_SUFFIXES and f.is_file())
    if not files:
        raise InputError(f"{folder}: no images ({', '.join(IMAGE_SUFFIXES)})")
    items = []
    for i, f in enumerate(files, start=1):
        rel = f.relative_to(folder)
        try:
            with Image.open(f) as im:
                width, height = im.size
        except OSError as e:
            raise InputError(f"{f}: not an image ({e})") from None
        entry = {"id": i, "file_name": rel.as_posix(), "width": width, "height": height}
        items.append(Item(i, rel.parts[0] if len(rel.parts) > 1 else "", None, width, height, f, None, entry))
    return items


def load_images(items: list[Item], convert=None) -> list:
    """The RGB pixels of each item (HxWx3 uint8) passed through `convert` as soon as read (what is kept, e.g. a
    smaller tensor): image files one by one, each video decoded once, in order."""
    import av
    from PIL import Image

    convert = convert or (lambda rgb: rgb)
    kept: dict = {}
    for video in dict.fromkeys(it.path for it in items if it.frame is not None):
        wanted = {it.frame: it for it in items if it.path == video}
        try:
            with av.open(str(video)) as container:
                for i, f in enumerate(container.decode(video=0)):
                    if i in wanted:
                        kept[video, i] = convert(_checked(f.to_ndarray(format="rgb24"), wanted[i]))
                    if i >= max(wanted):
                        break
        except (OSError, av.FFmpegError) as e:
            raise InputError(f"{video}: cannot be decoded ({e})") from None
    out = []
    for it in items:
        if it.frame is None:
            try:
                with Image.open(it.path) as im:
                    out.append(convert(_checked(np.asarray(im.convert("RGB")), it)))
            except OSError as e:
                raise InputError(f"{it.path}: image {it.id}: cannot be read ({e})") from None
        elif (it.path, it.frame) not in kept:
            raise InputError(f"{it.path}: image {it.id}: no frame {it.frame}")
        else:
            out.append(kept[it.path, it.frame])
    return out


def _checked(rgb: np.ndarray, it: Item) -> np.ndarray:
    if rgb.shape[:2] != (it.height, it.width):
        raise InputError(f"{it.path}: image {it.id} is {rgb.shape[1]}x{rgb.shape[0]}, its COCO entry says {it.width}x{it.height}")
    return rgb


# ---------------------------------------------------------------- the model


class _Lite0FPN(nn.Module):
    """tf_efficientnet_lite0's stride 8, 16 and 32 features (timm) under torchvision's FPN; BatchNorm frozen, and the
    stem and the first two stages (strides 2 and 4) too (torchvision's default: the last three stages train)."""

    def __init__(self, imagenet: bool):
        import timm
        from timm.layers import freeze_batch_norm_2d
        from torchvision.ops import FeaturePyramidNetwork

        super().__init__()
        body = timm.create_model("tf_efficientnet_lite0", features_only=True, out_indices=(2, 3, 4))
        if imagenet:
            from ..engine.weights import lite0_state_dict

            state = lite0_state_dict()
            body.load_state_dict({k: state[k] for k in body.state_dict()})
        self.body = freeze_batch_norm_2d(body)
        for name, p in self.body.named_parameters():
            p.requires_grad_(name.startswith("blocks.") and int(name.split(".")[1]) >= 2)
        self.out_channels = CHANNELS
        self.fpn = FeaturePyramidNetwork(body.feature_info.channels(), CHANNELS)

    def forward(self, x):
        return self.fpn(OrderedDict((str(i), f) for i, f in enumerate(self.body(x))))


def _build(s: Settings, imagenet: bool):
    from torchvision.models.detection import FCOS
    from torchvision.models.detection.anchor_utils import AnchorGenerator
    from torchvision.models.detection.fcos import FCOSHead

    anchors = AnchorGenerator(((8,), (16,), (32,)), ((1.0,),) * 3)  # one location per stride (FCOS's P3-P5)
    head = FCOSHead(CHANNELS, 1, len(CLASSES), num_convs=HEAD_CONVS)
    mean, std = MEAN_STD
    return FCOS(_Lite0FPN(imagenet), num_classes=len(CLASSES), anchor_generator=anchors, head=head, min_size=s.image_size,
                max_size=s.image_size, image_mean=[mean] * 3, image_std=[std] * 3, score_thresh=s.min_score,
                detections_per_img=1)


def scaled(rgb: np.ndarray, size: int) -> tuple[torch.Tensor, tuple[float, float]]:
    """An HxWx3 uint8 image as a 3xhxw float tensor in [0, 1], its longer side `size` (bilinear, antialiased), and the
    factors (x, y) from the image's pixels to the tensor's."""
    h, w = rgb.shape[:2]
    f = size / max(h, w)
    x = torch.from_numpy(np.ascontiguousarray(rgb)).permute(2, 0, 1).float().div_(255)
    th, tw = max(1, round(h * f)), max(1, round(w * f))
    if (th, tw) != (h, w):
        x = torch.nn.functional.interpolate(x[None], size=(th, tw), mode="bilinear", antialias=True, align_corners=False)[0]
    return x, (tw / w, th / h)


def _target(box, scale, width: int, flip: bool) -> dict:
    """FCOS's target for one scaled image (`width` its width): the box as x0, y0, x1, y1, mirrored where `flip`."""
    if box is None:
        return {"boxes": torch.zeros((0, 4)), "labels": torch.zeros(0, dtype=torch.int64)}
    x, y, w, h = box
    x0, x1 = x * scale[0], (x + w) * scale[0]
    if flip:
        x0, x1 = width - x1, width - x0
    return {"boxes": torch.tensor([[x0, y * scale[1], x1, (y + h) * scale[1]]]), "labels": torch.zeros(1, dtype=torch.int64)}


def fit(boxes: list, pixels: list, s: Settings, quiet: bool = True):
    """FCOS trained on `pixels` (`scaled` images) and their true `boxes` (x, y, w, h in the image's pixels, or None)."""
    torch.manual_seed(s.seed)
    model = _build(s, imagenet=True)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=s.lr, weight_decay=1e-4)
    n = len(pixels)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, s.lr, total_steps=s.epochs * -(-n // s.batch_size), pct_start=0.1)
    g = torch.Generator().manual_seed(s.seed)
    model.train()
    for epoch in range(s.epochs):
        order, flips = torch.randperm(n, generator=g).tolist(), (torch.rand(n, generator=g) < 0.5).tolist()
        total = 0.0
        for b in range(0, n, s.batch_size):
            batch = order[b:b + s.batch_size]
            images = [pixels[i][0].flip(-1) if flips[i] else pixels[i][0] for i in batch]
            targets = [_target(boxes[i], pixels[i][1], x.shape[-1], flips[i]) for i, x in zip(batch, images)]
            loss = sum(model(images, targets).values())
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            total += loss.item() * len(batch)
        if not quiet:
            print(f"[detector] epoch {epoch + 1}/{s.epochs} loss {total / n:.4f}", file=sys.stderr, flush=True)
    return model.eval()


class FaceDetector:
    """A trained detector: `detect(images)` gives each image's best face box (x, y, w, h, score) or None."""

    def __init__(self, model, settings: Settings):
        self.model, self.settings = model.eval(), settings

    def forward_only(self, tensors: list[torch.Tensor]) -> list[dict]:
        """The bare model on `scaled` tensors: torchvision's detections (boxes x0, y0, x1, y1 in the tensors' pixels)."""
        with torch.inference_mode():
            return self.model(tensors)

    def detect(self, images: list[np.ndarray], batch_size: int = 16) -> list[tuple | None]:
        """The best box of each HxWx3 uint8 RGB image, in its pixels, with its score; None where none scores above min_score."""
        return self.detect_scaled([scaled(im, self.settings.image_size) for im in images], batch_size)

    def detect_scaled(self, pixels: list, batch_size: int = 16) -> list[tuple | None]:
        """`detect` on images already `scaled` ((tensor, factors) each)."""
        out = []
        for b in range(0, len(pixels), batch_size):
            chunk = pixels[b:b + batch_size]
            for (_, (fx, fy)), d in zip(chunk, self.forward_only([x for x, _ in chunk])):
                if not len(d["scores"]):
                    out.append(None)
                    continue
                x0, y0, x1, y1 = d["boxes"][0].tolist()
                out.append((x0 / fx, y0 / fy, (x1 - x0) / fx, (y1 - y0) / fy, float(d["scores"][0])))
        return out

    def stamp(self) -> dict:
        """What changes when the detections could: the weights' digest (sha256 over the state dict) and min_score."""
        return {"format": FORMAT, "weights_sha256": _digest(self.model), "min_score": self.settings.min_score}


def _digest(model) -> str:
    h = hashlib.sha256()
    for k, v in model.state_dict().items():
        h.update(k.encode())
        h.update(v.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def load(folder, min_score: float | None = None) -> FaceDetector:
    """A model folder `detector train` wrote (`min_score`: another threshold than the trained one)."""
    from safetensors.torch import load_file

    folder = Path(folder)
    try:
        meta = json.loads((folder / META).read_text(encoding="utf-8"))
        if meta.get("format") != FORMAT:
            raise ValueError(f"format {meta.get('format')!r}")
        settings = Settings(**meta["settings"])
        state = load_file(str(folder / WEIGHTS))
    except (OSError, ValueError, TypeError, KeyError, AttributeError) as e:
        raise InputError(f"{folder}: not a face detector model of `detector train` ({META} and {WEIGHTS}: "
                         f"{type(e).__name__} {str(e).splitlines()[0] if str(e) else ''})") from None
    if min_score is not None:
        settings = _checked_settings(replace(settings, min_score=float(min_score)))
    model = _build(settings, imagenet=False)
    model.load_state_dict(state)
    return FaceDetector(model, settings)


def _checked_settings(s: Settings) -> Settings:
    if s.image_size < 32 or s.epochs < 1 or s.batch_size < 1 or s.lr <= 0 or not 0 <= s.min_score <= 1:
        raise InputError(f"detector settings {asdict(s)}: want image_size >= 32, epochs >= 1, batch_size >= 1, lr > 0 "
                         f"and min_score in [0, 1]")
    return s


# ---------------------------------------------------------------- metrics


def average_precision(scores, hits, n_true: int) -> float:
    """AP of detections (`scores`, `hits`: whether each matches a true box) over `n_true` true boxes, all-point
    interpolated: detections ranked by score (stable), the area under the precision envelope (PASCAL VOC 2010+)."""
    if n_true == 0:
        return float("nan")
    order = np.argsort(-np.asarray(scores, float), kind="stable")
    hits = np.asarray(hits, bool)[order]
    tp, fp = np.cumsum(hits), np.cumsum(~hits)
    precision = tp / np.maximum(tp + fp, 1)
    envelope = np.maximum.accumulate(precision[::-1])[::-1]
    recall_steps = np.diff(np.concatenate([[0.0], tp / n_true]))
    return float(np.sum(recall_steps * envelope))


def evaluate(found: list, truth: list) -> dict:
    """The best boxes found (x, y, w, h, score or None) against the true ones (x, y, w, h or None), per image:
    `ap50` (AP at IoU 0.5), `mean_iou` (0 where nothing is found) and `iou70` (share with IoU >= 0.7) over the images
    with a face; `images`, `faces`."""
    has = np.array([t is not None for t in truth], bool)
    overlap = np.array([float(iou(f[:4], t)[0]) if f is not None and t is not None else 0.0 for f, t in zip(found, truth)])
    det = [i for i, f in enumerate(found) if f is not None]
    ap = average_precision([found[i][4] for i in det], [has[i] and overlap[i] >= 0.5 for i in det], int(has.sum()))
    faces = overlap[has]
    return {"images": len(truth), "faces": int(has.sum()), "ap50": ap,
            "mean_iou": float(faces.mean()) if len(faces) else float("nan"),
            "iou70": float((faces >= 0.7).mean()) if len(faces) else float("nan")}


# ---------------------------------------------------------------- train and predict


def train(boxes, images=None, out=None, *, holdout=(), folds: bool = True, animal: str | None = None, every: int = 1,
          runs_dir="ratspain-runs", tracking_uri: str | None = None, quiet: bool = True, **settings) -> dict:
    """Train on the COCO file `boxes` (images under `images`, default its folder) and save the model folder `out`.

    Leave-one-animal-out first (each animal held out once: trained on the others, measured on it), unless `folds` is
    False; with `holdout` (animal names), that one fold only, and the model saved is the one trained without them.
    Otherwise the model saved is trained on every animal. `every`: only every N-th image of the file (for a file with
    a box on every frame of a video, whose neighbours are near-copies). `settings`: the fields of `Settings`. The folder (weights,
    `detector.json` with the settings, classes, metrics and code stamp) is written in a temporary sibling, logged to
    MLflow (experiment `ratspain-detector`, the project's store: `tracking_uri`, else $MLFLOW_TRACKING_URI, else
    RUNS_DIR/mlflow.db) and renamed when complete. Returns the content of `detector.json`."""
    from .. import __version__
    from ..evaluation.record import Store, git_commit, versions

    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise InputError(f"{out}: exists and is not empty; choose another --out or remove it")
    s = _checked_settings(Settings(**settings))
    items = read_coco(boxes, images, animal)[::_every(every)]
    animals = sorted({it.animal for it in items})
    holdout = list(holdout)
    if any(a not in animals for a in holdout) or len(holdout) >= len(animals):
        raise InputError(f"--holdout {','.join(holdout)}: want some of the animals of {boxes} ({', '.join(animals)}), not all")
    if folds and not holdout and len(animals) < 2:
        raise InputError(f"{boxes}: one animal ({animals[0] or 'none named'}); leave-one-animal-out needs two or more "
                         f"(name them with --animal REGEX) or train with --no-eval")
    if not any(it.box is not None for it in items if it.animal not in holdout):
        raise InputError(f"{boxes}: no boxes to train on")
    store = Store(runs_dir, tracking_uri)  # a store that cannot be opened fails before the training
    pixels = load_images(items, lambda rgb: scaled(rgb, s.image_size))
    per_animal, model = {}, None
    for held in [holdout] if holdout else [[a] for a in animals] if folds else []:
        train_on = [i for i, it in enumerate(items) if it.animal not in held]
        model = fit([items[i].box for i in train_on], [pixels[i] for i in train_on], s, quiet)
        for a in held:
            test = [i for i, it in enumerate(items) if it.animal == a]
            found = FaceDetector(model, s).detect_scaled([pixels[i] for i in test])
            per_animal[a] = evaluate(found, [items[i].box for i in test])
    if not holdout:
        model = fit([it.box for it in items], pixels, s, quiet)
    mean = {k: float(np.nanmean([m[k] for m in per_animal.values()])) for k in ("ap50", "mean_iou", "iou70")} if per_animal else {}
    run = store.client.create_run(store.experiment(EXPERIMENT), run_name=f"detector {Path(boxes).name}",
                                  tags={"ratspain.role": "detector"})
    run_id = run.info.run_id
    meta = {"format": FORMAT, "model": MODEL, "classes": list(CLASSES), "settings": asdict(s), "boxes": str(boxes),
            "animals": [a for a in animals if a not in holdout], "holdout": holdout,
            "images": sum(it.animal not in holdout for it in items), "metrics": {"per_animal": per_animal, "mean": mean},
            "weights": WEIGHTS, "weights_sha256": _digest(model),
            "code": {"ratspain_bench": __version__, "git_commit": git_commit(), "detector_py_sha256": _file_sha(__file__)},
            "versions": versions(), "mlflow_run": run_id, "tracking_uri": store.uri,
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent))
    try:
        from safetensors.torch import save_file

        save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(tmp / WEIGHTS))
        (tmp / META).write_text(json.dumps(meta, indent=1) + "\n", encoding="utf-8")
        store.log(run_id, params={"model": MODEL, **asdict(s), "boxes": str(boxes), "holdout": ",".join(holdout),
                                  "animals": ",".join(meta["animals"]), "images": meta["images"]},
                  metrics={**{f"{_metric_name(a)}.{k}": v for a, m in per_animal.items() for k, v in m.items()},
                           **{f"mean_{k}": v for k, v in mean.items()}})
        store.client.log_artifacts(run_id, str(tmp), "detector")
        if out.exists():
            out.rmdir()
        os.replace(tmp, out)
    except BaseException:
        store.client.set_terminated(run_id, "FAILED")
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    store.client.set_terminated(run_id, "FINISHED")
    return meta


def _every(every: int) -> int:
    if int(every) < 1:
        raise InputError(f"--every {every}: want a whole number >= 1")
    return int(every)


def _metric_name(text: str) -> str:
    return re.sub(r"[^\w./ -]", "_", text) or "_"


def _file_sha(path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()[:16]


def predict(model, source, out, *, images_dir=None, animal: str | None = None, min_score: float | None = None,
            every: int = 1) -> dict:
    """Each image's best face box from `model` (a folder or a FaceDetector) for a folder of images or the images of a
    COCO file (`source`), written to `out` as COCO JSON: the input's image entries and one annotation per face found
    with its `score` (category 1, `face`); `every`: only every N-th image. Returns {"out", "images", "found",
    "metrics"}: `metrics` (`evaluate`) where the COCO file has true boxes, else None."""
    detector = model if isinstance(model, FaceDetector) else load(model, min_score)
    source, out = Path(source), Path(out)
    items = (read_folder(source) if source.is_dir() else read_coco(source, images_dir, animal))[::_every(every)]
    found = detector.detect_scaled(load_images(items, lambda rgb: scaled(rgb, detector.settings.image_size)))
    annotations = []
    for it, f in zip(items, found):
        if f is not None:
            annotations.append({"id": len(annotations) + 1, "image_id": it.id, "category_id": 1, "iscrowd": 0,
                                "bbox": [round(v, 2) for v in f[:4]], "area": round(f[2] * f[3], 2), "score": round(f[4], 4)})
    coco = {"info": {"description": f"ratspain_bench detector predictions on {source}"}, "images": [it.entry for it in items],
            "annotations": annotations, "categories": [{"id": 1, "name": CLASSES[0]}]}
    atomic_write_text(out, json.dumps(coco, separators=(",", ":")) + "\n")
    truth = [it.box for it in items]
    metrics = evaluate(found, truth) if any(b is not None for b in truth) else None
    return {"out": out, "images": len(items), "found": len(annotations), "metrics": metrics}
