"""From run records to leaderboards: a pure function of its inputs (golden-tested).

Rules, in the order they apply:
1. One leaderboard per dataset (the run's `ratspain.dataset`) and task (`ratspain.task`: binary, au); when
   one name carries several data fingerprints within a task, each fingerprint gets its own leaderboard
   `<name>@<fingerprint[:8]>`. Boards of the au task are named `<name>-au` (`Leaderboard.name`).
2. A row is one configuration: (method, config hash, code hash, profile, source): rows from different
   code never merge. For each seed, the latest run
   that is complete is used; a seed with no complete run makes the whole row incomplete.
3. A run is complete when its status is `complete`, every expected fold has a complete child run,
   and its predictions cover every image of the dataset (the union of all complete runs' images).
4. Incomplete rows are listed with the reason and never ranked, never averaged.
5. Only the registered configuration of a method is ranked: the row's config hash must equal the hash
   of the configuration the registry gives the method for the row's profile with no overrides
   (`registered.registered_config_hash`), so no configuration is chosen on the test rats. Other
   configurations (`--set`, `--weights`, ...) and methods no longer registered are exploratory rows,
   listed apart and never ranked. A nested `study tune` result (source `nested LORO`: each outer fold's
   hyper-parameters chosen on its training rats only) is ranked as its own row, "<method>, tuned (nested
   LORO)"; a method's studies share that row, its latest complete study per seed.
6. Complete registered rows are ranked by pooled F1 (the paper's headline metric), ties by pooled
   accuracy (a shared rank only when both are equal); several seeds are shown as mean and sample
   standard deviation (ddof=1), never the best seed. Per-rat F1 is undefined (None) for a rat with no
   pain image and no pain prediction; means over rats skip it.
7. Tiers: the ranks the data can support (`stats.tiers`: paired bootstrap over rats of the pooled F1
   difference against the tier's best row, Holm-corrected, alpha `SIGNIFICANCE`).
8. McNemar's test (exact, two-sided) of every row against the top-ranked one on the shared images;
   with several seeds, seeds are paired (the same seed where both have it) and the largest p-value
   is reported, so a marker means every pair differs.
9. Baselines are rows of their own, unranked: the majority class of each fold's training rats
   (ties go to no pain, like scikit-learn's most_frequent) and chance (a fair coin per image).
10. Prediction-only entries (`source` predictions-only) are listed in their own section, "predictions
   only, not reproduced", never ranked with the rows the harness ran. Rows of outside code run with
   `--sandbox none` carry the mark `unsandboxed` in their source, those run under bubblewrap `bubblewrap`.
10a. Outside code (a row run sandboxed or unsandboxed, `ratspain.sandbox` runsc, bwrap or none) is ranked only when
   every run of it ran under gVisor (`runsc`: a kernel of its own per worker) on a dataset whose labels nobody can
   recompute (`ratspain.labels_public` false: a maintainer's own data, a `synth --hidden` replica). Otherwise its
   row is listed unranked (kind `unranked`) with the reason: under bubblewrap or unsandboxed, its workers shared the
   host's kernel with earlier folds (labels read through the page cache); on a public dataset (the built-in replica,
   any seeded replica, or one recorded before the tag existed), a submission could render it again and read its labels.
11. The au task's board (`task` au) uses the same rows on the binary label derived from the predicted grades
   (rules 2-5, 8, 10) plus each row's pooled AU figures (`Row.au`, `au.row_block`: per-AU QWK, RGS ICC(A,1)
   with a bootstrap interval over rats, MAE). It is ranked by pooled RGS ICC(A,1) (undefined last), ties by
   derived pooled F1 (a shared rank only when both are equal); tiers as rule 7 on the paired bootstrap of the
   ICC(A,1) difference (`stats.resampled_icc` on per-rat sufficient statistics). No baselines and no paper
   reference; the raters' own agreement (`ceiling_*` metrics) is a reference (`Leaderboard.ceiling`), never
   ranked. A run whose predictions lack the AU columns is incomplete.
"""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field, replace
from typing import Callable

import numpy as np
import pandas as pd

from .. import metrics
from ..data.dataset import sort_subjects
from ..errors import InputError
from ..evaluation.record import NESTED
from . import au, paper, registered, stats
from .collect import RunRecord, run_url, ui_base, ui_command

SIGNIFICANCE = 0.05
MARKER = "†"
RANK_BY = "pooled_f1"
POOLED_KEYS = ("f1", "accuracy", "balanced_accuracy", "mcc")
PREDICTIONS_ONLY = "predictions-only"
EXPLORATORY = "exploratory"
UNRANKED = "unranked"
PUBLIC_LABELS = ("outside code on a dataset whose labels anyone can recompute (the built-in replica, or a replica whose seed "
                 "is known): not ranked; rank it on your own held-out data or a `ratspain-bench synth --hidden` replica")
SHARED_KERNEL = ("outside code run under bubblewrap or unsandboxed: its workers shared the host's kernel (page cache, dentries) "
                 "with the folds before them, through which a worker can read labels: not ranked; rank it run under gVisor "
                 "(`--sandbox runsc`)")


@dataclass(frozen=True)
class Row:
    """One line of a leaderboard: a reproduced configuration (kind `method`) or a baseline."""

    kind: str                                # method | baseline | exploratory | predictions-only
    label: str
    method: str
    seeds: tuple[str, ...]
    pooled: dict                             # metric -> mean over seeds
    pooled_std: dict                         # metric -> sample std over seeds (None with one seed)
    per_subject: dict                        # subject -> {"f1", "accuracy", "n"} (means over seeds; f1 None: undefined)
    mean_over_subjects: dict                 # {"f1", "accuracy"} (means over seeds; f1 over rats where defined)
    mean_over_subjects_std: dict
    confusion: dict                          # pooled tp/fp/fn/tn (mean over seeds)
    ci: dict = field(default_factory=dict)   # key -> (low, high), bootstrap over animals
    rank: int | None = None
    mcnemar: dict | None = None              # against the top row: b, c, n_shared, p_value, pairs
    tier: int | None = None                  # ranked rows: rows of one tier are not separable (stats.tiers)
    tier_p: float | None = None              # Holm-adjusted p against the tier's best row (None for that row)
    tier_p_raw: float | None = None          # the same p before Holm's adjustment
    family: str = ""
    source: str = ""
    profile: str = ""
    config_hash: str = ""
    code_hash: str = ""
    train_seconds: float | None = None
    hardware: str = ""
    run_ids: tuple[str, ...] = ()
    run_urls: tuple[str, ...] = ()
    experiment_id: str = ""
    note: str = ""
    au: dict = field(default_factory=dict)   # au task: pooled AU figures (`au.row_block`); empty on binary boards

    @property
    def significant(self) -> bool:
        return bool(self.mcnemar and self.mcnemar["p_value"] < SIGNIFICANCE)


@dataclass(frozen=True)
class IncompleteRow:
    label: str
    method: str
    seeds: tuple[str, ...]
    reasons: tuple[str, ...]
    folds: str                               # "3/6" per seed, joined
    source: str = ""
    run_ids: tuple[str, ...] = ()
    run_urls: tuple[str, ...] = ()


@dataclass(frozen=True)
class Leaderboard:
    dataset: str
    fingerprint: str
    subjects: tuple[str, ...]
    n_images: int
    rows: tuple[Row, ...]                    # ranked rows, then baselines
    incomplete: tuple[IncompleteRow, ...]
    imbalance: tuple[dict, ...]              # per fold: subject, train/test counts, majority class
    reference: tuple[dict, ...]              # the paper's rows (RatsPain-like datasets only)
    tracking_uri: str
    ui_command: str | None
    warnings: tuple[str, ...] = ()
    n_resamples: int = 2000
    bootstrap_seed: int = 0
    ui_url: str = ""
    bootstrap_exact: bool = True             # every distinct resample of the rats enumerated (else random)
    task: str = "binary"                     # binary | au (`tasks.TASKS`)
    ceiling: dict | None = None              # au task: the raters' own agreement (`au.ceiling`), never ranked
    per_rat: bool = True                     # per-rat columns shown (a hosted board hides them: `server.board`)
    robustness: bool = False                 # a robustness board sits beside it (`board.robustness`)

    @property
    def rat_columns(self) -> tuple[str, ...]:
        """The subjects with a column of their own in the results table."""
        return self.subjects if self.per_rat else ()

    @property
    def name(self) -> str:
        """The board's name: the dataset label, with `-<task>` for a task other than binary (its folder)."""
        return self.dataset if self.task == "binary" else f"{self.dataset}-{self.task}"

    @property
    def distinct_resamples(self) -> int:
        return stats.n_distinct_resamples(len(self.subjects))

    @property
    def ranked(self) -> tuple[Row, ...]:
        return tuple(r for r in self.rows if r.rank is not None)

    @property
    def main_rows(self) -> tuple[Row, ...]:
        """The results table: ranked rows and, where their score puts them, outside rows that are not ranked (rule 10a,
        shown apart, with the reason), then the baselines; not the exploratory and prediction-only sections."""
        order = au.order_key if self.task == "au" else _order
        return tuple(sorted(self.ranked + self.unranked, key=order)) + self.baselines

    def above_top(self) -> tuple[Row, ...]:
        """Rows not ranked (rule 10a) that score above the top-ranked row: what a reader must not miss."""
        order = au.order_key if self.task == "au" else _order
        return tuple(r for r in self.unranked if not self.ranked or order(r) < order(self.ranked[0]))

    @property
    def exploratory(self) -> tuple[Row, ...]:
        return tuple(r for r in self.rows if r.kind == EXPLORATORY)

    @property
    def unranked(self) -> tuple[Row, ...]:
        """Outside code run where it could read labels (rule 10a): shown with the reason, never ranked."""
        return tuple(r for r in self.rows if r.kind == UNRANKED)

    @property
    def baselines(self) -> tuple[Row, ...]:
        return tuple(r for r in self.rows if r.kind == "baseline")

    @property
    def predictions_only(self) -> tuple[Row, ...]:
        return tuple(r for r in self.rows if r.kind == PREDICTIONS_ONLY)


def _seed_key(s: str):
    return (0, int(s), s) if str(s).lstrip("-").isdigit() else (1, 0, str(s))


# ---------------------------------------------------------------- run validity


def _images(records) -> pd.DataFrame:
    """image -> subject, y_true over the predictions of every run marked complete (the dataset)."""
    frames = [r.predictions[["image", "subject", "y_true"]] for r in records if r.predictions is not None]
    if not frames:
        return pd.DataFrame(columns=["image", "subject", "y_true"])
    return pd.concat(frames, ignore_index=True).drop_duplicates()


def _incomplete_reason(r: RunRecord, all_images: set[str], n_subjects: int) -> str:
    if r.status != "complete":
        return f"seed {r.seed}: status {r.status}" + (f" ({r.error.splitlines()[0][:160]})" if r.error else "")
    expected = r.folds_expected if r.folds_expected is not None else n_subjects
    done = len(r.complete_subjects)
    if done < expected:
        return f"seed {r.seed}: {done} of {expected} folds complete"
    if r.predictions is None:
        return f"seed {r.seed}: {r.predictions_problem or 'no predictions'}"
    missing = all_images - set(r.predictions["image"])
    if missing:
        return f"seed {r.seed}: predictions cover {len(all_images) - len(missing)} of {len(all_images)} images"
    return ""


# ---------------------------------------------------------------- aggregation


def _per_subject_cm(frame: pd.DataFrame, subjects) -> np.ndarray:
    out = np.zeros((len(subjects), 4))
    for i, s in enumerate(subjects):
        g = frame[frame["subject"] == s]
        c = metrics.confusion(g["y_true"], g["y_pred"])
        out[i] = (c.tp, c.fp, c.fn, c.tn)
    return out


def _confusion(a) -> metrics.Confusion:
    return metrics.Confusion(*(int(round(x)) for x in a))


def _mean_defined(values) -> float | None:
    """Mean of the values that are not None (an undefined F1); None when there is none."""
    kept = [v for v in values if v is not None]
    return float(np.mean(kept)) if kept else None


def _mean_std_defined(values) -> tuple[float | None, float | None]:
    kept = [v for v in values if v is not None]
    return stats.mean_std(kept) if kept else (None, None)


def _metric_block(cms: np.ndarray, subjects) -> tuple[dict, dict, dict, dict, dict, dict]:
    """cms: (K seeds, S, 4) -> pooled mean/std, per-subject means, mean-over-subjects mean/std, pooled confusion.

    A rat's F1 is undefined (None) where it has no pain image and no pain prediction; seed means and the
    mean over rats are taken over the values that are defined."""
    pooled_each = [metrics.summary(_confusion(c.sum(axis=0))) for c in cms]
    pooled, pooled_std = {}, {}
    for k in POOLED_KEYS:
        pooled[k], pooled_std[k] = stats.mean_std([p[k] for p in pooled_each])
    per_subject = {}
    for i, s in enumerate(subjects):
        each = [_confusion(c[i]) for c in cms]
        per_subject[s] = {"f1": _mean_defined([metrics.f1_or_none(e) for e in each]),
                          "accuracy": float(np.mean([metrics.accuracy(e) for e in each])), "n": each[0].n}
    mean, mean_std = {}, {}
    for k, fn in (("f1", metrics.f1_or_none), ("accuracy", metrics.accuracy)):
        mean[k], mean_std[k] = _mean_std_defined([_mean_defined([fn(_confusion(x)) for x in c]) for c in cms])
    conf = dict(zip(("tp", "fp", "fn", "tn"), (float(x) for x in cms.sum(axis=1).mean(axis=0))))
    return pooled, pooled_std, per_subject, mean, mean_std, conf


def _ci(cms: np.ndarray, resamples: stats.Resamples) -> dict:
    return {k: (v.low, v.high) for k, v in stats.bootstrap_over_subjects(cms, resamples=resamples).items()}


def _majority(images: pd.DataFrame, subjects) -> tuple[pd.DataFrame, list[dict]]:
    """Per fold, predict the training rats' majority class; returns predictions and the imbalance table."""
    counts = {s: (int(((images["subject"] == s) & (images["y_true"] == 0)).sum()),
                  int(((images["subject"] == s) & (images["y_true"] == 1)).sum())) for s in subjects}
    tot_neg, tot_pos = sum(c[0] for c in counts.values()), sum(c[1] for c in counts.values())
    table, cls = [], {}
    for s in subjects:
        neg, pos = counts[s]
        tr_neg, tr_pos = tot_neg - neg, tot_pos - pos
        cls[s] = 1 if tr_pos > tr_neg else 0
        c = metrics.confusion([0] * neg + [1] * pos, [cls[s]] * (neg + pos))
        table.append({"subject": s, "train_no_pain": tr_neg, "train_pain": tr_pos, "test_no_pain": neg, "test_pain": pos,
                      "test_pain_share": pos / (neg + pos) if neg + pos else 0.0,
                      "majority_class": "pain" if cls[s] else "no pain",
                      "majority_f1": metrics.f1_or_none(c), "majority_accuracy": metrics.accuracy(c)})
    preds = images.assign(y_pred=images["subject"].map(cls).astype(int))
    return preds, table


def _mcnemar_vs(top_preds: dict, other_preds: dict) -> dict | None:
    """Seed-paired McNemar tests (shared seeds, else seeds paired in order); the largest p is kept."""
    shared = sorted(set(top_preds) & set(other_preds), key=_seed_key)
    pairs = [(s, s) for s in shared] or list(zip(sorted(top_preds, key=_seed_key), sorted(other_preds, key=_seed_key)))
    worst = None
    for st, so in pairs:
        m = top_preds[st][["image", "y_true", "y_pred"]].merge(other_preds[so][["image", "y_pred"]], on="image", suffixes=("_top", ""))
        if not len(m):
            continue
        # b: only this row right, c: only the top row right
        t = stats.mcnemar(m["y_true"], m["y_pred"], m["y_pred_top"])
        if worst is None or t.p_value > worst.p_value:
            worst = t
    if worst is None:
        return None
    return {"b": worst.b, "c": worst.c, "n_shared": worst.n_shared, "p_value": worst.p_value, "method": worst.method,
            "pairs": len(pairs)}


def _label(method: str, key, duplicates: set[str]) -> str:
    if method not in duplicates:
        return method
    _, chash, code, profile, _ = key
    code = f", code {code[:7]}" if code and code != "-" else ""
    return f"{method} [{profile}, cfg {chash[:8]}{code}]" if profile else f"{method} [cfg {chash[:8]}{code}]"


def _source(r: RunRecord) -> str:
    return r.source + {"none": ", unsandboxed", "bwrap": ", bubblewrap"}.get(r.sandbox, "")


def _unranked_reason(runs) -> str | None:
    """Rule 10a: why outside code is not ranked (None: it is), from its runs' sandbox and dataset tags."""
    if any(r.sandbox in ("bwrap", "none") for r in runs):
        return SHARED_KERNEL
    if any(r.sandbox == "runsc" for r in runs) and not all(r.labels_public == "false" for r in runs):
        return PUBLIC_LABELS
    return None


#: (method, profile) -> config hash of the registered configuration; raises InputError when there is none
Lookup = Callable[[str, str], str]


def _registration_note(row: Row, lookup: Lookup, cache: dict) -> str:
    """"" when `row` is its method's registered configuration (or its nested-LORO result), else why it is exploratory."""
    if row.source == NESTED:
        return ""
    key = (row.method, row.profile)
    if key not in cache:
        try:
            cache[key] = (lookup(row.method, row.profile), "")
        except InputError as e:  # args[0]: UnknownMethodError is a KeyError, whose str() adds quotes
            cache[key] = (None, str(e.args[0]) if e.args else type(e).__name__)
    wanted, problem = cache[key]
    if wanted is None:
        return f"no registered configuration to compare with ({problem})"
    if row.config_hash != wanted:
        return (f"config {row.config_hash[:8]} is not the registered configuration of {row.method} "
                f"for profile {row.profile or '-'} ({wanted[:8]}): a --set or --weights variant")
    return ""


def _split_registered(rows: list[Row], lookup: Lookup) -> tuple[list[Row], list[Row]]:
    """The rows of registered configurations, and the other rows as exploratory (with the reason as note)."""
    cache: dict = {}
    kept, exploratory = [], []
    for row in rows:
        note = _registration_note(row, lookup, cache)
        if note:
            exploratory.append(replace(row, kind=EXPLORATORY, note=note))
        else:
            kept.append(row)
    return kept, exploratory


def _order(row: Row) -> tuple:
    return (-row.pooled["f1"], -row.pooled["accuracy"], row.label)


def _ranks(rows: list[Row], order=_order) -> list[Row]:
    """Rows sorted by `order` (default pooled F1, then pooled accuracy); rows equal on every key of `order`
    but the label share a rank."""
    ranked: list[Row] = []
    for i, row in enumerate(sorted(rows, key=order)):
        prev = ranked[-1] if ranked else None
        tied = prev is not None and all(a == b or abs(a - b) < 1e-12 for a, b in zip(order(prev)[:-1], order(row)[:-1]))
        ranked.append(replace(row, rank=prev.rank if tied else i + 1))
    return ranked


def _with_tiers(ranked: list[Row], data_by_label: dict, resamples: stats.Resamples,
                statistic=stats.pooled_f1_statistic) -> list[Row]:
    found = stats.tiers([data_by_label[r.label] for r in ranked], resamples, SIGNIFICANCE, statistic)
    return [replace(r, tier=t.tier, tier_p=t.p_holm, tier_p_raw=t.p_raw) for r, t in zip(ranked, found)]


def _plain_labels(ranked: list[Row]) -> list[Row]:
    """The method's name as label of its only ranked row (its other rows keep their config in the label)."""
    count = defaultdict(int)
    for r in ranked:
        count[r.method] += 1
    return [replace(r, label=r.method) if count[r.method] == 1 else r for r in ranked]


def build_leaderboard(dataset: str, records: list[RunRecord], tracking_uri: str = "", n_resamples: int = 2000,
                      bootstrap_seed: int = 0, mlflow_ui: str | None = None, lookup: Lookup | None = None,
                      task: str = "binary") -> Leaderboard:
    """The leaderboard of one dataset and task from its parent runs (all with the same dataset, fingerprint and task).

    `lookup`: the registered configuration's hash of a (method, profile); default the registry's
    (`registered.registered_config_hash`). `task` au: see rule 11."""
    lookup = lookup or registered.registered_config_hash
    au_task = task == au.TASK
    warnings = []
    images = _images([r for r in records if r.status == "complete"])
    conflicts = images["image"].duplicated(keep=False)
    if conflicts.any():
        bad = images.loc[conflicts, "image"].iloc[0]
        warnings.append(f"runs disagree on the subject or label of {images.loc[conflicts, 'image'].nunique()} image(s), e.g. {bad!r}")
        images = images.drop_duplicates("image")
    subjects = tuple(sort_subjects(images["subject"].unique()))
    all_images = set(images["image"])
    resamples = stats.rat_resamples(len(subjects), n_resamples, bootstrap_seed)

    groups: dict[tuple, dict[str, list[RunRecord]]] = defaultdict(lambda: defaultdict(list))
    for r in records:  # a method's nested-LORO results form one row: its latest complete study (rule 5)
        chash = NESTED if r.source == NESTED else r.config_hash
        groups[(r.method, chash, r.code_hash, r.profile, r.source)][r.seed].append(r)
    methods_count = defaultdict(int)
    for key in groups:
        methods_count[key[0]] += key[4] != NESTED
    duplicates = {m for m, n in methods_count.items() if n > 1}

    complete_rows, incomplete, preds_by_label, cms_by_label, sums_by_label, public = [], [], {}, {}, {}, {}
    ui = ui_base(tracking_uri, mlflow_ui)
    for key in sorted(groups):
        method = key[0]
        label = f"{method}, tuned (nested LORO)" if key[4] == NESTED else _label(method, key, duplicates)
        chosen, reasons, folds = {}, [], []
        for seed in sorted(groups[key], key=_seed_key):
            runs = sorted(groups[key][seed], key=lambda r: r.start_time, reverse=True)
            verdicts = [(r, _incomplete_reason(r, all_images, len(subjects))
                         or (f"seed {r.seed}: {au.missing_columns(r.predictions)}" if au_task and au.missing_columns(r.predictions) else ""))
                        for r in runs]
            good = [r for r, why in verdicts if not why]
            run = good[0] if good else runs[0]
            chosen[seed] = run
            expected = run.folds_expected if run.folds_expected is not None else len(subjects)
            folds.append(f"{len(run.complete_subjects)}/{expected}")
            if not good:
                reasons.append(verdicts[0][1])
        seeds = tuple(chosen)
        ids = tuple(r.run_id for r in chosen.values())
        urls = tuple(run_url(ui, r.experiment_id, r.run_id) for r in chosen.values())
        first = next(iter(chosen.values()))
        if reasons:
            incomplete.append(IncompleteRow(label, method, seeds, tuple(reasons), ", ".join(folds), _source(first), ids, urls))
            continue
        cms = np.stack([_per_subject_cm(r.predictions, subjects) for r in chosen.values()])
        pooled, pooled_std, per_subject, mean, mean_std, conf = _metric_block(cms, subjects)
        seconds = [r.metrics.get("train_seconds", sum(f.metrics.get("train_seconds", 0.0) for f in r.folds)) for r in chosen.values()]
        hardware = ", ".join(sorted({r.hardware for r in chosen.values() if r.hardware}))
        au_figures = {}
        if au_task:
            au_figures, sums_by_label[label] = au.row_block([r.predictions for r in chosen.values()], subjects, resamples)
        complete_rows.append(Row(
            kind=PREDICTIONS_ONLY if first.source == PREDICTIONS_ONLY else "method", label=label, method=method, seeds=seeds, pooled=pooled, pooled_std=pooled_std,
            per_subject=per_subject, mean_over_subjects=mean, mean_over_subjects_std=mean_std, confusion=conf,
            ci=_ci(cms, resamples), family=first.family, source=_source(first), profile=first.profile,
            config_hash=first.config_hash, code_hash=first.code_hash, train_seconds=float(np.mean(seconds)), hardware=hardware, run_ids=ids,
            run_urls=urls, experiment_id=first.experiment_id, au=au_figures))
        preds_by_label[label] = {s: r.predictions for s, r in chosen.items()}
        cms_by_label[label] = cms
        why = _unranked_reason(chosen.values())
        if why:
            public[label] = why

    order = au.order_key if au_task else _order
    outside = sorted((r for r in complete_rows if r.kind == PREDICTIONS_ONLY), key=order)
    candidates, exploratory = _split_registered([r for r in complete_rows if r.kind != PREDICTIONS_ONLY], lookup)
    exploratory.sort(key=lambda r: (r.method, order(r)))
    unranked = sorted((replace(r, kind=UNRANKED, note=public[r.label]) for r in candidates if r.label in public), key=order)
    candidates = [r for r in candidates if r.label not in public]
    if au_task:
        ranked = _with_tiers(_ranks(candidates, order), sums_by_label, resamples, stats.resampled_icc)
    else:
        ranked = _with_tiers(_ranks(candidates), cms_by_label, resamples)
    top_preds = preds_by_label[ranked[0].label] if ranked else None
    if ranked:
        ranked = [ranked[0]] + [replace(r, mcnemar=_mcnemar_vs(top_preds, preds_by_label[r.label])) for r in ranked[1:]]
    ranked = _plain_labels(ranked)

    baselines, imbalance = [], []
    if len(images):
        maj_preds, imbalance = _majority(images, subjects)
    if len(images) and not au_task:
        cms = _per_subject_cm(maj_preds, subjects)[None]
        pooled, pooled_std, per_subject, mean, mean_std, conf = _metric_block(cms, subjects)
        baselines.append(Row(
            kind="baseline", label="majority class (baseline)", method="majority", seeds=(), pooled=pooled,
            pooled_std=pooled_std, per_subject=per_subject, mean_over_subjects=mean, mean_over_subjects_std=mean_std,
            confusion=conf, ci=_ci(cms, resamples),
            mcnemar=_mcnemar_vs(top_preds, {"": maj_preds}) if top_preds else None,
            note="each fold predicts the majority class of its training rats (tie: no pain)"))
        baselines.append(_chance_row(images, subjects))

    reference = tuple(_reference_rows(subjects)) if paper.is_ratspain_like(dataset.split("@")[0]) and not au_task else ()
    fingerprint = next((r.fingerprint for r in records if r.fingerprint), "")
    rows = tuple(ranked) + tuple(baselines) + tuple(unranked) + tuple(exploratory) + tuple(outside)
    return Leaderboard(dataset, fingerprint, subjects, len(images), rows, tuple(incomplete),
                       tuple(imbalance), reference, tracking_uri, ui_command(tracking_uri) if tracking_uri else None,
                       tuple(warnings), n_resamples, bootstrap_seed, ui, resamples.exact, task,
                       au.ceiling(records) if au_task else None)


def _chance_row(images: pd.DataFrame, subjects) -> Row:
    per_subject = {}
    for s in subjects:
        g = images[images["subject"] == s]
        pos = int(g["y_true"].sum())
        per_subject[s] = {"f1": stats.chance_f1(pos, len(g) - pos), "accuracy": 0.5, "n": len(g)}
    pos = int(images["y_true"].sum())
    neg = len(images) - pos
    pooled = {"f1": stats.chance_f1(pos, neg), "accuracy": 0.5, "balanced_accuracy": 0.5, "mcc": 0.0}
    mean = {"f1": float(np.mean([v["f1"] for v in per_subject.values()])), "accuracy": 0.5}
    return Row(kind="baseline", label="chance (fair coin, baseline)", method="chance", seeds=(), pooled=pooled,
               pooled_std={k: None for k in POOLED_KEYS}, per_subject=per_subject, mean_over_subjects=mean,
               mean_over_subjects_std={"f1": None, "accuracy": None},
               confusion={"tp": pos / 2, "fp": neg / 2, "fn": pos / 2, "tn": neg / 2},
               note="expected values of calling each image pain with probability 1/2: exact E[F1], accuracy 1/2")


def _reference_rows(subjects) -> list[dict]:
    out = []
    for method, v in paper.TABLE3_LORO.items():
        per = {s: {"f1": x["f1"], "accuracy": x["accuracy_pct"] / 100} for s, x in v["per_rat"].items()}
        out.append({"method": method, "label": f"{v['label']} (paper, reported)",
                    "per_subject": per,
                    "pooled": {"f1": v["loro_pooled"]["f1"], "accuracy": v["loro_pooled"]["accuracy_pct"] / 100},
                    "mean_over_subjects": {"f1": float(np.mean([x["f1"] for x in per.values()])),
                                           "accuracy": float(np.mean([x["accuracy"] for x in per.values()]))}})
    return out


def build_leaderboards(records: list[RunRecord], tracking_uri: str = "", n_resamples: int = 2000,
                       bootstrap_seed: int = 0, mlflow_ui: str | None = None, lookup: Lookup | None = None) -> list[Leaderboard]:
    """One leaderboard per dataset and task (per fingerprint when one name has several within a task), sorted by
    name, binary before au. `lookup`: see `build_leaderboard`."""
    by_name: dict[tuple[str, str], dict[str, list[RunRecord]]] = defaultdict(lambda: defaultdict(list))
    for r in records:
        if r.protocol:  # another protocol than loro: the robustness board's (`board.robustness`)
            continue
        by_name[(r.dataset, r.task or "binary")][r.fingerprint].append(r)
    out = []
    for name, task in sorted(by_name, key=lambda k: (k[0], k[1] != "binary", k[1])):
        fps = by_name[(name, task)]
        for fp in sorted(fps):
            label = name if len(fps) == 1 else f"{name}@{fp[:8] or 'unknown'}"
            out.append(build_leaderboard(label, fps[fp], tracking_uri, n_resamples, bootstrap_seed, mlflow_ui, lookup, task))
    return out
