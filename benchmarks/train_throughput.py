"""Training-loop throughput vs bare forward/backward steps of the same model, batch and size.

"loop": the engine's real training path (`ratspain_bench.engine.train.train`): uint8 images in
memory, a random crop + flip per sample gathered in one batched op, normalisation on the fly,
channels_last, the loss summed on the device. "bare": the same model (a fresh copy with the same
initial weights), optimiser and loss stepped on one pre-made random float batch: zero_grad,
forward, loss, backward, step, nothing else. Rounds alternate bare/loop so machine noise hits both;
the medians are reported, and their ratio (target >= 0.90).

    .venv/bin/python benchmarks/train_throughput.py --model resnet18 --size 64 --batch 64 --steps 8
"""
from __future__ import annotations

import argparse
import copy
import statistics
import time

import numpy as np
import torch
import torch.nn.functional as F


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="resnet18")
    p.add_argument("--method", choices=["timm", "painseeker"], default="timm")
    p.add_argument("--size", type=int, default=64, help="crop size fed to the model")
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--steps", type=int, default=8, help="optimizer steps per timed round")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--device", default="auto")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    p.add_argument("--compile", action="store_true")
    a = p.parse_args(argv)
    if a.threads:
        torch.set_num_threads(a.threads)

    from ratspain_bench.engine.augment import Normalizer, to_uint8_tensor
    from ratspain_bench.engine.backbone import RegionBackbone
    from ratspain_bench.methods.deep import DeepNet
    from ratspain_bench.engine.device import resolve_device
    from ratspain_bench.engine.train import ImageBatches, make_optimizer, train
    from ratspain_bench.engine.weights import create_backbone
    from ratspain_bench.methods.painseeker import PainSeekerHead, prsc_loss
    from ratspain_bench.methods.timm_linear import GapLinear

    device = resolve_device(a.device)
    torch.manual_seed(0)
    bb = RegionBackbone(create_backbone(a.model, "none")[0])
    with torch.no_grad():
        k, c = bb.eval()(torch.zeros(1, 3, a.size, a.size)).shape[1:]
    head = PainSeekerHead(c) if a.method == "painseeker" else GapLinear(c)
    net0 = DeepNet(bb, head).to(device).to(memory_format=torch.channels_last)

    if a.method == "painseeker":
        def loss_fn(out, y):
            return F.cross_entropy(out[0].float(), y) + 0.1 * prsc_loss(out[1].float(), min(5, k - 1), 0.2)
    else:
        def loss_fn(out, y):
            return F.cross_entropy(out.float(), y)

    n = a.batch * a.steps
    image_size = round(a.size * 256 / 224)
    rng = np.random.default_rng(0)
    images = to_uint8_tensor(rng.integers(0, 256, (n, image_size, image_size, 3), dtype=np.uint8))
    labels = torch.as_tensor(rng.integers(0, 2, n))

    def fresh():
        net = copy.deepcopy(net0)
        model = torch.compile(net) if a.compile else net
        return net, model, make_optimizer(net.parameters(), "adam", 1e-4, 0.01)

    def run_loop(net, model, opt) -> float:
        batches = ImageBatches(images, labels, a.size, Normalizer(bb.mean, bb.std, device), a.batch)
        sync(device)
        t = time.perf_counter()
        train(model, loss_fn, batches, epochs=1, optimizer=opt, generator=torch.Generator().manual_seed(0),
              device=device, amp=True)
        sync(device)
        return n / (time.perf_counter() - t)

    x = torch.randn(a.batch, 3, a.size, a.size, device=device).contiguous(memory_format=torch.channels_last)
    y = labels[:a.batch].to(device)

    def run_bare(net, model, opt) -> float:
        from ratspain_bench.engine.device import autocast

        model.train()
        sync(device)
        t = time.perf_counter()
        for _ in range(a.steps):
            with autocast(device):
                loss = loss_fn(model(x), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        sync(device)
        return n / (time.perf_counter() - t)

    loop_state, bare_state = fresh(), fresh()
    run_bare(*bare_state)  # warm-up: allocator, oneDNN primitives, compilation
    run_loop(*loop_state)
    bare, loop = [], []
    for _ in range(a.rounds):
        bare.append(run_bare(*bare_state))
        loop.append(run_loop(*loop_state))
    b, l = statistics.median(bare), statistics.median(loop)
    print(f"device {device}, threads {torch.get_num_threads()}, {a.method}:{a.model}, batch {a.batch}, "
          f"{a.size} px crops of {image_size} px images, {a.steps} steps x {a.rounds} rounds")
    print(f"bare forward/backward/step: {b:8.1f} img/s  (rounds: {', '.join(f'{v:.1f}' for v in bare)})")
    print(f"training loop:              {l:8.1f} img/s  (rounds: {', '.join(f'{v:.1f}' for v in loop)})")
    print(f"ratio loop / bare:          {l / b:8.3f}  (target >= 0.90)")


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


if __name__ == "__main__":
    main()
