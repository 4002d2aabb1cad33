"""Device choice, seeding and mixed precision.

Determinism: on the CPU, a fixed seed gives bit-for-bit identical runs for a fixed number of threads
(the weights' initialisation, batch order and augmentation all come from seeded generators; the
CPU kernels used are deterministic for a given thread count). On a GPU they do not: cuDNN picks
convolution algorithms by benchmarking (`cudnn.benchmark`), several backward kernels accumulate
with atomics (e.g. adaptive pooling, index_add), and bf16 autocast rounds differently from float32,
so two GPU runs agree only to within noise.
"""
from __future__ import annotations

import contextlib
import random

import numpy as np
import torch

from ..errors import InputError


def resolve_device(name: str | None = "auto") -> torch.device:
    """`auto`: CUDA, then Apple MPS, then the CPU. An explicit device that is absent is an InputError."""
    name = (name or "auto").lower()
    mps = getattr(torch.backends, "mps", None)
    has_mps = bool(mps and mps.is_available())
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "mps" if has_mps else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise InputError(f"--device {name}: no CUDA device is available here (use --device cpu or auto)")
    if name == "mps" and not has_mps:
        raise InputError("--device mps: Apple MPS is not available here (use --device cpu or auto)")
    try:
        return torch.device(name)
    except RuntimeError:
        raise InputError(f"--device {name!r}: expected auto, cpu, cuda or mps") from None


def seed_everything(seed: int) -> torch.Generator:
    """Seed python, numpy and torch; return a CPU generator for augmentation and batch order."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


@contextlib.contextmanager
def deterministic(device: torch.device):
    """While fitting: on CUDA favour speed (cuDNN autotuning, see the module doc); on the CPU nothing is
    needed: its kernels give the same result for the same inputs and thread count (checked by the
    tests), and `torch.use_deterministic_algorithms` would only import the compiler stack (seconds)."""
    if device.type == "cuda":
        before = torch.backends.cudnn.benchmark
        torch.backends.cudnn.benchmark = True
        try:
            yield
        finally:
            torch.backends.cudnn.benchmark = before
        return
    yield


@contextlib.contextmanager
def cpu_threads(n: int):
    """Run with `n` intra-op CPU threads, then restore. Training a head alone on cached features is a
    stream of small ops: one thread is about as fast on an idle machine and many times faster when
    other processes share the cores (OpenMP threads spin-wait for each other)."""
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def autocast(device: torch.device, enabled: bool = True):
    """bf16 autocast on CUDA (when enabled); a no-op elsewhere, so CPU runs stay in float32."""
    if enabled and device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()
