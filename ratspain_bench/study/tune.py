"""Hyper-parameter search with nested leave-one-rat-out (Optuna TPE, median pruning across inner folds).

For each outer fold (one held-out rat):
1. an Optuna study `<study-name>/outer-<rat>` searches the method's declared space; a trial's score
   is the pooled F1 of an inner LORO over the *training rats only* (the held-out rat is not in any
   inner fold: `Protocol.inner` asserts it, and tests check the indices the inner loop saw);
   after each inner fold the running pooled F1 is reported, and Optuna's MedianPruner stops trials
   that fall below the median of earlier trials at the same inner fold;
2. the best trial's config is fitted on all training rats and scores the held-out rat.
The outer predictions, pooled over the outer folds, are the nested-LORO estimate: no test rat ever
chose a hyper-parameter. Parameter importances (Optuna, fANOVA) are averaged over the outer studies.

Workers: `--n-trials` is per worker and per outer fold; workers with one `--storage` and
`--study-name` add trials to the same studies. The report reflects the storage when a worker ends;
`--n-trials 0` rewrites it from the storage without running trials.
"""
from __future__ import annotations

import functools
import hashlib
import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import InputError
from ..evaluation.configure import configure_many
from ..evaluation.identity import config_hash, safe_name
from ..evaluation.predictions import score_frame
from ..evaluation.record import Store, Tag
from ..methods.registry import get_method
from . import report, runs
from .evaluate import Evaluator
from .options import StudyOptions
from .sensitivity import folder_name
from .space import check_against_config, declared_space, parse_cli_dim
from .storage import default_storage_url, open_storage, redact
from .workers import Heartbeat, fail_stale_trials, worker_id


@dataclass
class TuneOptions(StudyOptions):
    n_trials: int = 20  # per worker, per outer fold
    space: list = field(default_factory=list)  # --space NAME=SPEC items (replace the declared space)
    prune: bool = True
    startup_trials: int = 5  # MedianPruner: trials finished before pruning starts


@dataclass
class TuneResult:
    summary: dict
    report: Path
    out_dir: Path
    complete: bool


def _jsonable(v):
    return v if isinstance(v, (int, float, str, bool)) or v is None else str(v)


def run_tune(dataset, opts: TuneOptions, observer=None) -> TuneResult:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    run = _Tune(dataset, opts, observer)
    for i, outer in enumerate(run.ev.folds):
        run.run_outer(i, outer)
    return run.write_outputs()


def _search_space(spec, opts: TuneOptions, base: dict) -> tuple[dict, str]:
    """(the space to search, where it came from): --space, else the method's declaration; checked against its config."""
    if opts.space:
        space = {d.name: d for d in map(parse_cli_dim, opts.space)}
        source = "--space"
    else:
        space, source = declared_space(spec, opts.sandbox)
    if not space:
        raise InputError(f"{opts.method} declares no search space: add a [search_space] table to its submission.toml, "
                         "a SEARCH_SPACE dict to its class, or pass --space NAME=LOW..HIGH")
    check_against_config(space, base, opts.method, source)
    return space, source


class _Tune:
    """One worker's run of a tuning study: the space, the evaluator, the MLflow parent run and each outer fold's result."""

    def __init__(self, dataset, opts: TuneOptions, observer) -> None:
        self.dataset, self.opts = dataset, opts
        self.start = time.perf_counter()
        self.spec = get_method(opts.method)
        (base,) = configure_many(self.spec, opts.profile, [opts.fixed], opts.sandbox)
        self.space, self.source = _search_space(self.spec, opts, base)
        if dataset.table["subject"].nunique() < 3:
            raise InputError(f"{dataset.source}: nested LORO needs at least 3 subjects (an inner LORO over at least 2 training rats)")
        self.ev = Evaluator(dataset, opts.runs_dir, opts.seed, opts.device, opts.profile, observer, opts.sandbox, opts.protocol)
        self.described = [d.describe() for d in self.space.values()]
        digest = hashlib.sha1(json.dumps({"m": opts.method, "p": opts.profile, "f": opts.fixed, "s": self.described, "seed": opts.seed,
                                          "d": self.ev.fingerprint, **({"protocol": opts.protocol} if opts.protocol != "loro" else {})}, sort_keys=True, default=str).encode()).hexdigest()[:8]
        self.study_name = opts.study_name or f"tune-{safe_name(opts.method)}-{digest}"
        self.storage_url = opts.storage or default_storage_url(opts.runs_dir)
        self.storage = open_storage(self.storage_url, opts.runs_dir)
        self.open_parent()
        self.outer_rows, self.outer_frames, self.imps, self.chosen = [], [], [], []

    def open_parent(self) -> None:
        """The study's MLflow parent run (found again on resume)."""
        opts, name, where = self.opts, self.study_name, redact(self.storage_url)
        self.store = Store(opts.runs_dir, opts.tracking_uri)
        self.exp = runs.experiment(self.store, self.dataset.name)
        self.parent = runs.parent_run(self.store, self.exp, runs.study_id(where, name), f"tune {opts.method} ({name})", {
            Tag.STUDY_KIND: "tune", Tag.STUDY: name, Tag.METHOD: opts.method, Tag.DATASET: self.dataset.name,
            Tag.FINGERPRINT: self.ev.fingerprint, Tag.PROFILE: opts.profile, Tag.SCORED_ON: "nested LORO", Tag.STORAGE: where},
            {"method": opts.method, "profile": opts.profile, "seed": opts.seed, "space": "; ".join(self.described),
             "space_source": self.source, "fixed": json.dumps(opts.fixed, default=str), "study": name, "storage": where,
             "dataset": self.dataset.name})

    def open_outer(self, i: int, outer, inner: list):
        """The outer fold's study `<study-name>/outer-<rat>`; a worker that finds trials running there seeds its own TPE."""
        import optuna
        from optuna.trial import TrialState

        opts, name = self.opts, f"{self.study_name}/outer-{outer.subject}"
        probe = optuna.load_study(study_name=name, storage=self.storage) if name in _names(self.storage) else None
        busy = probe is not None and any(t.state == TrialState.RUNNING for t in probe.get_trials(deepcopy=False))
        seed = opts.seed * 1000 + i if not busy else int(hashlib.sha1(f"{worker_id()}|{i}".encode()).hexdigest()[:8], 16)
        study = optuna.create_study(
            storage=self.storage, study_name=name, direction="maximize", load_if_exists=True,
            sampler=optuna.samplers.TPESampler(seed=seed, n_startup_trials=min(10, max(2, opts.n_trials // 2))),
            pruner=optuna.pruners.MedianPruner(n_startup_trials=opts.startup_trials, n_warmup_steps=0) if opts.prune
            else optuna.pruners.NopPruner())
        study.set_user_attr("outer_subject", outer.subject)
        study.set_user_attr("inner_subjects", [f.subject for f in inner])
        return study

    def objective(self, trial, outer, inner: list) -> float:
        """The pooled F1 of an inner LORO over the outer fold's training rats, reported (and maybe pruned) per inner fold."""
        import optuna

        opts, spec = self.opts, self.spec
        params = {n: d.suggest(trial) for n, d in self.space.items()}
        try:
            (cfg,) = configure_many(spec, opts.profile, [{**opts.fixed, **params}], opts.sandbox)
        except InputError as e:
            trial.set_user_attr("error", str(e))
            raise
        trial.set_user_attr("config_hash", config_hash(spec.family, cfg))

        def on_fold(k: int, frame: pd.DataFrame) -> None:
            f1 = float(score_frame(frame)["pooled"]["f1"])
            trial.report(f1, k)
            if opts.prune and k < len(inner) - 1 and trial.should_prune():
                trial.set_user_attr("pruned_after_inner_folds", k + 1)
                raise optuna.TrialPruned(f"inner F1 {f1:.4f} after {k + 1} inner folds is below the median")

        with Heartbeat(trial):
            try:
                frame = self.ev.run(spec, cfg, inner, stage="inner", outer=outer.subject, on_fold=on_fold)
            except optuna.TrialPruned:
                raise
            except Exception as e:
                trial.set_user_attr("error", f"{type(e).__name__}: {e}"[:2000])
                raise
        s = score_frame(frame)["pooled"]
        trial.set_user_attr("inner_pooled_f1", float(s["f1"]))
        trial.set_user_attr("inner_pooled_accuracy", float(s["accuracy"]))
        return float(s["f1"])

    def run_outer(self, i: int, outer) -> None:
        """This worker's trials on one outer fold, then the best config scored on the held-out rat; logs the trials."""
        opts = self.opts
        inner = self.ev.protocol.inner(self.dataset.table, outer)
        study = self.open_outer(i, outer, inner)
        fail_stale_trials(study)
        if opts.n_trials > 0:
            opts.log(f"[tune] outer rat {outer.subject}: {opts.n_trials} trials, inner LORO over rats {', '.join(f.subject for f in inner)}")
            study.optimize(functools.partial(self.objective, outer=outer, inner=inner), n_trials=opts.n_trials, catch=(Exception,))
        self.outer_rows.append(self.score_outer(study, outer))
        _log_trials(self.store, self.exp, self.parent, study, outer.subject)

    def score_outer(self, study, outer) -> dict:
        """The outer fold's row: trial counts and, once a trial is complete, the best config's held-out scores."""
        from optuna.trial import TrialState

        opts, spec = self.opts, self.spec
        trials = study.get_trials(deepcopy=False)
        counts = {s: sum(t.state == st for t in trials) for s, st in (("complete", TrialState.COMPLETE), ("pruned", TrialState.PRUNED),
                                                                       ("failed", TrialState.FAIL))}
        row = {"subject": outer.subject, **counts, "params": None, "inner_f1": None, "f1": None, "accuracy": None, "best_trial": None}
        if counts["complete"]:
            best = study.best_trial
            (cfg,) = configure_many(spec, opts.profile, [{**opts.fixed, **best.params}], opts.sandbox)
            frame = self.ev.fold_predictions(spec, cfg, outer, stage="outer", outer=outer.subject)
            s = score_frame(frame)["pooled"]
            row.update(params={k: _jsonable(v) for k, v in best.params.items()}, inner_f1=float(best.value), f1=float(s["f1"]),
                       accuracy=float(s["accuracy"]), best_trial=best.number)
            self.outer_frames.append(frame.assign(**{f"chosen_{k}": v for k, v in best.params.items()}))
            self.chosen.append((outer, cfg))
            opts.log(f"[tune] outer rat {outer.subject}: chose {best.params} (inner F1 {best.value:.4f}); "
                     f"held-out F1 {s['f1']:.4f}, accuracy {100 * s['accuracy']:.2f}%")
            imp = report.importances(study)
            if imp:
                self.imps.append(imp)
        return row

    def write_outputs(self) -> TuneResult:
        """The nested estimate and mean importances into tune.md/json and CSVs; closes the parent run and, once every
        outer fold is scored, records the estimate as a leaderboard run."""
        opts, outer_rows = self.opts, self.outer_rows
        nested = {"folds_scored": len(self.outer_frames)}
        preds = pd.concat(self.outer_frames, ignore_index=True) if self.outer_frames else None
        if preds is not None:
            p = score_frame(preds)["pooled"]
            nested.update({k: float(p[k]) for k in ("f1", "accuracy", "balanced_accuracy", "mcc")})
        importance = _mean_importance(self.imps)
        complete = len(self.outer_frames) == len(self.ev.folds)
        summary = {"method": opts.method, "dataset": self.dataset.name, "study": self.study_name, "storage": redact(self.storage_url),
                   "profile": opts.profile, "seed": opts.seed, "space": self.described, "space_source": self.source, "fixed": opts.fixed,
                   "nested": nested, "outer": outer_rows, "importance": importance, "complete": complete,
                   "seconds": time.perf_counter() - self.start,
                   "note": "nested LORO: hyper-parameters chosen on the training rats of each outer fold only"}
        out = Path(opts.out_dir) if opts.out_dir else Path(opts.runs_dir) / "studies" / folder_name(self.study_name)
        md = report.write_text(out / "tune.md", report.tune_markdown(summary))
        report.write_text(out / "tune.json", json.dumps(summary, indent=1, default=str))
        report.atomic_csv(pd.DataFrame([{**{k: v for k, v in r.items() if k != "params"}, **{f"chosen_{k}": v for k, v in (r["params"] or {}).items()}}
                                        for r in outer_rows]), out / "tune_outer.csv")
        report.atomic_csv(pd.DataFrame({"param": list(importance), "importance": list(importance.values())}), out / "importance.csv")
        files = [md, out / "tune.json", out / "tune_outer.csv", out / "importance.csv"]
        if preds is not None:
            files.append(report.atomic_csv(preds, out / "tune_predictions.csv"))
        metrics = {f"nested_pooled_{k}": v for k, v in nested.items() if k != "folds_scored"}
        metrics.update({f"importance_{k}": v for k, v in importance.items()})
        metrics["outer_folds_scored"] = nested["folds_scored"]
        runs.finish(self.store, self.parent, "complete" if complete else "incomplete", metrics, files)
        if complete:
            _record_nested(self.store, self.ev, self.spec, opts, self.study_name, preds, self.chosen)
        return TuneResult(summary, md, out, complete)


def _mean_importance(imps: list) -> dict:
    """Parameter importances averaged over the outer studies (0 where a study lacks one), largest first."""
    if not imps:
        return {}
    names = list(dict.fromkeys(k for d in imps for k in d))
    importance = {k: float(np.mean([d.get(k, 0.0) for d in imps])) for k in names}
    return dict(sorted(importance.items(), key=lambda kv: -kv[1]))


def _record_nested(store: Store, ev: Evaluator, spec, opts: TuneOptions, study_name: str, preds: pd.DataFrame, chosen: list) -> None:
    """The nested-LORO estimate as a parent run of `ratspain/<dataset>`, like a `run`'s: the leaderboard ranks it as
    the row "<method>, tuned (nested LORO)" (source `nested LORO`). Its config hash names the study and the
    configuration each outer fold chose, so more trials that change a choice record a new run."""
    from ..evaluation import record
    from ..evaluation.fold import read_fold
    from ..evaluation.identity import JobKey
    from ..evaluation.runner import complete_parent, fold_metrics

    picks = {outer.subject: cfg for outer, cfg in chosen}
    key = JobKey(ev.dataset.name, ev.fingerprint, spec.name, config_hash("nested", {"study": study_name, "chosen": picks}),
                 ev.key(spec, chosen[0][1]).code_hash, opts.seed)
    parent = record.ParentRun(key, spec.family, opts.profile, record.NESTED, {"study": study_name}, len(ev.folds), spec.cite,
                              "in-process" if spec.trusted else opts.sandbox.mode, ev.dataset.labels_public)
    exp, parent_id, done = record.open_parent(store, parent)
    if done:
        return
    children = record.fold_runs(store, exp, parent_id)
    preds = preds.assign(method=spec.name, seed=opts.seed)
    summaries = []
    for outer, cfg in chosen:
        summary = read_fold(ev.key(spec, cfg).fold_dir(ev.runs_dir, outer))[1]
        summaries.append(summary)
        rows = preds[preds["fold"].astype(str) == outer.subject]
        record.log_fold(store, exp, parent_id, children, outer.subject, spec.name, fold_metrics(rows, summary),
                        files=[], tags={record.Tag.STUDY: study_name})
    complete_parent(store, parent_id, key, ev.dataset, preds, summaries, ev.runs_dir, ev.device)


def _names(storage) -> set[str]:
    import optuna

    return set(optuna.study.get_all_study_names(storage))


def _log_trials(c, exp, parent, study, outer_subject: str) -> None:
    """A child MLflow run per finished trial of an outer study (once; several workers may call this)."""
    from optuna.trial import TrialState

    have = runs.logged_trials(c, exp, parent)
    for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED)):
        key = f"{outer_subject}#{t.number}"
        if key in have:
            continue
        steps = t.intermediate_values
        metrics = {"inner_pooled_f1": t.value} if t.value is not None else {}
        metrics.update({f"inner_f1_after_{k + 1}_folds": v for k, v in steps.items()})
        runs.trial_run(c, exp, parent, key, f"outer {outer_subject} trial {t.number}",
                       {Tag.OUTER: outer_subject, Tag.TRIAL_STATE: t.state.name.lower(), Tag.STATUS: "complete"},
                       {**{k: _jsonable(v) for k, v in t.params.items()}, "config_hash": t.user_attrs.get("config_hash", "")}, metrics)
