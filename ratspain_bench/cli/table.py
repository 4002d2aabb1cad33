"""The Table-3-style summary printed after `run`."""
from __future__ import annotations

from ..data.dataset import sort_subjects
from ..metrics import cell


def results_table(results, dataset) -> str:
    from tabulate import tabulate

    subjects = sort_subjects(dataset.table["subject"].unique())
    headers = ["Method"] + [f"Rat#{s}" for s in subjects] + ["LORO (pooled)", "mean over rats", "time (s)"]
    rows = []
    for r in results:
        if r.score is None:
            rows.append([r.method] + ["-"] * len(subjects) + ["failed", "", f"{r.seconds:.0f}"])
            continue
        per = r.score["per_subject"]
        p, m = r.score["pooled"], r.score["mean_over_subjects"]
        rows.append([r.method] + [cell(per[s]["f1"], per[s]["accuracy"]) if s in per else "-" for s in subjects]
                    + [cell(p["f1"], p["accuracy"]), cell(m["f1"], m["accuracy"]), f"{r.seconds:.0f}"])
    note = ("Cells: F1 of the pain class / accuracy %. LORO (pooled): one confusion matrix summed over all folds "
            "(the paper's LORO column); mean over rats: the unweighted mean of the per-rat cells.")
    return tabulate(rows, headers=headers, tablefmt="github") + "\n" + note
