"""PainSeeker: the PRSC loss (Eq. 5), the head (Eq. 2-3), lambda = 0, gradients, registry fit/predict."""
import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F

from ratspain_bench.errors import InputError
from ratspain_bench.methods.base import Context, TestSet, TrainSet
from ratspain_bench.methods.painseeker import PainSeeker, PainSeekerHead, StackedHeads, prsc_loss
from ratspain_bench.methods.registry import get_method
from tinydata import TINY_DEEP as TINY


pytestmark = pytest.mark.usefixtures("one_thread")



def toy(n=24, size=48, seed=0):
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 120, (n, size, size, 3), dtype=np.uint8)
    labels = np.arange(n) % 2
    images[labels == 1, 4:16, 4:16] = 250  # a bright patch means pain
    keys = tuple(f"toy{seed}-{i}" for i in range(n))
    return images, labels, keys


# ---------------------------------------------------------------- PRSC, Eq. (5)


def test_prsc_hand_computed():
    beta = torch.tensor([[0.1, 0.4, 0.2, 0.3]])  # order does not matter
    # k_high 1: 0.4 vs mean(0.3, 0.2, 0.1) = 0.2 -> max(0, 0.5 - 0.2) = 0.3
    assert prsc_loss(beta, 1, 0.5).item() == pytest.approx(0.3)
    # k_high 2: gaps 0.4 - 0.15, 0.3 - 0.15 -> (0.25 + 0.35) / 2 = 0.3
    assert prsc_loss(beta, 2, 0.5).item() == pytest.approx(0.3)
    # k_high = K - 1 = 3: gaps 0.3, 0.2, 0.1 against 0.1 -> (0.2 + 0.3 + 0.4) / 3 = 0.3
    assert prsc_loss(beta, 3, 0.5).item() == pytest.approx(0.3)
    # hinge: a gap larger than the margin costs nothing; k_high 1 with margin 0.1 on gap 0.2
    assert prsc_loss(beta, 1, 0.1).item() == pytest.approx(0.0)
    # partly active: margin 0.2, k_high 2 -> max(0, 0.2 - 0.25) = 0, max(0, 0.2 - 0.15) = 0.05 -> 0.025
    assert prsc_loss(beta, 2, 0.2).item() == pytest.approx(0.025)


def test_prsc_batch_mean_and_equal_betas():
    equal = torch.full((3, 49), 1 / 49)
    assert prsc_loss(equal, 5, 0.2).item() == pytest.approx(0.2)  # no gap: loss = delta
    beta = torch.tensor([[0.1, 0.4, 0.2, 0.3], [0.25, 0.25, 0.25, 0.25]])
    assert prsc_loss(beta, 1, 0.5).item() == pytest.approx((0.3 + 0.5) / 2)


def test_prsc_edge_cases_and_gradient():
    beta = torch.softmax(torch.randn(4, 9), 1).requires_grad_()
    assert prsc_loss(beta, 1, 0.2).item() >= 0
    assert prsc_loss(beta, 8, 0.2).item() >= 0
    prsc_loss(beta, 3, 0.2).backward()
    assert beta.grad is not None and beta.grad.abs().sum() > 0
    for bad in (0, 9, 12):
        with pytest.raises(ValueError, match="k_high"):
            prsc_loss(beta, bad, 0.2)


# ---------------------------------------------------------------- the head, Eq. (2)-(3)


def test_betas_sum_to_one_and_fuse():
    torch.manual_seed(0)
    head = PainSeekerHead(16)
    x = torch.randn(5, 9, 16)
    logits, beta = head(x)
    assert logits.shape == (5, 2) and beta.shape == (5, 9)
    assert torch.allclose(beta.sum(1), torch.ones(5), atol=1e-6)
    assert (beta > 0).all()
    s = torch.sigmoid(head.g(x).squeeze(-1))
    fused = (s / s.sum(1, keepdim=True)).unsqueeze(-1).mul(x).sum(1)
    assert torch.allclose(logits, head.h(fused), atol=1e-5)


def _method(**params):
    return get_method("painseeker:resnet10t").build("quick", Context(seed=0), **{**TINY, **params})


def test_lambda_zero_is_plain_cross_entropy():
    torch.manual_seed(0)
    head = PainSeekerHead(8)
    x, y = torch.randn(6, 4, 8), torch.tensor([0, 1, 0, 1, 1, 0])
    grads = {}
    for name, method in {"lambda0": _method(**{"lambda": 0.0, "k_high": 2}), "ce": None,
                         "lambda01": _method(**{"lambda": 0.1, "k_high": 2})}.items():
        head.zero_grad()
        out = head(x)
        loss = F.cross_entropy(out[0], y) if method is None else method.loss(out, y)
        loss.backward()
        grads[name] = (loss.item(), [p.grad.clone() for p in head.parameters()])
    assert grads["lambda0"][0] == grads["ce"][0]
    assert all(torch.equal(a, b) for a, b in zip(grads["lambda0"][1], grads["ce"][1]))
    assert grads["lambda01"][0] > grads["ce"][0]  # margin 0.2 far above any beta gap here


def test_gradients_reach_every_layer():
    images, labels, keys = toy(16)
    m = _method(finetune="full", k_high=2, image_size=40, crop_size=40)
    m.build_backbone()
    k, c = m.probe()
    assert k == 4  # resnet10t at 40 px: a 2 x 2 grid
    head = m._new_head(c, k)
    net = torch.nn.Sequential(m.backbone, head).train()
    x = torch.randn(8, 3, 40, 40)
    y = torch.tensor([0, 1] * 4)
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    for _ in range(2):  # timm zero-initialises each block's last BN: one step wakes it
        opt.zero_grad()
        m.loss(net(x), y).backward()
        opt.step()
    silent = [n for n, p in net.named_parameters() if p.grad is None or p.grad.abs().sum() == 0]
    assert not silent, silent


def test_k_high_must_be_below_k():
    images, labels, keys = toy(12)
    m = _method(finetune="full", k_high=4, image_size=40, crop_size=40)  # K = 4
    with pytest.raises(InputError, match=r"k_high=4 .*K=4 \(2x2 grid"):
        m.fit(TrainSet(images, labels, np.array(["a"] * 12), keys))


# ---------------------------------------------------------------- fit / predict through the registry


@pytest.mark.parametrize("finetune", ["full", "frozen"])
def test_fit_predict_via_registry(tmp_path, finetune):
    images, labels, keys = toy(36)
    ctx = Context(seed=1, cache_dir=tmp_path / "cache", work_dir=tmp_path / "work")
    seen = []
    ctx.progress = lambda **kw: seen.append(kw)
    m = get_method("painseeker:resnet10t").build("quick", ctx, **{**TINY, "finetune": finetune, "k_high": 2, "image_size": 48, "crop_size": 40})
    assert m.config.prsc_lambda == 0.1 and m.config.prsc_delta == 0.2
    m.fit(TrainSet(images[:24], labels[:24], np.array(["a"] * 24), keys[:24]))
    epochs = [s for s in seen if "epoch" in s]
    assert [s["epoch"] for s in epochs] == [1, 2] and all(np.isfinite(s["loss"]) for s in epochs)
    assert [s["stage"] for s in seen if "stage" in s] == (["computing resnet10t features for 48 image views (cached for reuse)"]
                                                          if finetune == "frozen" else [])
    meta = pd.DataFrame({"pose_bin": ["frontal", "moderate", "extreme"] * 4})
    p = m.predict(TestSet(images[24:], np.array(["b"] * 12), keys[24:], meta))
    assert p.labels.shape == (12,) and ((p.scores >= 0) & (p.scores <= 1)).all()
    assert p.attention.shape == (12, 2, 2)
    assert np.allclose(p.attention.sum((1, 2)), 1, atol=1e-5)
    pngs = sorted(x.name for x in (tmp_path / "work").glob("*.png"))
    assert "beta_heatmaps.png" in pngs and any("extreme" in n for n in pngs) and any("frontal" in n for n in pngs)


def test_painseeker_on_vit_tokens():
    """ViT-style backbone: patch tokens are the regions, the class token is dropped."""
    images, labels, keys = toy(12, size=32)
    m = get_method("painseeker:vit_tiny_patch16_224").build(
        "quick", Context(seed=0), **{**TINY, "image_size": 32, "crop_size": 32, "epochs": 1, "k_high": 1, "finetune": "full"})
    m.fit(TrainSet(images, labels, np.array(["a"] * 12), keys))
    p = m.predict(TestSet(images[:4], np.array(["b"] * 4), keys[:4]))
    assert p.attention.shape == (4, 2, 2)


def test_paper_profile_matches_the_paper():
    cfg = get_method("painseeker").config("paper")
    assert (cfg.model, cfg.batch_size, cfg.optimizer, cfg.lr, cfg.weight_decay) == ("resnet18", 64, "adam", 1e-4, 0.01)
    assert (cfg.image_size, cfg.crop_size, cfg.flip) == (256, 224, True)
    assert (cfg.prsc_lambda, cfg.prsc_delta, cfg.k_high) == (0.1, 0.2, 5)
    assert get_method("painseeker-noprsc").config("paper").prsc_lambda == 0.0
    assert isinstance(PainSeeker.Config.PROFILES, dict) and {"quick", "paper"} <= set(PainSeeker.Config.PROFILES)


def test_coverage_grid_matches_a_pixel_by_pixel_count():
    """Attention localisation: the share of each region covered by AU boxes, against a plain per-pixel loop."""
    from ratspain_bench.attention import coverage_grid

    rng = np.random.default_rng(0)
    for _ in range(30):
        w, h, m = int(rng.integers(20, 80)), int(rng.integers(20, 80)), int(rng.integers(1, 8))
        boxes = {"eye": [[float(rng.uniform(-5, w)), float(rng.uniform(-5, h)), float(rng.uniform(0, w + 5)), float(rng.uniform(0, h + 5))]]}
        x0, y0, x1, y1 = boxes["eye"][0]
        expected = np.zeros((m, m))
        size = np.zeros((m, m))
        for y in range(h):
            for x in range(w):
                r, c = y * m // h, x * m // w
                size[r, c] += 1
                expected[r, c] += max(0, int(y0)) <= y < int(np.ceil(y1)) and max(0, int(x0)) <= x < int(np.ceil(x1))
        assert np.allclose(coverage_grid(boxes, w, h, m), expected / size)


# ---------------------------------------------------------------- several configs of a fold fitted together (a study's grid)


def test_stacked_heads_compute_each_head():
    torch.manual_seed(0)
    heads = [PainSeekerHead(16) for _ in range(3)]
    stacked = StackedHeads(heads)
    x = torch.randn(5, 9, 16)
    logits, beta = stacked(x)
    for i, h in enumerate(heads):
        want_logits, want_beta = h(x)
        assert torch.allclose(logits[:, i], want_logits, atol=1e-6) and torch.allclose(beta[:, i], want_beta, atol=1e-7)
    with torch.no_grad():
        stacked.h_bias[1] += 1
    stacked.unstack(heads)
    assert torch.allclose(heads[1](x)[0], stacked(x)[0][:, 1], atol=1e-6) and torch.allclose(heads[0](x)[0], logits[:, 0])


GROUP = [dict(k_high=2), dict(k_high=1, delta=0.5), dict(k_high=2, **{"lambda": 0.0}), dict(k_high=3, **{"lambda": 1.5})]


def test_configs_that_differ_in_the_loss_alone_fit_together_as_each_alone(tmp_path):
    """The heads of one fit_together match their own fits (same init and batches; rounding only), for each PRSC
    setting, lambda 0 included; configs that differ elsewhere, full fine-tuning or the au task fit one by one."""
    images, labels, keys = toy(36)
    train = TrainSet(images[:24], labels[:24], np.array(["a"] * 24), keys[:24])
    test = TestSet(images[24:], np.array(["b"] * 12), keys[24:])
    spec = get_method("painseeker:resnet10t")
    base = {**TINY, "finetune": "frozen", "image_size": 48, "crop_size": 40, "epochs": 3}

    def build(**kw):
        return spec.build("quick", Context(seed=1, cache_dir=tmp_path / "cache"), **{**base, **kw})

    together = [build(**p) for p in GROUP]
    assert PainSeeker.fits_together([m.config for m in together], "binary")
    PainSeeker.fit_together(together, train)
    for params, m in zip(GROUP, together):
        alone = build(**params)
        alone.fit(train)
        for a, b in zip(m.head.state_dict().values(), alone.head.state_dict().values()):
            assert torch.allclose(a, b, atol=1e-5)
        assert np.allclose(m.losses, alone.losses, atol=1e-5)
        assert np.allclose(m.predict(test).scores, alone.predict(test).scores, atol=1e-5)
    configs = [m.config for m in together]
    assert not PainSeeker.fits_together(configs, "au")
    assert not PainSeeker.fits_together(configs[:1], "binary")
    assert not PainSeeker.fits_together([configs[0], build(lr=0.5).config], "binary")
    assert not PainSeeker.fits_together([build(finetune="full", **p).config for p in GROUP], "binary")
