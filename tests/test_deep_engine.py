"""The training engine: batched augmentation, devices, determinism, the frozen-feature cache, timm:<model>."""
import numpy as np
import pytest
import torch

from ratspain_bench.engine import features
from ratspain_bench.engine.augment import Normalizer, crop_flip, random_crop_flip, eval_view, to_uint8_tensor
from ratspain_bench.engine.backbone import grid_shape
from ratspain_bench.methods.deep import Standardized, channel_stats
from ratspain_bench.engine.device import resolve_device
from ratspain_bench.errors import InputError
from ratspain_bench.methods.base import Context, TestSet, TrainSet
from ratspain_bench.methods.registry import get_method
from ratspain_bench.methods.timm_linear import TimmLinear
from tinydata import TINY_DEEP as TINY


pytestmark = pytest.mark.usefixtures("one_thread")



def toy(n=24, size=48, seed=0):
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 120, (n, size, size, 3), dtype=np.uint8)
    labels = np.arange(n) % 2
    images[labels == 1, 4:16, 4:16] = 250
    return images, labels, tuple(f"eng{seed}-{i}" for i in range(n))


def sets(n=24, n_train=16, seed=0):
    images, labels, keys = toy(n, seed=seed)
    return (TrainSet(images[:n_train], labels[:n_train], np.array(["a"] * n_train), keys[:n_train]),
            TestSet(images[n_train:], np.array(["b"] * (n - n_train)), keys[n_train:]))


# ---------------------------------------------------------------- augmentation


def test_crop_flip_matches_slicing():
    imgs = to_uint8_tensor(np.random.default_rng(0).integers(0, 255, (3, 10, 12, 3), dtype=np.uint8))
    tops, lefts, flips = torch.tensor([0, 2, 4]), torch.tensor([5, 0, 3]), torch.tensor([False, True, True])
    out = crop_flip(imgs, tops, lefts, flips, 6)
    for i in range(3):
        ref = imgs[i, tops[i]:tops[i] + 6, lefts[i]:lefts[i] + 6]
        assert torch.equal(out[i], ref.flip(1) if flips[i] else ref)


def test_random_crop_is_seeded_and_test_view_is_central():
    imgs = to_uint8_tensor(np.random.default_rng(1).integers(0, 255, (8, 12, 12, 3), dtype=np.uint8))
    a = random_crop_flip(imgs, 8, torch.Generator().manual_seed(3))
    b = random_crop_flip(imgs, 8, torch.Generator().manual_seed(3))
    assert torch.equal(a, b) and a.shape == (8, 8, 8, 3) and a.dtype == torch.uint8
    assert torch.equal(eval_view(imgs, 8), imgs[:, 2:10, 2:10])
    assert eval_view(imgs, 8, "resize").shape == (8, 8, 8, 3)


def test_normalizer_channels_last():
    imgs = to_uint8_tensor(np.full((2, 4, 4, 3), 255, np.uint8))
    x = Normalizer((0.5, 0.5, 0.5), (0.25, 0.25, 0.25), torch.device("cpu"))(imgs)
    assert x.shape == (2, 3, 4, 4) and x.is_contiguous(memory_format=torch.channels_last)
    assert torch.allclose(x, torch.full_like(x, 2.0))


def test_bad_images_and_crop_are_input_errors():
    with pytest.raises(InputError, match="uint8"):
        to_uint8_tensor(np.zeros((2, 8, 8), np.float32))
    train, _ = sets()
    m = get_method("timm:resnet10t").build("quick", Context(), **{**TINY, "crop_size": 40, "image_size": 40, "finetune": "full"})
    small = TrainSet(train.images[:, :20, :20], train.labels, train.subjects, train.keys)
    with pytest.raises(InputError, match="crop_size 40 is larger"):
        m.fit(small)


def test_device_choice():
    assert resolve_device("auto").type in ("cuda", "mps", "cpu")
    assert resolve_device("cpu").type == "cpu"
    if not torch.cuda.is_available():
        with pytest.raises(InputError, match="no CUDA"):
            resolve_device("cuda")


def test_grid_shape():
    assert grid_shape(49) == (7, 7) and grid_shape(6) == (1, 6)


# ---------------------------------------------------------------- determinism and training


def _fit_predict(name, seed, **params):
    train, test = sets()
    m = get_method(name).build("quick", Context(seed=seed), **{**TINY, **params})
    m.fit(train)
    return m.predict(test), m


@pytest.mark.parametrize("name", ["timm:resnet10t", "painseeker:resnet10t"])
def test_cpu_runs_are_bit_for_bit_repeatable(name):
    kw = {"finetune": "full", "k_high": 1} if name.startswith("painseeker") else {"finetune": "full"}
    p1, m1 = _fit_predict(name, 7, **kw)
    p2, m2 = _fit_predict(name, 7, **kw)
    assert np.array_equal(p1.scores, p2.scores) and np.array_equal(p1.labels, p2.labels)
    assert m1.losses == m2.losses
    p3, _ = _fit_predict(name, 8, **kw)
    assert not np.array_equal(p1.scores, p3.scores)


def test_timm_linear_learns_a_separable_toy():
    p, m = _fit_predict("timm:resnet10t", 0, finetune="full", epochs=6, lr=3e-3)
    assert m.losses[-1] < m.losses[0]
    assert isinstance(m, TimmLinear) and p.attention is None


def test_log_metric_and_progress_each_epoch():
    features._MEMORY.clear()
    features._LOADED.clear()
    logged, seen = [], []
    train, _ = sets(seed=9)
    ctx = Context(seed=0, log_metric=lambda name, value, step: logged.append((name, step)))
    ctx.progress = lambda **kw: seen.append(kw.get("epoch", kw.get("stage")))
    get_method("timm:resnet10t").build("quick", ctx, **{**TINY, "epochs": 3, "finetune": "frozen"}).fit(train)
    assert logged == [("train_loss", 1), ("train_loss", 2), ("train_loss", 3)]
    # frozen mode first says it computes the 16 images x 2 training views, then reports each epoch
    assert seen == ["computing resnet10t features for 32 image views (cached for reuse)", 1, 2, 3]


# ---------------------------------------------------------------- frozen mode and its cache


def test_frozen_features_are_cached_and_shared(tmp_path, monkeypatch):
    features._MEMORY.clear()
    features._LOADED.clear()
    train, test = sets(seed=5)
    ctx = Context(seed=0, cache_dir=tmp_path)
    a = get_method("painseeker:resnet10t").build("quick", ctx, **{**TINY, "finetune": "frozen", "k_high": 1})
    a.fit(train)
    pa = a.predict(test)
    shards = list((tmp_path / "features").rglob("*.npz"))
    assert shards and {p.parent.name for p in shards} == {"view0", "view1", "view2"}

    # a second method on the same backbone and a fresh process (memory cleared) never run the backbone
    features._MEMORY.clear()
    features._LOADED.clear()
    monkeypatch.setattr(TimmLinear, "build_backbone", lambda self: pytest.fail("backbone recomputed"))
    b = get_method("timm:resnet10t").build("quick", ctx, **{**TINY, "finetune": "frozen"})
    b.fit(train)
    b.predict(test)
    # the same PainSeeker again, from disk: identical predictions
    c = get_method("painseeker:resnet10t").build("quick", ctx, **{**TINY, "finetune": "frozen", "k_high": 1})
    c.fit(train)
    assert np.array_equal(c.predict(test).scores, pa.scores)


def test_channel_stats_match_numpy():
    x = torch.randn(3, 5, 4, 6, dtype=torch.float16) * 3 + 2
    mean, std = channel_stats(x)
    flat = x.float().numpy().reshape(-1, 6)
    assert np.allclose(mean, flat.mean(0), atol=1e-5) and np.allclose(std, flat.std(0), atol=1e-4)


def test_standardize_uses_training_features_only(tmp_path):
    features._MEMORY.clear()
    features._LOADED.clear()
    train, test = sets(seed=6)
    m = get_method("timm:resnet10t").build("quick", Context(seed=0, cache_dir=tmp_path),
                                           **{**TINY, "finetune": "frozen", "standardize": True})
    m.fit(train)
    assert isinstance(m.head, Standardized)
    mean, std = channel_stats(m.cached_features(train.keys, train.images, range(1, TINY["views"] + 1)))
    assert torch.equal(m.head.mean, mean) and torch.equal(m.head.std, std)
    regions = m.cached_features(test.keys, test.images, [0])[0].float()
    assert torch.allclose(m.head(regions), m.head.head((regions - mean) / std))
    plain = get_method("timm:resnet10t").build("quick", Context(seed=0, cache_dir=tmp_path),
                                               **{**TINY, "finetune": "frozen", "standardize": False})
    plain.fit(train)
    assert not isinstance(plain.head, Standardized)


def test_views_zero_trains_on_the_test_view_alone(tmp_path):
    features._MEMORY.clear()
    features._LOADED.clear()
    train, test = sets(seed=6)
    m = get_method("timm:resnet10t").build("quick", Context(seed=0, cache_dir=tmp_path),
                                           **{**TINY, "finetune": "frozen", "views": 0})
    m.fit(train)
    m.predict(test)
    assert {p.parent.name for p in (tmp_path / "features").rglob("*.npz")} == {"view0"}  # no crop + flip view computed
    mean, _ = channel_stats(m.cached_features(train.keys, train.images, [0]))
    assert torch.equal(m.head.mean, mean)  # standardised with the test view's training-fold statistics
    with pytest.raises(InputError, match="views must be 0"):
        get_method("timm:resnet10t").build("quick", Context(), **{**TINY, "finetune": "frozen", "views": -1})


def test_frozen_views_do_not_depend_on_batching():
    keys = [f"k{i}" for i in range(5)]
    t1, l1, f1 = features.view_params(keys, 3, 40, 40, 32, True)
    t2, l2, f2 = features.view_params(keys[2:], 3, 40, 40, 32, True)
    assert torch.equal(t1[2:], t2) and torch.equal(l1[2:], l2) and torch.equal(f1[2:], f2)
    assert (t1 <= 8).all() and (l1 <= 8).all()


def test_config_validation():
    with pytest.raises(InputError, match="finetune"):
        get_method("timm:resnet10t").build("quick", Context(), finetune="half")
    with pytest.raises(InputError, match="crop_size 64 > image_size 48"):
        get_method("timm:resnet10t").build("quick", Context(), image_size=48, crop_size=64)
    with pytest.raises(InputError, match="unknown timm model"):
        m = get_method("timm:no_such_net").build("quick", Context(), **{**TINY, "finetune": "full"})
        m.fit(sets()[0])
