"""`DeepMethod`: the base class of the deep families; fit/predict for a timm backbone (seen as K region features) plus a trainable head.

Subclasses give `make_head(num_features, num_regions)` (a module mapping (B, K, C) region features to
logits, or to (logits, attention)) and may override `loss(output, y)` (default: cross-entropy).
`finetune="full"` trains backbone and head on augmented image batches; `finetune="frozen"` trains
the head only, on region features cached per image and view (see `features`).

Both tasks (`self.context.task`): `binary` heads give (B, 2) logits and train on the (N,) labels; `au`
heads give (B, 4, 3) logits (3 grades per AU, in `tasks.AUS` order) and train on `targets`' (N, 4)
grades, blanks -1, with `au_cross_entropy`; `predict` then builds `Predictions.from_au_proba`.

A saved model (`save`/`load`) is the backbone and the head in one safetensors file (the backbone
included in frozen mode too: a new image's features are computed from it, never read from a cache)
plus `deep.json` (regions, channels, whether the head standardises, the task); the config is saved by the caller.
"""
from __future__ import annotations

import contextlib
import dataclasses
import json
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..engine.augment import Normalizer, check_crop, eval_view, to_uint8_tensor
from ..engine.backbone import RegionBackbone
from ..engine.device import autocast, cpu_threads, deterministic, resolve_device, seed_everything
from ..engine.features import FeatureCache, fill, space_id
from ..engine.train import FeatureBatches, ImageBatches, make_optimizer, train
from ..engine.weights import create_backbone, input_size_kwargs, weights_id
from ..errors import InputError
from ..tasks import AUS, BLANK, GRADES, by_au, grades_matrix
from .base import Context, Method, Predictions, TestSet, TrainSet

_PREFLIGHTED: set[tuple] = set()  # (model, weights, crop size) whose starting weights were had in this process


class Standardized(nn.Module):
    """A head behind a fixed per-channel standardisation of its (B, K, C) region features.

    The mean and spread come from the training features of the fold (never the test rat's). Being
    affine and fixed, it only re-parameterises the linear layers that follow; it matters for a frozen
    backbone whose features are tiny (a random ResNet-18's are about 0.05), where the weight decay of
    the paper's optimiser otherwise holds the head at the class prior."""

    def __init__(self, head: nn.Module, mean: torch.Tensor, std: torch.Tensor):
        super().__init__()
        self.head = head
        self.register_buffer("mean", mean)
        self.register_buffer("std", std)
        self.register_buffer("scale", 1 / std, persistent=False)
        self.register_buffer("shift", -mean / std, persistent=False)

    def forward(self, regions):
        return self.head(torch.addcmul(self.shift, regions, self.scale))  # (x - mean) / std in one pass


_KEY_SUMS: dict[tuple, dict[str, tuple[torch.Tensor, torch.Tensor]]] = {}


def key_sums(feats: torch.Tensor, chunk: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
    """Per image, per channel: the sum and the sum of squares (float64) of (V, N, K, C) features over views and regions."""
    v, n, k, c = feats.shape
    total = torch.empty(n, c, dtype=torch.float64)
    sq = torch.empty(n, c, dtype=torch.float64)
    for s in range(0, n, chunk):
        x = feats[:, s:s + chunk].double()
        total[s:s + chunk] = x.sum(dim=(0, 2))
        sq[s:s + chunk] = (x * x).sum(dim=(0, 2))
    return total, sq


def stats_from_sums(total: torch.Tensor, sq: torch.Tensor, count: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and standard deviation per channel from per-image sums (rows) over `count` values each channel."""
    mean = total.sum(0) / count
    std = (sq.sum(0) / count - mean * mean).clamp_min(0).sqrt()
    return mean.float(), std.clamp_min(1e-6).float()


def channel_stats(feats: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel mean and standard deviation of (V, N, K, C) features, over views, images and regions."""
    v, n, k, _ = feats.shape
    return stats_from_sums(*key_sums(feats), v * n * k)


class DeepNet(nn.Module):
    def __init__(self, backbone: nn.Module, head: nn.Module):
        super().__init__()
        self.backbone, self.head = backbone, head

    def forward(self, x):
        return self.head(self.backbone(x))


def logits_of(output) -> torch.Tensor:
    return output[0] if isinstance(output, tuple) else output


def au_cross_entropy(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """The `au` task's loss: the mean over AUs of the cross-entropy of (B, A, 3) logits against (B, A) grades,
    each AU's averaged over the images graded for it (blank -1 ignored); an AU with no graded image in the
    batch adds nothing (no NaN, no gradient) and the mean is over the AUs that have one."""
    ce = F.cross_entropy(logits.float().flatten(0, 1), y.flatten(), ignore_index=BLANK, reduction="none").view_as(y)
    graded = (y != BLANK).sum(0)  # (A,) graded images per AU
    per_au = ce.sum(0) / graded.clamp_min(1)
    return per_au.sum() / (graded > 0).sum().clamp_min(1)


def as_cached(feats: torch.Tensor) -> torch.Tensor:
    """Features at the precision the frozen-feature cache hands a head (`FeatureCache.put`: float16 where
    every value fits, else float32), so a loaded frozen model sees new images as its head saw training ones."""
    feats = feats.float()
    return feats.half().float() if feats.abs().max() < 6e4 else feats


def au_proba(logits: torch.Tensor) -> dict[str, np.ndarray]:
    """{au: (N, 3) grade probabilities} from (N, 4, 3) logits, a softmax per AU."""
    p = torch.softmax(logits.float(), 2).cpu().numpy().astype(float)
    return by_au(p)


class DeepMethod(Method):
    tasks = ("binary", "au")
    predict_batch = 128
    WEIGHTS_FILE, SHAPE_FILE = "model.safetensors", "deep.json"

    def __init__(self, config, context=None):
        super().__init__(config, context)
        config.validate()
        self.backbone: RegionBackbone | None = None
        self.head: nn.Module | None = None
        self.net: nn.Module | None = None
        self.device = torch.device("cpu")
        self.losses: list[float] = []
        self.shape: tuple[int, int] | None = None  # (K regions, C channels) the head takes
        self.use_cache = True  # frozen mode: test features from the cache (False for a loaded model)

    @classmethod
    def prepare(cls, config, images, keys, context) -> None:
        """Frozen mode: every image's region features for the test view and each training view, one pass per
        (backbone, view), cached and shared by every fold, every method on that backbone and every study point."""
        if config.finetune == "frozen":
            cls(config, context).cached_features(keys, images, range(0, config.views + 1))  # views 0: the test view only

    @classmethod
    def parallel_folds(cls, config, device: str) -> bool:
        """Frozen heads on the CPU train on one thread each: folds run side by side on the cores."""
        return config.finetune == "frozen" and resolve_device(device).type == "cpu"

    @classmethod
    def preflight(cls, config) -> None:
        """The config's settings are valid and its starting weights can be had (hub reachable or cached, file readable)."""
        config.validate()
        key = (config.model, str(config.weights), config.crop_size)
        if config.weights != "none" and key not in _PREFLIGHTED:  # once a process (`run --protocol loro,pose-shift`)
            create_backbone(config.model, config.weights, **input_size_kwargs(config.model, config.crop_size))
            _PREFLIGHTED.add(key)

    # ------------------------------------------------------------ what subclasses give

    def make_head(self, num_features: int, num_regions: int) -> nn.Module:  # pragma: no cover - interface
        raise TypeError(f"{type(self).__name__} must implement make_head")

    def loss(self, output, y: torch.Tensor) -> torch.Tensor:
        if self.context.task == "au":
            return au_cross_entropy(logits_of(output), y)
        return F.cross_entropy(logits_of(output).float(), y)

    def targets(self, train_set: TrainSet) -> torch.Tensor:
        """What the loss trains on: (N,) labels (binary), or (N, 4) grades in `AUS` order, -1 blank (au)."""
        if self.context.task != "au":
            return torch.tensor(np.asarray(train_set.labels), dtype=torch.long)  # a copy: the labels may be read-only
        if train_set.au is None:
            raise InputError(f"{type(self).__name__}: the au task needs the training AU grades (TrainSet.au)")
        return torch.as_tensor(grades_matrix(train_set.au), dtype=torch.long)

    def out_shape(self) -> tuple[int, ...]:
        """A head's logits per image: (2,) for the binary task, (4 AUs, 3 grades) for the au task."""
        return (len(AUS), len(GRADES)) if self.context.task == "au" else (2,)

    # ------------------------------------------------------------ pieces

    def build_backbone(self) -> RegionBackbone:
        """The timm backbone with its weights; random initialisation is seeded by the context's seed."""
        if self.backbone is None:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(self.context.seed)
                net, self.weights_report = create_backbone(self.config.model, self.config.weights,
                                                           **input_size_kwargs(self.config.model, self.config.crop_size))
            self.backbone = RegionBackbone(net).to(self.device)
            if self.config.channels_last:
                self.backbone.to(memory_format=torch.channels_last)
        return self.backbone

    def probe(self) -> tuple[int, int]:
        """(K regions, C features) of the backbone at the crop size."""
        bb = self.build_backbone()
        was = bb.training
        bb.eval()
        with torch.no_grad():
            r = bb(torch.zeros(1, 3, self.config.crop_size, self.config.crop_size, device=self.device))
        bb.train(was)
        return r.shape[1], r.shape[2]

    def _new_head(self, c: int, k: int) -> nn.Module:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.context.seed + 1)
            return self.make_head(c, k).to(self.device)

    def feature_cache(self) -> FeatureCache:
        c = self.config
        precision = "bf16" if c.amp and resolve_device(self.context.device).type == "cuda" else "fp32"
        space = space_id(c.model, weights=weights_id(c.weights, self.context.seed), image_size=c.image_size, crop_size=c.crop_size,
                         test_crop=c.test_crop, flip=c.flip, precision=precision, channels_last=c.channels_last)
        return FeatureCache(space, self.context.cache_dir)

    def _encode(self):
        bb = self.build_backbone().eval()
        norm = Normalizer(bb.mean, bb.std, self.device, self.config.channels_last)

        def encode(batch_uint8):
            with torch.inference_mode(), autocast(self.device, self.config.amp):
                return bb(norm(batch_uint8))

        return encode

    def cached_features(self, keys, images: np.ndarray, views) -> torch.Tensor:
        """(len(views), N, K, C) features (as cached: float16 or float32), computing what the cache lacks."""
        cache = self.feature_cache()
        todo = sum(len(cache.missing(keys, v)) for v in views)
        if todo:
            self.context.progress(stage=f"computing {self.config.model} features for {todo} image views (cached for reuse)")
            imgs = to_uint8_tensor(images)
            check_crop(imgs, self.config.crop_size)
            fill(cache, keys, imgs, views, self._encode(), self.config.crop_size, self.config.test_crop,
                 self.config.flip, batch_size=self.predict_batch)
        views = list(views)
        first = cache.get(keys, views[0])
        out = np.empty((len(views), *first.shape), np.result_type(first.dtype, *(cache.dtype(v) for v in views)))
        out[0] = first
        for i, v in enumerate(views[1:], 1):
            cache.get(keys, v, out[i])
        return torch.from_numpy(out)

    def head_inputs(self, feats: torch.Tensor, stats) -> torch.Tensor:
        """A fold's training features as its head's batches take them: float32 and, with `stats`, standardised once
        for the whole fold (the same `addcmul` the `Standardized` head applies to test features) rather than per batch."""
        if stats is None:
            return feats.float()
        mean, std = stats
        shift, scale = -mean / std, 1 / std
        out = torch.empty(feats.shape, dtype=torch.float32)
        for v in range(len(feats)):
            torch.addcmul(shift, feats[v].float(), scale, out=out[v])
        return out

    def train_stats(self, keys, feats: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """`channel_stats` of a training set's cached features, from per-image sums remembered per (feature space,
        views): each image is summed once per process, and a fold, another method on the same backbone or a study
        point only adds the sums of its training images."""
        slot = _KEY_SUMS.setdefault((self.feature_cache().space, self.config.views), {})
        todo = [i for i, k in enumerate(keys) if k not in slot]
        if todo:
            total, sq = key_sums(feats[:, todo])
            for j, i in enumerate(todo):
                slot[keys[i]] = (total[j], sq[j])
        v, n, k, _ = feats.shape
        return stats_from_sums(torch.stack([slot[key][0] for key in keys]), torch.stack([slot[key][1] for key in keys]), v * n * k)

    # ------------------------------------------------------------ fit / predict

    def _start_fit(self, train_set: TrainSet) -> tuple[torch.Generator, torch.Tensor]:
        """The fit's device, seeds (the returned generator orders the batches) and targets."""
        self.device = resolve_device(self.context.device)
        generator = seed_everything(self.context.seed)
        labels = self.targets(train_set)
        if len(labels) < 2:
            raise InputError("training needs at least two images")
        return generator, labels

    def _frozen_batches(self, train_set: TrainSet, labels: torch.Tensor):
        """Frozen mode: ((K, C) of the cached region features, the standardisation or None, the head's batches)."""
        c = self.config
        feats = self.cached_features(train_set.keys, train_set.images, c.training_views)
        stats = [t.to(self.device) for t in self.train_stats(train_set.keys, feats)] if c.standardize else None
        return (feats.shape[2], feats.shape[3]), stats, FeatureBatches(self.head_inputs(feats, stats), labels, c.batch_size, self.device)

    def _frozen_head(self, shape: tuple[int, int], stats) -> nn.Module:
        """A new head for (K, C) features, returned to train on inputs standardised once; `self.head` applies `stats`."""
        self.shape = shape
        model = self._new_head(shape[1], shape[0])
        self.head = Standardized(model, *stats) if stats else model
        return model

    def _train(self, model: nn.Module, loss, batches, generator: torch.Generator) -> list:
        c = self.config
        runner = torch.compile(model) if c.compile and c.finetune == "full" else model
        opt = make_optimizer(model.parameters(), c.optimizer, c.lr, c.weight_decay)
        small = c.finetune == "frozen" and self.device.type == "cpu"
        with cpu_threads(1) if small else contextlib.nullcontext():
            return train(runner, loss, batches, epochs=c.epochs, optimizer=opt, generator=generator,
                         device=self.device, amp=c.amp, progress=self.context.progress, log_metric=self.context.log_metric)

    def fit(self, train_set: TrainSet) -> None:
        c = self.config
        generator, labels = self._start_fit(train_set)
        with deterministic(self.device):
            if c.finetune == "frozen":
                shape, stats, batches = self._frozen_batches(train_set, labels)
                model = self._frozen_head(shape, stats)
            else:
                images = to_uint8_tensor(train_set.images)
                check_crop(images, c.crop_size)
                k, ch = self.probe()
                self.shape = (k, ch)
                self.head = self._new_head(ch, k)
                model = DeepNet(self.backbone, self.head)
                batches = ImageBatches(images, labels, c.crop_size,
                                       Normalizer(self.backbone.mean, self.backbone.std, self.device, c.channels_last),
                                       c.batch_size, c.flip)
            self.net = DeepNet(self.backbone, self.head) if self.backbone is not None else None
            self.losses = self._train(model, self.loss, batches, generator)

    # ------------------------------------------------------------ several configs on one fold (a study's grid)

    LOSS_FIELDS: tuple[str, ...] = ()  # config fields only `loss` reads (a subclass that sets them gives `stack_heads`)

    @classmethod
    def fits_together(cls, configs: list, task: str) -> bool:
        """Frozen binary heads whose configs differ only in `LOSS_FIELDS` see the same features, initial weights
        and batches (same seed): they train as one stacked head (`fit_together`)."""
        if not cls.LOSS_FIELDS or task != "binary" or len(configs) < 2 or configs[0].finetune != "frozen":
            return False
        first = configs[0]
        return all(dataclasses.replace(c, **{f: getattr(first, f) for f in cls.LOSS_FIELDS}) == first for c in configs)

    @classmethod
    def fit_together(cls, methods: list["DeepMethod"], train: TrainSet) -> None:
        """Heads that `fits_together` trains as one module (`stack_heads`), so each product over a batch's region
        features serves all of them. Each head starts from the weights its own fit would have and sees the same
        batches (one seed); the sum of their losses is minimised, so each gets its own loss's gradient, and Adam acts
        per weight. Same maths as fitting each alone; the float rounding of the shared matrix products differs."""
        one_context = len({(m.context.seed, m.context.device, m.context.task) for m in methods}) == 1
        if not one_context or not cls.fits_together([m.config for m in methods], methods[0].context.task):
            return super().fit_together(methods, train)
        lead = methods[0]
        generator, labels = lead._start_fit(train)
        with deterministic(lead.device):
            shape, stats, batches = lead._frozen_batches(train, labels)
            heads = []
            for m in methods:
                m.device = lead.device
                heads.append(m._frozen_head(shape, stats))
            stacked = cls.stack_heads(heads)
            losses = lead._train(stacked, cls.stacked_loss([m.config for m in methods]), batches, generator)
            stacked.unstack(heads)
        for i, m in enumerate(methods):
            m.net = DeepNet(m.backbone, m.head) if m.backbone is not None else None
            m.losses = [epoch[i] for epoch in losses]

    @classmethod
    def stack_heads(cls, heads: list[nn.Module]) -> nn.Module:  # pragma: no cover - interface
        """One module computing every head's output from one batch; `.unstack(heads)` copies the weights back."""
        raise TypeError(f"{cls.__name__} sets LOSS_FIELDS but gives no stack_heads")

    @classmethod
    def stacked_loss(cls, configs: list):  # pragma: no cover - interface
        """`loss` of each config on the stacked module's output: (output, y) -> (H,) losses."""
        raise TypeError(f"{cls.__name__} sets LOSS_FIELDS but gives no stacked_loss")

    def forward_test(self, test: TestSet) -> list:
        """Head outputs on the test view, in batches (cached features in frozen mode)."""
        if self.head is None:
            raise InputError(f"{type(self).__name__}: predict() before fit()")
        c = self.config
        self.head.eval()
        outs = []
        if c.finetune == "frozen" and self.use_cache:
            feats = self.cached_features(test.keys, test.images, [0])[0]
            with torch.inference_mode():
                for s in range(0, len(feats), self.predict_batch):
                    outs.append(self.head(feats[s:s + self.predict_batch].to(self.device).float()))
            return outs
        images = to_uint8_tensor(test.images)
        check_crop(images, c.crop_size)
        bb = self.build_backbone().eval()
        norm = Normalizer(bb.mean, bb.std, self.device, c.channels_last)
        with torch.inference_mode(), autocast(self.device, c.amp):
            for s in range(0, len(images), self.predict_batch):
                regions = bb(norm(eval_view(images[s:s + self.predict_batch], c.crop_size, c.test_crop)))
                outs.append(self.head(as_cached(regions) if c.finetune == "frozen" else regions))
        return outs

    def predict(self, test: TestSet) -> Predictions:
        outs = self.forward_test(test)
        logits = torch.cat([logits_of(o).float() for o in outs]) if outs else torch.zeros(0, *self.out_shape())
        if self.context.task == "au":
            return Predictions.from_au_proba(au_proba(logits))
        prob = torch.softmax(logits, 1)[:, 1].cpu().numpy().astype(float)
        return Predictions(labels=logits.argmax(1).cpu().numpy(), scores=prob)

    # ------------------------------------------------------------ a saved model

    def save(self, folder: Path) -> None:
        """Backbone and head weights (safetensors) and the head's shape (JSON)."""
        from safetensors.torch import save_file

        if self.head is None:
            raise InputError(f"{type(self).__name__}: save() before fit()")
        net = DeepNet(self.build_backbone(), self.head)
        save_file({k: v.detach().cpu().clone().contiguous() for k, v in net.state_dict().items()}, str(Path(folder) / self.WEIGHTS_FILE))
        k, ch = self.shape
        (Path(folder) / self.SHAPE_FILE).write_text(json.dumps({"regions": k, "channels": ch, "task": self.context.task,
                                                                  "standardized": isinstance(self.head, Standardized)}))

    @classmethod
    def load(cls, config, folder: Path, context: Context | None = None) -> "DeepMethod":
        """The saved weights into a backbone built without its starting weights (no hub, no file needed); the
        saved task (binary when unrecorded) sets the context's, so the head is rebuilt as it was trained."""
        from safetensors.torch import load_file

        folder = Path(folder)
        shape = json.loads((folder / cls.SHAPE_FILE).read_text())
        state = load_file(str(folder / cls.WEIGHTS_FILE))
        m = cls(config, dataclasses.replace(context or Context(), task=shape.get("task", "binary")))
        m.device = resolve_device(m.context.device)
        net, _ = create_backbone(config.model, "none", **input_size_kwargs(config.model, config.crop_size))
        m.backbone = RegionBackbone(net)
        head = m.make_head(shape["channels"], shape["regions"])
        if shape["standardized"]:
            head = Standardized(head, state["head.mean"], state["head.std"])
        m.head, m.shape, m.use_cache = head, (shape["regions"], shape["channels"]), False
        m.net = DeepNet(m.backbone, m.head)
        m.net.load_state_dict(state, strict=True)
        m.net.to(m.device).eval()
        if config.channels_last:
            m.backbone.to(memory_format=torch.channels_last)
        return m

    def input_spec(self) -> dict:
        c, bb = self.config, self.build_backbone()
        view = f"the centre {c.crop_size} px crop" if c.test_crop == "center" else f"the whole image resized to {c.crop_size} px"
        return {**super().input_spec(), "view": view, "normalise": f"mean {bb.mean}, std {bb.std}",
                "backbone": f"{c.model} ({'frozen' if c.finetune == 'frozen' else 'fine-tuned'})"}
