import numpy as np
import pytest
from skimage.feature import local_binary_pattern
from sklearn.svm import SVC

from ratspain_bench.features.lbp import cell_sizes, exact_kernel, gray, grid_histograms
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
                expected.append(h)  # the counts: the kernel normalises them (`exact_kernel`)
        np.testing.assert_array_equal(f, np.concatenate(expected))
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
    x = m.features(images, keys) / np.repeat(cell_sizes(32, 32, 4), 59)  # the L1-normalised histograms
    ref = SVC(kernel="linear", C=1.0).fit(x[:9], labels[:9])
    np.testing.assert_array_equal(pred.labels, ref.predict(x[9:]))
    np.testing.assert_allclose(np.log(pred.scores / (1 - pred.scores)), ref.decision_function(x[9:]), atol=1e-6)


def test_the_kernel_is_the_same_in_every_summation_order(images, tmp_path):
    """Issue 32: one image of 1,138 flipped between two machines (BLAS kernels sum in different orders). The kernel is
    computed from counts, exactly: permuting the features (another summation order for BLAS), summing in int64 by
    hand, or reversing the images all give the same bits, hence the same SVM and the same predictions."""
    m = LbpSvm(LbpSvmConfig(radius=1, grid=3, image_size=32), Context(cache_dir=tmp_path))  # 32/3: cells of 3 sizes
    x = m.features(images, [f"o{i}" for i in range(12)])
    sizes = cell_sizes(32, 32, 3)
    assert len(set(sizes.tolist())) == 3
    k = exact_kernel(x, x, sizes, 59)
    perm = np.random.default_rng(0).permutation(x.shape[1])
    assert np.array_equal(k, m.kernel(x, x))
    n = np.repeat(sizes, 59)
    by_hand = np.zeros_like(k)
    for size in np.unique(sizes):  # per cell size, an integer dot product, then one division
        cols = n == size
        by_hand += (x[:, cols].astype(np.int64) @ x[:, cols].astype(np.int64).T).astype(np.float64) / float(size * size)
    assert np.array_equal(k, by_hand)
    reordered = np.zeros_like(k)
    for size in np.unique(sizes):  # the columns shuffled within each size: BLAS sums them in another order
        cols = np.flatnonzero(n[perm] == size)
        xp = x[:, perm][:, cols].astype(np.float64)
        reordered += (xp @ xp.T) / float(size * size)
    assert np.array_equal(k, reordered)
    assert np.array_equal(k[::-1, ::-1], exact_kernel(x[::-1], x[::-1], sizes, 59))
    labels = np.array([0, 1] * 6)
    a = SVC(kernel="precomputed").fit(k[:9, :9], labels[:9]).decision_function(k[9:, :9])
    b = SVC(kernel="precomputed").fit(reordered[:9, :9], labels[:9]).decision_function(reordered[9:, :9])
    assert np.array_equal(a, b)
    np.testing.assert_allclose(k, (x / n) @ (x / n).T, rtol=1e-12)  # the kernel of the normalised histograms


def test_a_model_saved_with_normalised_histograms_loads_as_counts(images, tmp_path):
    import joblib

    labels, subjects, keys = np.array([0, 1] * 6), np.array(list("aaabbbcccddd")), tuple(f"v{i}" for i in range(12))
    m = LbpSvm(LbpSvmConfig(radius=1, grid=4, image_size=32), Context(cache_dir=tmp_path))
    m.fit(TrainSet(images[:9], labels[:9], subjects[:9], keys[:9]))
    m.save(tmp_path)
    state = joblib.load(tmp_path / LbpSvm.MODEL_FILE)
    old = {"svm": state["svm"], "support_x": (state["support_x"] / np.repeat(cell_sizes(32, 32, 4), 59)).astype(np.float32)}
    (tmp_path / "old").mkdir()
    joblib.dump(old, tmp_path / "old" / LbpSvm.MODEL_FILE)
    test = TestSet(images[9:], subjects[9:], keys[9:])
    now = LbpSvm.load(m.config, tmp_path, Context(cache_dir=tmp_path)).predict(test)
    then = LbpSvm.load(m.config, tmp_path / "old", Context(cache_dir=tmp_path)).predict(test)
    np.testing.assert_array_equal(now.scores, then.scores)


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
