"""`README.md`: the paper's Table 3 layout (per-rat "F1/Acc" cells and the pooled LORO cell) with tabulate."""
from __future__ import annotations

from collections import Counter

from . import cells, paper, render_au
from .cells import resampling_text
from .table import MARKER, SIGNIFICANCE, Leaderboard


def _tab(rows, headers) -> str:
    from tabulate import tabulate

    return tabulate(rows, headers=headers, tablefmt="github", disable_numparse=True)


def results_headers(lb: Leaderboard) -> list[str]:
    return (["Rank", "Tier", "Method"] + [f"Rat#{s}" for s in lb.rat_columns]
            + ["LORO (pooled)", "Mean over rats", "Pooled F1 95% CI", "Bal. acc.", "MCC", "vs top (McNemar)", "Seeds", "Train (s)", "Source", "Code"])


def results_rows(lb: Leaderboard, rows=None) -> list[list[str]]:
    return [[cells.rank_cell(r), cells.tier_cell(r), cells.md(r.label)] + [cells.rat_cell(r, s) for s in lb.rat_columns]
            + [cells.pooled_cell(r), cells.mean_cell(r), cells.ci_cell(r), cells.metric_cell(r, "balanced_accuracy"),
               cells.metric_cell(r, "mcc"), cells.vs_top_cell(r), cells.seeds_cell(r), cells.train_cell(r),
               cells.md(r.source) if r.source else cells.DASH, cells.code_cell(r)]
            for r in (lb.main_rows if rows is None else rows)]


def imbalance_table(lb: Leaderboard) -> str:
    rows = [[f"Rat#{d['subject']}", d["train_no_pain"], d["train_pain"], d["test_no_pain"], d["test_pain"],
             f"{100 * d['test_pain_share']:.1f}", d["majority_class"],
             cells.f1_acc_cell(d["majority_f1"], d["majority_accuracy"])] for d in lb.imbalance]
    return _tab([[str(x) for x in r] for r in rows],
                ["Held-out rat", "Train no pain", "Train pain", "Test no pain", "Test pain", "Test pain %",
                 "Majority class (train)", "Majority baseline F1/Acc"])


def tier_text(lb: Leaderboard) -> str:
    return ("**Tier**: the ranks the data can support. The top row opens tier 1; every other ranked row is compared with it "
            "by a paired bootstrap over rats of the difference in pooled F1 (" + resampling_text(lb) + "; on each the same "
            "rats' confusion matrices are summed for both rows), two-sided p = min(1, 2 min(P(d <= 0), P(d >= 0))); "
            f"walking down the ranks, rows join tier 1 while Holm-corrected p >= {SIGNIFICANCE}; the first row separated "
            "from the top opens tier 2, compared the same way with the rows below it, and so on "
            "(`tier_p` in `results.csv`: the Holm-adjusted p against the tier's best row).")


def definitions(lb: Leaderboard) -> list[str]:
    return [
        "Cells are **F1 of the pain class / accuracy in %** (the paper's \"0.7731/74.17\").",
        "**LORO (pooled) = one confusion matrix over all folds**: the held-out rats' confusion matrices summed, "
        "then F1 and accuracy computed once (the paper's LORO column).",
        "**Mean over rats** = the unweighted mean of the per-rat F1 and accuracy (each rat counts once, whatever its size). "
        f"A rat with no pain image and no pain prediction has no F1 ({cells.DASH} in the tables, blank in `results.csv`): "
        "the mean F1 is over the rats where it is defined.",
        "**Ranking: by pooled F1** (the paper's headline metric), ties broken by pooled accuracy. Only each method's "
        "registered configuration is ranked (its configuration for the profile with no `--set`/`--weights` override), so no "
        "configuration is chosen on the test rats; other configurations are exploratory. "
        "Baselines, the paper's reported numbers and incomplete runs are never ranked.",
        tier_text(lb),
        f"**95% CI**: weighted percentile bootstrap over rats ({resampling_text(lb)}; a resample's confusion matrix "
        "is the sum of its rats' matrices).",
        "**Several seeds** of one configuration: mean ± sample standard deviation over seeds (pooled and mean-over-rats "
        "cells); per-rat cells are seed means. Never the best seed.",
        f"**vs top (McNemar)**: McNemar's exact two-sided binomial test on the images both rows scored, against the "
        f"top-ranked row; b = images only this row gets right, c = images only the top row gets right; "
        f"{MARKER} = p < {SIGNIFICANCE}. With several seeds the seeds are paired and the largest p is shown.",
        "**Train (s)**: training time summed over the folds of a run (mean over seeds); hardware and MLflow run ids "
        "are in `results.csv` and on the web page. **Code**: the short hash of the code that made the row (the method's "
        "files and the protocol version); rows from different code are never merged.",
        "**majority class**: each fold predicts the majority class of its training rats (a tie predicts no pain). "
        "**chance**: a fair coin per image; accuracy and balanced accuracy are exactly 0.5, MCC 0, F1 is the exact expectation "
        "E[2TP/(TP+FP+P)] with TP ~ Bin(P, 1/2), FP ~ Bin(N, 1/2) (close to 2p/(1+2p), p = share of pain images).",
    ]


def exploratory_intro(lb: Leaderboard) -> str:
    """What the exploratory section holds, with its count of rows per method."""
    counts = Counter(r.method for r in lb.exploratory)
    per_method = ", ".join(f"{m} {n}" for m, n in sorted(counts.items()))
    return ("Configurations other than a method's registered one (`--set` or `--weights` variants) and methods no longer "
            "registered: listed for exploration, never ranked, since picking among them on these rats would tune on the "
            f"test set. Rows per method: {per_method}.")


def unranked_intro(lb: Leaderboard) -> str:
    """Why the unranked section's rows are not ranked (rule 10a)."""
    return ("submissions and plugins are ranked only when they ran under gVisor (`--sandbox runsc`, a kernel of its own per "
            "worker) on a dataset whose labels nobody can recompute. Under bubblewrap or unsandboxed, a worker shares the "
            "host's kernel with the folds before it and can read their labels through its caches; on a public dataset (the "
            "built-in replica, or a replica whose seed is known) a submission could render the images again and read their "
            "labels. Each row's note says which; rank them on your own held-out data or on a `ratspain-bench synth OUT "
            "--hidden` replica, under gVisor.")


def render_markdown(lb: Leaderboard, html_name: str = "index.html") -> str:
    au_board = lb.task == "au"
    headers, table = (render_au.headers, render_au.rows) if au_board else (results_headers, results_rows)
    out = [f"# Leaderboard: {cells.md(lb.dataset)}" + (render_au.TITLE if au_board else ""), ""]
    meta = f"Leave-one-rat-out (LORO), {len(lb.subjects)} rats, {lb.n_images:,} images"
    if lb.imbalance:
        meta += f", {100 * cells.pain_share(lb):.1f}% pain"
    if lb.fingerprint:
        meta += f"; dataset fingerprint `{lb.fingerprint}`"
    out += [meta + ".", "", f"Figures, a sortable table and links to every MLflow run: [{html_name}]({html_name}).", ""]
    if lb.robustness:
        out += ["How each method holds up when the test faces move away from the training faces (pose-shift, "
                "leave-one-site-out): [robustness.md](robustness.md).", ""]
    for w in lb.warnings:
        out += [f"> **Warning:** {w}", ""]
    out += ["## Results", ""]
    if lb.main_rows or (au_board and lb.ceiling):
        out += [_tab(table(lb), headers(lb)), ""]
    else:
        out += ["No complete run yet.", ""]
    if lb.unranked:  # right under the table: why the rows marked so are not ranked
        out += [f"**Not ranked**: {unranked_intro(lb)}", ""]
        out += [f"- {cells.md(r.label)}: {cells.md(r.note)}" for r in lb.unranked] + [""]
    out += [f"- {d}" for d in (render_au.definitions(lb) if au_board else definitions(lb))] + [""]
    if lb.exploratory:
        out += ["## Exploratory configurations (not ranked)", "", exploratory_intro(lb), ""]
        out += [_tab(table(lb, lb.exploratory), headers(lb)), ""]
        out += [f"- {cells.md(r.label)}: {cells.md(r.note)}" for r in lb.exploratory] + [""]
    if lb.predictions_only:
        out += ["## Predictions only, not reproduced (never ranked)", "",
                "Entries submitted as predictions files: the harness checked and scored them against the dataset's labels "
                "but did not run their code, so nothing shows how they were made. Not ranked with the rows above.", ""]
        out += [_tab(table(lb, lb.predictions_only), headers(lb)), ""]
    if lb.incomplete:
        out += ["## Incomplete (not ranked)", "",
                "Missing folds, failed or still running: listed here, never ranked and never averaged.", ""]
        out += [_tab([[cells.md(x) for x in (r.label, ",".join(r.seeds), r.folds, "; ".join(r.reasons), " ".join(r.run_ids))]
                      for r in lb.incomplete],
                     ["Method", "Seeds", "Folds complete", "Why", "MLflow run ids"]), ""]
    if lb.reference:
        out += ["## Reference: the paper's reported Table 3 (not reproduced, never ranked)", "",
                f"Numbers copied from the paper ({paper.SOURCE}), F1/accuracy %, LORO pooled over the six folds; "
                "the mean over rats is computed here from the paper's per-rat cells. They come from the real RatsPain "
                "images, which a replica dataset does not contain: compare with care.", ""]
        out += [_tab([cells.reference_cells(ref, lb.subjects) for ref in lb.reference],
                     ["Method"] + [f"Rat#{s}" for s in lb.subjects] + ["LORO (pooled)", "Mean over rats"]), ""]
        out += [f"Note from the paper's transcription: {paper.NOTE}", ""]
    if lb.imbalance:
        out += ["## Class imbalance per fold", "",
                "Derived from the predictions (all test images over the folds are the dataset). The training set of "
                "a fold is every other rat.", "", imbalance_table(lb), ""]
    out += ["## MLflow", ""]
    if lb.ui_command:
        out += [f"Tracking store: `{lb.tracking_uri}`. Open it with `{lb.ui_command}` and browse "
                f"{lb.ui_url or 'http://127.0.0.1:5000'}; the run ids of every row are in `results.csv` (`mlflow_run_ids`).", ""]
    else:
        out += [f"Tracking server: {lb.tracking_uri}; the run ids of every row are in `results.csv` (`mlflow_run_ids`).", ""]
    return "\n".join(out)


def render_index_markdown(entries) -> str:
    """The top-level README when there are several datasets: one line per leaderboard.

    `entries`: (leaderboard, relative folder) pairs.
    """
    out = ["# Leaderboards", "",
           "One leaderboard per dataset and task, never mixed: each folder holds its own README.md, index.html, results.csv "
           "and results.json. `results.csv`/`results.json` here hold every board's rows, with a `dataset` column "
           "(ranks are within a board). Binary boards rank by pooled F1, action-unit boards (`-au`) by pooled RGS ICC(A,1).", ""]
    rows = []
    for lb, rel in entries:
        label, score, _ = cells.top_cells(lb)
        rows.append([f"[{cells.md(lb.name)}]({rel}/README.md)", lb.task, str(len(lb.subjects)), f"{lb.n_images:,}", str(len(lb.ranked)),
                     str(len(lb.incomplete)), cells.md(label), score, f"[page]({rel}/index.html)"])
    out += [_tab(rows, ["Board", "Task", "Rats", "Images", "Ranked", "Incomplete", "Top", "Top's score (pooled)", "Web page"]), ""]
    return "\n".join(out)
