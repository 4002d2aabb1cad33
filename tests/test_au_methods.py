"""The `au` task in the built-in families: per-AU LBP SVMs, the timm multi-head baseline, PainSeeker-AU, and
per-AU localisation. Tiny images and a random tiny backbone, as in test_painseeker / test_deep_engine."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from sklearn.svm import SVC
from tinydata import TINY_DEEP as TINY

from ratspain_bench.attention import localisation, localisation_per_au
from ratspain_bench.methods.base import Context, TestSet, TrainSet
from ratspain_bench.methods.deep import au_cross_entropy
from ratspain_bench.methods.lbp_svm import LbpSvm, LbpSvmConfig
from ratspain_bench.methods.painseeker import PainSeekerAUHead, prsc_loss
from ratspain_bench.methods.registry import get_method
from ratspain_bench.tasks import AUS, BLANK, derived_label, grades_matrix

pytestmark = pytest.mark.usefixtures("one_thread")


def toy(n=24, size=48, seed=0):
    """Images whose bright patch grows with the orbital grade; nose holds grades 0 and 2 only, ears one grade,
    whiskers all three; a few blanks in every AU but ears."""
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 120, (n, size, size, 3), dtype=np.uint8)
    orbital = np.arange(n) % 3
    for g in (1, 2):
        images[orbital == g, 4:4 + 6 * g, 4:16] = 250
    au = {"orbital": orbital, "nose": 2 * (np.arange(n) % 2), "ears": np.full(n, 1), "whiskers": rng.integers(0, 3, n)}
    for a in ("orbital", "nose", "whiskers"):
        au[a] = au[a].copy()
        au[a][rng.choice(n, 3, replace=False)] = BLANK
    keys = tuple(f"au{seed}-{size}-{i}" for i in range(n))
    return images, au, keys


def sets(n=24, n_train=16, size=48, seed=0):
    images, au, keys = toy(n, size, seed)
    labels = derived_label(grades_matrix(au))
    subjects = np.repeat(np.array(["a", "b", "c", "d"]), n // 4)
    train = TrainSet(images[:n_train], labels[:n_train], subjects[:n_train], keys[:n_train],
                     au={a: g[:n_train] for a, g in au.items()})
    return train, TestSet(images[n_train:], subjects[n_train:], keys[n_train:])


def check_au(p, n):
    assert set(p.au) == set(AUS)
    grades = grades_matrix(p.au)
    assert grades.shape == (n, 4) and ((grades >= 0) & (grades <= 2)).all()
    assert np.array_equal(p.labels, derived_label(grades))
    assert p.scores.shape == (n,) and ((p.scores >= 0) & (p.scores <= 1)).all()


# ---------------------------------------------------------------- LBP-SVM per AU


@pytest.fixture(scope="module")
def lbp_au(tmp_path_factory):
    train, test = sets(size=32)
    m = LbpSvm(LbpSvmConfig(radius=1, grid=4, image_size=32), Context(cache_dir=tmp_path_factory.mktemp("lbp"), task="au"))
    m.fit(train)
    return m, train, test


def test_lbp_per_au_equals_linear_svm(lbp_au):
    m, train, test = lbp_au
    p = m.predict(test)
    check_au(p, len(test))
    from ratspain_bench.features.lbp import cell_sizes, n_bins

    c = m.config  # the features are the cells' counts: the reference SVM gets the L1-normalised histograms
    per_cell = np.repeat(cell_sizes(c.image_size, c.image_size, c.grid), n_bins(c.points, c.variant))
    x, xt = m.features(train.images, list(train.keys)) / per_cell, m.features(test.images, list(test.keys)) / per_cell
    for a in ("orbital", "nose", "whiskers"):
        y = train.au[a]
        graded = y != BLANK
        assert m._au[a].shape_fit_[0] == graded.sum()  # blank rows dropped
        ref = SVC(kernel="linear", C=1.0, break_ties=True).fit(x[graded], y[graded])
        np.testing.assert_array_equal(p.au[a], ref.predict(xt))
        d = ref.decision_function(xt)
        d = np.stack([np.zeros_like(d), d], 1) if d.ndim == 1 else d
        logp = np.log(m._grade_proba(a, m._test_gram(test))[:, ref.classes_])  # softmax of the decision values
        np.testing.assert_allclose(logp - logp.mean(1, keepdims=True), d - d.mean(1, keepdims=True), atol=1e-6)
    assert list(m._au["nose"].classes_) == [0, 2]
    assert m._au["ears"] == 1 and (p.au["ears"] == 1).all()  # one training grade: predicted constantly


def test_lbp_au_save_load(lbp_au, tmp_path):
    m, _, test = lbp_au
    m.save(tmp_path)
    loaded = LbpSvm.load(m.config, tmp_path, Context())
    assert loaded.context.task == "au"
    a, b = m.predict(test), loaded.predict(test)
    assert all(np.array_equal(a.au[k], b.au[k]) for k in AUS)
    np.testing.assert_allclose(a.scores, b.scores, atol=1e-9)


# ---------------------------------------------------------------- the au loss


def test_au_cross_entropy_ignores_blanks():
    torch.manual_seed(0)
    logits = torch.randn(6, 4, 3, requires_grad=True)
    y = torch.tensor([[0, 1, 2, BLANK], [1, BLANK, 0, BLANK], [2, 2, 1, BLANK], [BLANK, 0, 0, BLANK],
                      [0, 1, BLANK, BLANK], [1, 1, 2, BLANK]])
    loss = au_cross_entropy(logits, y)
    ref = torch.stack([F.cross_entropy(logits[:, j], y[:, j], ignore_index=BLANK) for j in range(3)]).mean()
    assert torch.isfinite(loss) and loss.item() == pytest.approx(ref.item())
    loss.backward()
    assert logits.grad[:, 3].abs().sum() == 0  # the all-blank AU: no gradient
    assert (logits.grad[y == BLANK] == 0).all() and logits.grad[y != BLANK].abs().sum() > 0
    assert au_cross_entropy(logits, torch.full((6, 4), BLANK)).item() == 0.0


# ---------------------------------------------------------------- timm multi-head and PainSeeker-AU


def fit_predict(name, finetune, seed=0, tmp_path=None, **params):
    train, test = sets()
    ctx = Context(seed=seed, task="au", cache_dir=tmp_path and tmp_path / "cache", work_dir=tmp_path and tmp_path / "work")
    m = get_method(name).build("quick", ctx, **{**TINY, "finetune": finetune, **params})
    m.fit(train)
    return m, m.predict(test), test


@pytest.mark.parametrize("finetune", ["frozen", "full"])
def test_timm_multi_head(finetune, tmp_path):
    m, p, test = fit_predict("timm:resnet10t", finetune, tmp_path=tmp_path)
    check_au(p, len(test))
    assert m.head(torch.randn(5, 4, m.shape[1])).shape == (5, 4, 3)
    assert all(np.isfinite(m.losses)) and p.attention is None


def test_frozen_au_shares_the_binary_features_and_trains_with_a_blank_au():
    train, test = sets(seed=5)
    stages = []
    for task in ("binary", "au"):
        ctx = Context(seed=0, task=task, progress=lambda task=task, **kw: stages.append((task, kw.get("stage"))))
        m = get_method("timm:resnet10t").build("quick", ctx, **{**TINY, "finetune": "frozen"})
        m.fit(TrainSet(train.images, train.labels, train.subjects, train.keys,
                       au={**train.au, "whiskers": np.full(len(train), BLANK)}))
    assert [t for t, s in stages if s] == ["binary"]  # the au fit computed no feature
    assert all(np.isfinite(m.losses))
    check_au(m.predict(test), len(test))


@pytest.mark.parametrize("finetune", ["frozen", "full"])
def test_painseeker_au(finetune, tmp_path):
    m, p, test = fit_predict("painseeker:resnet10t", finetune, tmp_path=tmp_path, k_high=1)
    check_au(p, len(test))
    assert set(p.au_attention) == set(AUS)
    maps = np.stack([p.au_attention[a] for a in AUS], 1)
    assert maps.shape == (len(test), 4, 2, 2) and np.allclose(maps.sum((2, 3)), 1, atol=1e-5)
    np.testing.assert_allclose(p.attention, maps.mean(1), atol=1e-7)
    assert all(np.isfinite(m.losses))
    if finetune == "frozen":
        assert (tmp_path / "work" / "beta_heatmaps.png").is_file()


def test_painseeker_au_head_and_loss():
    torch.manual_seed(0)
    head = PainSeekerAUHead(8)
    x = torch.randn(5, 9, 8)
    logits, beta = head(x)
    assert logits.shape == (5, 4, 3) and beta.shape == (5, 4, 9)
    assert torch.allclose(beta.sum(2), torch.ones(5, 4), atol=1e-6)
    for a in range(4):  # Eq. (2)-(3) per AU
        s = torch.sigmoid(head.g(x)[..., a])
        b = s / s.sum(1, keepdim=True)
        assert torch.allclose(beta[:, a], b, atol=1e-6)
        assert torch.allclose(logits[:, a], head.h[a]((b.unsqueeze(-1) * x).sum(1)), atol=1e-5)
    m = get_method("painseeker:resnet10t").build("quick", Context(task="au"), **{**TINY, "k_high": 2})
    y = torch.tensor([[0, 1, 2, BLANK]] * 5)
    prsc = torch.stack([prsc_loss(beta[:, a], 2, 0.2) for a in range(4)]).mean()
    assert m.loss((logits, beta), y).item() == pytest.approx((au_cross_entropy(logits, y) + 0.1 * prsc).item())


@pytest.mark.parametrize("name,extra", [("timm:resnet10t", {}), ("painseeker:resnet10t", {"k_high": 1})])
def test_au_runs_repeat_and_load_back(name, extra, tmp_path):
    m1, p1, test = fit_predict(name, "full", seed=3, **extra)
    _, p2, _ = fit_predict(name, "full", seed=3, **extra)
    assert np.array_equal(p1.scores, p2.scores) and all(np.array_equal(p1.au[a], p2.au[a]) for a in AUS)
    m1.save(tmp_path)
    loaded = type(m1).load(m1.config, tmp_path, Context())
    assert loaded.context.task == "au"
    p3 = loaded.predict(test)
    assert all(np.array_equal(p1.au[a], p3.au[a]) for a in AUS)
    np.testing.assert_allclose(p1.scores, p3.scores, atol=1e-6)


def test_frozen_au_model_loads_back(tmp_path):
    m, p, test = fit_predict("timm:resnet10t", "frozen", tmp_path=tmp_path)
    m.save(tmp_path)
    p2 = type(m).load(m.config, tmp_path, Context()).predict(test)
    assert all(np.array_equal(p.au[a], p2.au[a]) for a in AUS)
    np.testing.assert_allclose(p.scores, p2.scores, atol=1e-5)


# ---------------------------------------------------------------- per-AU localisation


def test_localisation_per_au():
    regions = {"x.png": {"orbital": [[0, 0, 10, 10]], "nose": [[10, 10, 20, 20]], "ears": [], "whiskers": []},
               "y.png": {"orbital": [[10, 0, 20, 10]], "nose": [], "ears": [], "whiskers": []}}
    top_left = np.array([[[0.7, 0.1], [0.1, 0.1]]] * 2)  # region (0, 0) scores highest
    att = {"orbital": top_left, "nose": top_left[:, ::-1, ::-1]}
    out = localisation_per_au(att, ["x.png", "y.png"], regions, (20, 20), 1)
    assert out == {"attention_orbital_share": 0.5, "attention_orbital_share_chance": 0.25,  # x hits, y misses
                   "attention_nose_share": 1.0, "attention_nose_share_chance": 0.25}  # y has no nose: left out
    both = localisation(top_left, ["x.png", "y.png"], regions, (20, 20), 1)
    assert both == {"attention_au_share": 0.5, "attention_au_share_chance": 0.375}
