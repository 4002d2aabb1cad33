import numpy as np
import pytest
from skimage.feature import local_binary_pattern
from sklearn.svm import SVC

from ratspain_bench.features.lbp import gray, grid_histograms
from ratspain_bench.methods.base import Context, TestSet, TrainSet
from ratspain_bench.methods.lbp_svm import LbpSvm, LbpSvmConfig


@pytest.fixture(scope="module")
def images():
    rng = np.random.default_rng(1)
    return rng.integers(0, 256, (12, 32, 32, 3)).astype(np.uint8)


@pytest.mark.parametrize("radius,grid", [(1, 4), (3, 8), (3, 16)])
def test_features_match_direct_skimage_histograms(images, radius, grid, tmp_path):
    m = LbpSvm(LbpSvmConfig(radius=radius, grid=grid, image_size=32), Context(cache_dir=tmp_path))
    keys = [f"k{i}-{radius}" for i in range(len(images))]
    feats = m.features(images, keys)
    for img, f in zip(images, feats):
        codes = local_binary_pattern(gray(img), 8, radius, "nri_uniform")
        step = 32 // grid
        expected = []
        for r in range(grid):
            for c in range(grid):
                h = np.histogram(codes[r * step:(r + 1) * step, c * step:(c + 1) * step], bins=59, range=(0, 59))[0]
                expected.append(h / h.sum())
        np.testing.assert_allclose(f, np.concatenate(expected), rtol=0, atol=1e-6)
    # a second call reads the code images back from the disk cache
    assert any((tmp_path / "lbp").rglob("*.npy"))


def test_gray_matches_skimage_rgb2gray(images):
    from skimage.color import rgb2gray

    np.testing.assert_array_less(np.abs(gray(images).astype(float) - rgb2gray(images) * 255), 0.5 + 1e-9)


def test_grid_histograms_uneven_size():
    codes = np.zeros((1, 10, 10), np.uint8)
    h = grid_histograms(codes, 3, 59).reshape(9, 59)
    np.testing.assert_allclose(h[:, 0], 1.0)


def test_precomputed_gram_svm_equals_linear_svm(images, tmp_path):
    labels = np.array([0, 1] * 6)
    subjects = np.array(list("aaabbbcccddd"))
    keys = tuple(f"g{i}" for i in range(12))
    train = TrainSet(images[:9], labels[:9], subjects[:9], keys[:9])
    test = TestSet(images[9:], subjects[9:], keys[9:])
    m = LbpSvm(LbpSvmConfig(radius=1, grid=4, image_size=32), Context(cache_dir=tmp_path))
    m.fit(train)
    pred = m.predict(test)
    x = m.features(images, keys)
    ref = SVC(kernel="linear", C=1.0).fit(x[:9], labels[:9])
    np.testing.assert_array_equal(pred.labels, ref.predict(x[9:]))
    np.testing.assert_allclose(np.log(pred.scores / (1 - pred.scores)), ref.decision_function(x[9:]), atol=1e-6)


def test_a_shuffled_test_rat_reuses_its_gram_block(images, tmp_path):
    """The harness hands each test set over in a secret order: the rat's Gram block (computed when it was a training
    rat of another fold) is found whatever the order, and the predictions follow the images."""
    from ratspain_bench.methods import lbp_svm

    labels, subjects, keys = np.array([0, 1] * 6), np.array(list("aaabbbcccddd")), tuple(f"s{i}" for i in range(12))
    m = LbpSvm(LbpSvmConfig(radius=1, grid=4, image_size=32, C=0.5), Context(cache_dir=tmp_path))
    m.fit(TrainSet(images, labels, subjects, keys))  # every rat's blocks against every other's
    known = len(lbp_svm._GRAM)
    order = np.array([2, 0, 1])  # rat a's images, out of order
    straight = m.predict(TestSet(images[:3], subjects[:3], keys[:3]))
    shuffled = m.predict(TestSet(images[:3][order], subjects[:3], tuple(keys[i] for i in order)))
    assert len(lbp_svm._GRAM) == known  # no block computed again
    np.testing.assert_array_equal(shuffled.scores, straight.scores[order])


def _codes_then_exit() -> None:
    from ratspain_bench.features.lbp import compute_codes

    compute_codes(np.random.default_rng(0).integers(0, 255, (32, 24, 24), dtype=np.uint8), 8, 1, "nri_uniform", jobs=2)


@pytest.mark.parametrize("start", ["spawn", "fork"])
def test_a_process_that_computed_codes_on_the_kept_pool_still_exits(start):
    """The kept LBP worker pool must not hold its process open: a multiprocessing worker joins its children
    before its threads' exit hooks run, so a pool left to those hooks hung its worker (and a `--jobs` run) forever."""
    import multiprocessing as mp

    p = mp.get_context(start).Process(target=_codes_then_exit)
    p.start()
    p.join(timeout=60)
    alive = p.is_alive()
    if alive:
        p.kill()
    assert not alive and p.exitcode == 0
