"""`score A.csv --compare B.csv`: McNemar's test of two predictions files on the images they share."""
from __future__ import annotations

import pandas as pd

from .. import metrics
from ..errors import InputError
from . import stats
from .cells import p_text
from .table import MARKER, SIGNIFICANCE


def _one_run(preds, name: str) -> pd.DataFrame:
    runs = preds.runs()
    if len(runs) > 1:
        listed = ", ".join(f"{m or '?'}/seed {s or '?'}" for m, s, _ in runs[:5])
        raise InputError(f"{preds.source}: holds {len(runs)} runs ({listed}); compare one run per file "
                         f"({'use --method/--seed' if name == 'A' else 'split the file by method and seed'})")
    return runs[0][2]


def compare(a, b) -> dict:
    """McNemar (exact two-sided binomial; the chi-square with continuity correction beside it) on shared images.

    `a`, `b`: `evaluation.predictions.PredictionsFile` holding one run each. b/c count the images only A / only B gets right.
    """
    ta, tb = _one_run(a, "A"), _one_run(b, "B")
    joined = ta[["image", "subject", "y_true", "y_pred"]].merge(tb[["image", "y_true", "y_pred"]], on="image", suffixes=("_a", "_b"))
    if joined.empty:
        raise InputError(f"{b.source}: no image id in common with {a.source}; McNemar needs the same images")
    clash = joined[joined["y_true_a"] != joined["y_true_b"]]
    if len(clash):
        raise InputError(f"{b.source}: y_true differs from {a.source} on {len(clash)} shared image(s), e.g. {clash['image'].iloc[0]!r}: "
                         "not the same dataset")
    exact = stats.mcnemar(joined["y_true_a"], joined["y_pred_a"], joined["y_pred_b"])
    chi2 = stats.mcnemar_counts(exact.b, exact.c, exact.n_shared, method="chi2")

    def side(preds, table, col):
        cm = metrics.confusion(joined["y_true_a"], joined[col])
        return {"file": preds.source, "method": table["method"].iloc[0] or None, "seed": table["seed"].iloc[0] or None,
                "n": int(len(table)), "f1_shared": metrics.f1(cm), "accuracy_shared": metrics.accuracy(cm)}

    return {"a": side(a, ta, "y_pred_a"), "b": side(b, tb, "y_pred_b"), "n_shared": exact.n_shared,
            "only_in_a": int(len(ta) - exact.n_shared), "only_in_b": int(len(tb) - exact.n_shared),
            "mcnemar": {"b_only_a_right": exact.b, "c_only_b_right": exact.c, "test": "exact two-sided binomial on b and c",
                        "p_value": exact.p_value, "chi2_continuity_corrected": chi2.statistic, "p_value_chi2": chi2.p_value},
            "significant": exact.p_value < SIGNIFICANCE}


def format_comparison(r: dict) -> str:
    a, b, m = r["a"], r["b"], r["mcnemar"]
    name = lambda s: s["file"] + (f" ({s['method']}" + (f", seed {s['seed']}" if s["seed"] else "") + ")" if s["method"] else "")  # noqa: E731
    lines = [f"A: {name(a)}", f"B: {name(b)}",
             f"shared images: {r['n_shared']} (only in A: {r['only_in_a']}, only in B: {r['only_in_b']})",
             f"on the shared images: A F1/Acc {metrics.cell(a['f1_shared'], a['accuracy_shared'])}, "
             f"B F1/Acc {metrics.cell(b['f1_shared'], b['accuracy_shared'])}",
             f"McNemar: b = {m['b_only_a_right']} images only A gets right, c = {m['c_only_b_right']} only B gets right",
             f"exact two-sided binomial test: {p_text(m['p_value'])}"
             + (f" {MARKER} (A and B differ at p < {SIGNIFICANCE})" if r["significant"] else f" (no difference at p < {SIGNIFICANCE})"),
             f"chi-square with continuity correction: {m['chi2_continuity_corrected']:.4f}, {p_text(m['p_value_chi2'])}"]
    return "\n".join(lines) + "\n"
