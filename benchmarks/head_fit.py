"""Frozen PainSeeker head fits on cached features: the engine's loop against a plain reference loop, and a study fold's
13 Figure 5 configs fitted together against 13 separate fits, same process.

    python benchmarks/head_fit.py [--repeats 3] [--n 950] [--regions 49] [--channels 512]

What a fold of a sensitivity study trains once the backbone features are cached (the quick profile: 30 epochs,
batch 64, Adam lr 1e-3, weight decay 0.01, one thread): (a) `engine.train.train` over `FeatureBatches`, which
gathers every batch into one buffer allocated once; (b) the same steps with a fresh tensor gathered per step
(the loop before that change). Same seed, same batches: the trained heads must be bitwise equal. Best of
`--repeats`; the ratio is (b)'s time over (a)'s.

Together: the 13 distinct configs of the paper's Figure 5 grid (lambda, delta, k_high one at a time) as one `StackedHeads`
trained by the same loop (`DeepMethod.fit_together`), against 13 engine fits one after the other; the ratio is the 13
fits' time over the joint fit's, and the largest difference of a trained weight says how far the float rounding moved.
"""
from __future__ import annotations

import argparse
import time

import torch


def plain_fit(head, loss_fn, rows, labels, epochs, batch_size, seed):
    """The reference: the engine's steps, but a new (B, K, C) tensor gathered for each batch."""
    from ratspain_bench.engine.train import batch_order, make_optimizer

    opt = make_optimizer(head.parameters(), "adam", 1e-3, 0.01)
    g = torch.Generator().manual_seed(seed)
    head.train()
    for _ in range(epochs):
        views = torch.randint(0, 1, (len(rows),), generator=g)
        for idx in batch_order(len(rows), batch_size, g):
            x = rows.index_select(0, views[idx] * len(rows) + idx)
            loss = loss_fn(head(x), labels[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    return head


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--n", type=int, default=950, help="training images (a LORO fold of the replica: about 950)")
    ap.add_argument("--regions", type=int, default=49)
    ap.add_argument("--channels", type=int, default=512)
    args = ap.parse_args()

    from ratspain_bench.engine.train import FeatureBatches, make_optimizer, train
    from ratspain_bench.methods.base import Context
    from ratspain_bench.methods.painseeker import PainSeeker, PainSeekerConfig, PainSeekerHead

    torch.set_num_threads(1)
    method = PainSeeker(PainSeekerConfig(), Context())
    feats = torch.randn(1, args.n, args.regions, args.channels)
    labels = torch.randint(0, 2, (args.n,))

    def new_head():
        torch.manual_seed(1)
        return PainSeekerHead(args.channels)

    engine, plain = [], []
    for _ in range(args.repeats):
        head = new_head()
        t = time.perf_counter()
        train(head, method.loss, FeatureBatches(feats, labels, 64, torch.device("cpu")), epochs=30,
              optimizer=make_optimizer(head.parameters(), "adam", 1e-3, 0.01), generator=torch.Generator().manual_seed(0),
              device=torch.device("cpu"))
        engine.append(time.perf_counter() - t)
        ref = new_head()
        t = time.perf_counter()
        plain_fit(ref, method.loss, feats[0], labels, 30, 64, 0)
        plain.append(time.perf_counter() - t)
        same = all(torch.equal(a, b) for a, b in zip(head.state_dict().values(), ref.state_dict().values()))
    print(f"head fit, {args.n} x {args.regions} x {args.channels} features, 30 epochs, 1 thread, best of {args.repeats}: "
          f"engine {min(engine):.2f} s, plain {min(plain):.2f} s, ratio {min(plain) / min(engine):.2f}x; "
          f"trained heads bitwise equal: {same}")

    from dataclasses import replace

    grid = PainSeeker.SENSITIVITY_GRID
    names = {"lambda": "prsc_lambda", "delta": "prsc_delta", "k_high": "k_high"}
    configs = list(dict.fromkeys(replace(PainSeekerConfig(), **{names[k]: v}) for k, values in grid.items() for v in values))

    def fit(model, loss):
        train(model, loss, FeatureBatches(feats, labels, 64, torch.device("cpu")), epochs=30,
              optimizer=make_optimizer(model.parameters(), "adam", 1e-3, 0.01), generator=torch.Generator().manual_seed(0),
              device=torch.device("cpu"))

    joint, alone = [], []
    for _ in range(args.repeats):
        heads = [new_head() for _ in configs]
        t = time.perf_counter()
        stacked = PainSeeker.stack_heads(heads)
        fit(stacked, PainSeeker.stacked_loss(configs))
        stacked.unstack(heads)
        joint.append(time.perf_counter() - t)
        t = time.perf_counter()
        singles = []
        for cfg in configs:
            singles.append(new_head())
            fit(singles[-1], PainSeeker(cfg, Context()).loss)
        alone.append(time.perf_counter() - t)
    diff = max((a - b).abs().max().item() for h, s in zip(heads, singles) for a, b in zip(h.state_dict().values(), s.state_dict().values()))
    print(f"{len(configs)} Figure 5 configs, best of {args.repeats}: together {min(joint):.2f} s, one by one {min(alone):.2f} s, "
          f"ratio {min(alone) / min(joint):.2f}x; largest weight difference {diff:.1e}")


if __name__ == "__main__":
    main()
