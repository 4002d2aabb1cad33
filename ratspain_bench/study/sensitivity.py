"""One-at-a-time sensitivity analysis (the paper's Figure 5), driven by Optuna's GridSampler.

Design: one Optuna study over the grid's points (default: the method's declared `SENSITIVITY_GRID`,
for PainSeeker the paper's Figure 5), a categorical parameter `point` = "NAME=VALUE"
(e.g. `lambda=0.5`), so that a single `--study-name` covers the whole figure and any number of
parameters and values; the grid sampler hands each worker an unvisited point. Each point is a full
leave-one-rat-out run of the method with NAME=VALUE and every other parameter at its default (plus
`--set` fixed settings), scored by pooled F1 (one confusion matrix summed over the folds).

A method that `fits_together` the grid's configs (PainSeeker's frozen heads) fits them as one on each
fold, whichever trial first needs that fold (`Evaluator.fit_together`); the other trials read the folds.

Resuming: a point with a COMPLETE trial in the storage is never rerun. A point whose trial failed,
or was left RUNNING by a dead worker (see `workers`), is enqueued again. Two points that are the
same config (the defaults appear once per panel) share their fold predictions on disk, so the
default config is fitted once. Several workers (`--storage` shared) split the points; a trial that
finds its point already complete, or running in a lower-numbered trial, is pruned without fitting.

These scores use the test rats: an analysis of sensitivity, not a tuning result.
"""
from __future__ import annotations

import hashlib
import json
import multiprocessing as mp
import os
import re
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from ..errors import InputError
from ..evaluation.configure import configure_many, declaration
from ..evaluation.identity import config_hash, safe_name
from ..evaluation.predictions import score_frame
from ..evaluation.record import Store, Tag
from ..methods.registry import get_method
from . import report, runs
from .evaluate import Evaluator
from .options import StudyOptions
from .space import check_against_config
from .storage import default_storage_url, open_storage, redact
from .workers import Heartbeat, fail_stale_trials


@dataclass
class SensitivityOptions(StudyOptions):
    grid: dict | None = None  # {name: [values]}; None: the method's SENSITIVITY_GRID (PainSeeker: Figure 5)
    finetune: str | None = None
    n_trials: int | None = None  # at most this many points in this worker (default: until the grid is done)
    jobs: int = 1  # worker processes on this machine (each with cores // jobs torch threads)


@dataclass(frozen=True)
class Point:
    param: str
    value: object  # typed as the config field
    label: str  # "param=value", the Optuna categorical choice
    params: dict  # the point's full config


@dataclass
class SensitivityResult:
    rows: pd.DataFrame
    csv: Path
    png: Path
    report: Path
    study_name: str
    storage: str
    complete: bool
    failed: dict
    ran: int  # points fitted by this worker
    seconds: float
    notes: list


def folder_name(name: str) -> str:
    """A study name as a portable folder name (`painseeker:resnet10t` -> `painseeker_resnet10t`)."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name)


def parse_param(item: str) -> tuple[str, list[str]]:
    """`NAME=v1,v2,...` -> (name, [v1, v2, ...])."""
    name, sep, values = item.partition("=")
    vals = [v.strip() for v in values.split(",") if v.strip()]
    if not sep or not name.strip() or not vals:
        raise InputError(f"--param {item!r}: expected NAME=v1,v2,... (e.g. --param lambda=0.05,0.1,0.5)")
    return name.strip(), vals


def plan(opts: SensitivityOptions) -> tuple[dict, list[Point], list[str]]:
    """(base params, grid points, notes); every point's config is built now, so a typo fails before any work."""
    spec = get_method(opts.method)
    fixed = dict(opts.fixed)
    if opts.finetune is not None:
        fixed["finetune"] = opts.finetune
    notes = []
    (base,) = configure_many(spec, opts.profile, [fixed], opts.sandbox)
    grid = opts.grid if opts.grid is not None else declaration(spec, "sensitivity_grid", opts.sandbox)
    if not grid:
        raise InputError(f"{opts.method} declares no SENSITIVITY_GRID: give the grid with --param NAME=v1,v2,...")
    check_against_config(grid, base, opts.method, "--param")
    if spec.trusted:  # the method's settings for every point; what --set fixed wins, and a given grid or crop is the user's
        mine = opts.grid is None and "crop_size" not in fixed
        extra, note = spec.load().study_settings(spec.checked_config(opts.profile, **fixed), grid if mine else {})
        extra = {k: v for k, v in extra.items() if k not in fixed}
        notes += [note] if note else []
        if extra:
            fixed.update(extra)
            (base,) = configure_many(spec, opts.profile, [fixed], opts.sandbox)
    items = [(name, raw) for name, values in grid.items() for raw in values]
    configs = configure_many(spec, opts.profile, [{**fixed, name: str(raw)} for name, raw in items], opts.sandbox, errors="return")
    points = []
    for (name, raw), params in zip(items, configs):  # typed by the config field (1 -> 1.0 for floats)
        if "error" in params and len(params) == 1:
            raise InputError(f"--param {name}={raw}: {params['error']}")
        label = f"{name}={params[name]}"
        if any(p.label == label for p in points):
            raise InputError(f"--param {name}: value {params[name]} is listed twice")
        points.append(Point(name, params[name], label, params))
    opts.fixed = fixed
    return base, points, notes


def _worker_main(dataset, opts: SensitivityOptions, go) -> None:
    run_sensitivity(dataset, opts, write_outputs=False, go=go)


def _threads(jobs: int) -> int:
    return max(1, (os.cpu_count() or 1) // jobs)


def _spawn_workers(dataset, opts: SensitivityOptions, study_name: str, storage_url: str, go) -> list:
    """`jobs - 1` worker processes on the same study, each with cores // jobs threads; they start at once (their
    imports overlap this process's shared work) and take points when `go` is set."""
    import dataclasses

    sub = dataclasses.replace(opts, jobs=1, study_name=study_name, storage=storage_url, n_trials=None)
    saved = {k: os.environ.get(k) for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")}
    threads = str(_threads(opts.jobs))
    os.environ.update(OMP_NUM_THREADS=threads, MKL_NUM_THREADS=threads)
    try:
        procs = [mp.get_context("spawn").Process(target=_worker_main, args=(dataset, sub, go), daemon=False) for _ in range(opts.jobs - 1)]
        for p in procs:
            p.start()
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    return procs


def prepare_shared(spec, params: dict, ev: Evaluator, opts: SensitivityOptions) -> bool:
    """A trusted method's shared work for the study's config (`Method.prepare`: the frozen backbone's features,
    which every point of a head-parameter grid reuses), once, before the points start; False for outside methods."""
    if not spec.trusted:
        return False
    from ..evaluation.fold import image_size
    from ..methods.base import Context, make_config
    from ..paths import cache_dir

    cls = spec.load()
    ctx = Context(seed=opts.seed, device=opts.device, profile=opts.profile, cache_dir=cache_dir())
    cls.prepare(make_config(cls.Config, None, **params), ev.images(image_size(params)), ev.dataset.keys, ctx)
    return True


def default_study_name(opts: SensitivityOptions, points: list[Point], fingerprint: str) -> str:
    text = json.dumps({"m": opts.method, "p": opts.profile, "f": opts.fixed, "g": [p.label for p in points], "s": opts.seed,
                       "d": fingerprint, **({"protocol": opts.protocol} if opts.protocol != "loro" else {})}, sort_keys=True, default=str)
    return f"sensitivity-{safe_name(opts.method)}-{hashlib.sha1(text.encode()).hexdigest()[:8]}"


def rows_of(study, points: list[Point]) -> tuple[pd.DataFrame, dict]:
    """CSV rows (one per grid point, in grid order) from the COMPLETE trials; and the points that failed."""
    from optuna.trial import TrialState

    done, failed = {}, {}
    for t in sorted(study.get_trials(deepcopy=False), key=lambda t: t.number):
        label = t.params.get("point")
        if t.state == TrialState.COMPLETE and label not in done:
            done[label] = t
        elif t.state == TrialState.FAIL and label:
            failed[label] = str(t.user_attrs.get("error", "failed"))
    rows = []
    for p in points:
        t = done.get(p.label)
        rows.append({"param": p.param, "value": p.value,
                     "pooled_f1": t.user_attrs.get("pooled_f1") if t else float("nan"),
                     "pooled_accuracy": t.user_attrs.get("pooled_accuracy") if t else float("nan")})
    frame = pd.DataFrame(rows, columns=report.SENSITIVITY_COLUMNS)
    frame["value"] = pd.Series([r["value"] for r in rows], dtype=object)  # ints stay ints next to floats
    for col in ("pooled_f1", "pooled_accuracy"):
        frame[col] = pd.to_numeric(frame[col], errors="coerce")
    return frame, {k: v for k, v in failed.items() if k not in done}


def run_sensitivity(dataset, opts: SensitivityOptions, observer=None, write_outputs: bool = True, go=None) -> SensitivityResult | None:
    """Run (this worker's share of) the study; `go`: a helper process's start signal (see `_spawn_workers`)."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    run = _Sensitivity(dataset, opts, observer)
    if opts.jobs > 1 and opts.n_trials is None:  # a worker given --n-trials is one worker
        ran = run.run_with_helpers()
    else:
        if go is not None:  # a helper: wait for the shared work; give up if the process that started it is gone
            while not go.wait(2.0):
                if not mp.parent_process().is_alive():
                    return None
        ran = run.work(opts.n_trials)
    return run.write_outputs(ran) if write_outputs else None


class _Sensitivity:
    """One process's run of the study: the plan, the evaluator, the Optuna study and the MLflow parent run."""

    def __init__(self, dataset, opts: SensitivityOptions, observer) -> None:
        self.dataset, self.opts = dataset, opts
        self.start = time.perf_counter()
        self.spec = get_method(opts.method)
        self.base, self.points, self.notes = plan(opts)
        self.labels = [p.label for p in self.points]
        self.by_label = {p.label: p for p in self.points}
        self.ev = Evaluator(dataset, opts.runs_dir, opts.seed, opts.device, opts.profile, observer, opts.sandbox, opts.protocol)
        if self.ev.fit_together(self.spec, [p.params for p in self.points]):
            self.notes.append(f"{self.spec.name} fits the grid's configs together on each fold (frozen heads that differ only "
                              "in the loss: one stacked head, the same maths as separate fits with its own float rounding); "
                              "their job folders are therefore not those of a `run` of one config")
        for n in self.notes:
            opts.log(f"note: {n}")
        self.open_study()
        self.open_parent()
        self.number = None  # the trial `objective` last started
        self.retried: set = set()  # failed or abandoned points this process enqueued again

    def open_study(self) -> None:
        """Create or load the Optuna study over the grid; a new study records what it covers in its user attrs."""
        import optuna

        opts = self.opts
        self.study_name = opts.study_name or default_study_name(opts, self.points, self.ev.fingerprint)
        self.storage_url = opts.storage or default_storage_url(opts.runs_dir)
        storage = open_storage(self.storage_url, opts.runs_dir)
        sampler = optuna.samplers.GridSampler({"point": self.labels}, seed=opts.seed)
        self.study = optuna.create_study(storage=storage, sampler=sampler, study_name=self.study_name, direction="maximize",
                                         load_if_exists=True)
        old = self.study.user_attrs.get("points")
        if old is not None and old != self.labels:
            raise InputError(f"study {self.study_name!r} in {redact(self.storage_url)} holds another grid ({len(old)} points); "
                             "pick another --study-name or the same --param values")
        if old is None:
            for k, v in {"kind": "sensitivity", "method": opts.method, "dataset": self.dataset.name, "profile": opts.profile,
                         "fixed": json.dumps(opts.fixed, default=str), "points": self.labels,
                         "fingerprint": self.ev.fingerprint}.items():
                self.study.set_user_attr(k, v)

    def open_parent(self) -> None:
        """The study's MLflow parent run (found again on resume)."""
        opts, name, where = self.opts, self.study_name, redact(self.storage_url)
        self.store = Store(opts.runs_dir, opts.tracking_uri)
        self.exp = runs.experiment(self.store, self.dataset.name)
        self.defaults = {p: self.base[p] for p in dict.fromkeys(pt.param for pt in self.points)}
        self.parent = runs.parent_run(self.store, self.exp, runs.study_id(where, name), f"sensitivity {opts.method} ({name})", {
            Tag.STUDY_KIND: "sensitivity", Tag.STUDY: name, Tag.METHOD: opts.method,
            Tag.DATASET: self.dataset.name, Tag.FINGERPRINT: self.ev.fingerprint, Tag.PROFILE: opts.profile,
            Tag.SCORED_ON: "test rats (analysis, not tuning)", Tag.STORAGE: where},
            {"method": opts.method, "profile": opts.profile, "seed": opts.seed, "grid": ";".join(self.labels),
             "fixed": json.dumps(opts.fixed, default=str), "defaults": json.dumps(self.defaults, default=str),
             "study": name, "storage": where, "dataset": self.dataset.name})

    def log_trial(self, t) -> None:
        """A complete trial as a child run of the parent."""
        p = self.by_label[t.params["point"]]
        runs.trial_run(self.store, self.exp, self.parent, t.number, f"{p.label}",
                       {Tag.PARAM: p.param, Tag.VALUE: str(p.value), Tag.STATUS: "complete"},
                       {"point": p.label, "param": p.param, "value": p.value, "config_hash": t.user_attrs.get("config_hash", ""),
                        **{f"cfg.{k}": v for k, v in p.params.items()}},
                       {"pooled_f1": t.user_attrs["pooled_f1"], "pooled_accuracy": t.user_attrs["pooled_accuracy"],
                        "seconds": t.user_attrs.get("seconds", 0.0)})

    def objective(self, trial) -> float:
        """A LORO run of the trial's point, pruned without fitting if another trial has it (done, or running and older)."""
        import optuna
        from optuna.trial import TrialState

        opts, ev = self.opts, self.ev
        self.number = trial.number
        label = trial.suggest_categorical("point", self.labels)
        p = self.by_label[label]
        for t in self.study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.RUNNING)):
            if t.params.get("point") == label and t.number != trial.number and (t.state == TrialState.COMPLETE or t.number < trial.number):
                trial.set_user_attr("skipped", f"duplicate of trial {t.number}")
                raise optuna.TrialPruned(f"{label} is done by trial {t.number}")
        trial.set_user_attr("param", p.param)
        trial.set_user_attr("value", p.value if isinstance(p.value, (int, float, str, bool)) else str(p.value))
        trial.set_user_attr("config_hash", config_hash(self.spec.family, p.params))
        with Heartbeat(trial):
            t0 = time.perf_counter()
            opts.log(f"[sensitivity] {label}: LORO over {len(ev.folds)} rats (trial {trial.number})")
            try:
                frame = ev.run(self.spec, p.params)
            except Exception as e:
                trial.set_user_attr("error", f"{type(e).__name__}: {e}"[:2000])
                raise
            s = score_frame(frame)["pooled"]
            trial.set_user_attr("pooled_f1", float(s["f1"]))
            trial.set_user_attr("pooled_accuracy", float(s["accuracy"]))
            trial.set_user_attr("seconds", round(time.perf_counter() - t0, 2))
            opts.log(f"[sensitivity] {label}: pooled F1 {s['f1']:.4f}, accuracy {100 * s['accuracy']:.2f}%")
        return float(s["f1"])

    def work(self, budget: int | None) -> int:
        """Run points until the grid is done (or `budget` points); returns how many this process fitted."""
        from optuna.trial import TrialState

        study, ran = self.study, 0
        while budget is None or ran < budget:
            fail_stale_trials(study)
            trials = study.get_trials(deepcopy=False)
            complete = {t.params.get("point") for t in trials if t.state == TrialState.COMPLETE}
            running = {t.params.get("point") for t in trials if t.state == TrialState.RUNNING}
            todo = [lab for lab in self.labels if lab not in complete and lab not in running]
            if not todo:
                break
            attempted = {t.params.get("point") for t in trials if t.state in (TrialState.FAIL, TrialState.PRUNED)}
            if not [lab for lab in todo if lab not in attempted]:  # only failed or abandoned points left: enqueue one again
                again = [lab for lab in todo if lab not in self.retried]
                if not again:
                    break
                self.retried.add(again[0])
                study.enqueue_trial({"point": again[0]}, user_attrs={"retry": True})
            self.number = None
            study.optimize(self.objective, n_trials=1, catch=(Exception,))
            if self.number is None:
                break
            last = next(t for t in study.get_trials(deepcopy=False) if t.number == self.number)
            if last.state == TrialState.COMPLETE:
                ran += 1
                try:
                    self.log_trial(last)
                except Exception as e:  # noqa: BLE001 - MLflow trouble must not lose the Optuna result; logged again at the end
                    self.opts.log(f"warning: MLflow logging of trial {last.number} failed: {e}")
            elif last.state == TrialState.FAIL:
                self.opts.log(f"[sensitivity] {last.params.get('point')}: FAILED: {last.user_attrs.get('error', 'see the log above')}")
        return ran

    def run_with_helpers(self) -> int:
        """The shared work here first (the method's `prepare`: backbone features with every core; an outside method: its
        first point) while jobs - 1 more worker processes start; then they share the points with this one."""
        opts = self.opts
        go = mp.get_context("spawn").Event()
        helpers = _spawn_workers(self.dataset, opts, self.study_name, self.storage_url, go)
        try:
            ran = 0 if prepare_shared(self.spec, self.points[0].params, self.ev, opts) else self.work(1)
        except BaseException:
            for proc in helpers:
                proc.terminate()
            raise
        if (torch := sys.modules.get("torch")) is not None:
            torch.set_num_threads(_threads(opts.jobs))
        go.set()
        ran += self.work(None)
        for proc in helpers:
            proc.join()
            if proc.exitcode:
                opts.log(f"warning: a worker process exited with code {proc.exitcode}; rerun to finish what it left")
        return ran

    def write_outputs(self, ran: int) -> SensitivityResult:
        """Child runs missing from MLflow, then the CSV, figure, report and JSON from the storage; closes the parent run."""
        from optuna.trial import TrialState

        opts, name, where, notes = self.opts, self.study_name, redact(self.storage_url), self.notes
        rows, failed = rows_of(self.study, self.points)
        done_trials = self.study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        have = runs.logged_trials(self.store, self.exp, self.parent)
        for t in done_trials:
            if str(t.number) not in have and t.params.get("point") in self.by_label and "pooled_f1" in t.user_attrs:
                self.log_trial(t)
        complete = bool(rows["pooled_f1"].notna().all())
        out = Path(opts.out_dir) if opts.out_dir else Path(opts.runs_dir) / "studies" / folder_name(name)
        seconds = time.perf_counter() - self.start
        csv = report.atomic_csv(rows, out / "sensitivity.csv")
        title = (f"{opts.method} sensitivity on {self.dataset.name} ({opts.profile} profile): pooled LORO F1, one parameter at a time\n"
                 "scored on the test rats: an analysis, not a tuning result")
        symbols = dict(getattr(self.spec.load(), "PLOT_SYMBOLS", {})) if self.spec.trusted else {}
        png = report.sensitivity_figure(rows, out / "sensitivity.png", title, self.defaults, symbols)
        meta = {"method": opts.method, "dataset": self.dataset.name, "defaults": self.defaults, "profile": opts.profile,
                "fixed": opts.fixed, "study": name, "storage": where, "seed": opts.seed, "seconds": seconds, "failed": failed}
        md = report.write_text(out / "sensitivity.md", report.sensitivity_markdown(rows, meta) +
                               "".join(f"\nNote: {n}\n" for n in notes))
        report.write_text(out / "sensitivity.json", json.dumps({**meta, "notes": notes, "complete": complete,
                                                                "rows": json.loads(rows.to_json(orient="records"))}, indent=1, default=str))
        runs.finish(self.store, self.parent, "complete" if complete else "incomplete", _range_metrics(rows),
                    [csv, png, md, out / "sensitivity.json"] if complete else [])
        return SensitivityResult(rows, csv, png, md, name, where, complete, failed, ran, seconds, notes)


def _range_metrics(rows: pd.DataFrame) -> dict:
    """The parent run's metrics: each parameter's pooled F1 min, max and range, and how many points are complete."""
    metrics = {}
    for p_name, g in rows.groupby("param", sort=False):
        f = pd.to_numeric(g["pooled_f1"], errors="coerce").dropna()
        if len(f):
            metrics.update({f"f1_min_{p_name}": f.min(), f"f1_max_{p_name}": f.max(), f"f1_range_{p_name}": f.max() - f.min()})
    metrics["points_complete"] = int(rows["pooled_f1"].notna().sum())
    return metrics
