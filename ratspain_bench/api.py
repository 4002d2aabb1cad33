"""The Python API: everything the command line does, as functions a notebook can call.

    import ratspain_bench as rb
    r = rb.run(["lbp-r1p8-8x8"], data=None)    # None: the built-in synthetic replica
    r.table                                      # one row per method: pooled and per-rat scores
    r.predictions                                # every test image's prediction, all methods

`data` is anything `--data` accepts (a folder, a manifest CSV, an annotation JSON, a SUBJECT/LEVEL
tree), a `Dataset` from `load_dataset`, or None for the replica. The command line is a thin face of
these functions (argument parsing and printing only).
"""
from __future__ import annotations

import fnmatch
import os
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from .data import Dataset
from .data import load_dataset as _load
from .errors import InputError
from .evaluation.launch import LaunchSettings, parse_devices
from .evaluation.runner import MethodResult, RunOptions, check_methods, run_methods
from .evaluation.sandbox import settings as sandbox_settings
from .methods.registry import MethodSpec, default_registry
from .tasks import TASKS

DEFAULT_SUITE = "quick"


def load_dataset(data=None, include_low_confidence: bool = False) -> Dataset:
    """A validated dataset (see the module doc for `data`); InputError naming file and row on bad input."""
    return data if isinstance(data, Dataset) else _load(data, include_low_confidence)


def list_methods(pattern: str | None = None) -> list[MethodSpec]:
    """Registered methods (named rows, families, plugins, submissions), optionally filtered by a glob (`lbp-*`)."""
    specs = default_registry().specs()
    return [s for s in specs if pattern is None or fnmatch.fnmatch(s.name, pattern)]


def list_protocols() -> list[dict]:
    """The evaluation protocols `run(protocol=...)` takes: name, usage, the question each answers (`protocols`)."""
    from .protocols import describe

    return describe()


def get_method(name: str) -> MethodSpec:
    """A method by name (including parametric names such as `timm:efficientnet_b0`); InputError with a hint."""
    return default_registry().get(name)


def suites() -> dict[str, list[str]]:
    """Suite name -> its methods (`run(suite=...)`)."""
    return default_registry().suites()


@dataclass
class Results:
    """What `run` returns: one `MethodResult` per method, the scores as a table, the predictions."""

    results: list[MethodResult]
    dataset: Dataset
    _preds: pd.DataFrame | None = field(default=None, repr=False)
    sandbox: str = "runsc"  # the sandbox its outside methods ran in

    def not_ranked(self) -> dict[str, str]:
        """Outside methods that ran but that the leaderboard will not rank (its rule 10a), with why and what would."""
        out = {}
        for r in self.results:
            if r.status != "complete" or get_method(r.method).trusted:
                continue
            if self.sandbox in ("bwrap", "none"):
                out[r.method] = ("not ranked: it ran under bubblewrap or unsandboxed, whose workers share the host's kernel; "
                                 "run it under gVisor (--sandbox runsc) to rank it")
            elif self.dataset.labels_public:
                out[r.method] = ("not ranked: this dataset's labels are public (anyone can render it again); run it on "
                                 "`ratspain-bench synth OUT --hidden` data to rank it")
        return out

    @property
    def failed(self) -> list[MethodResult]:
        return [r for r in self.results if r.status != "complete"]

    @property
    def table(self) -> pd.DataFrame:
        """One row per method: status, pooled metrics, mean over rats, F1 and accuracy per rat, time, identity."""
        rows = []
        for r in self.results:
            row = {"method": r.method, "status": r.status}
            if r.score is not None:
                row.update({f"pooled_{k}": r.score["pooled"][k] for k in ("f1", "accuracy", "balanced_accuracy", "mcc")})
                row.update({f"mean_{k}": r.score["mean_over_subjects"][k] for k in ("f1", "accuracy")})
                for s, v in r.score["per_subject"].items():
                    row[f"f1_rat{s}"], row[f"accuracy_rat{s}"] = v["f1"], v["accuracy"]
                units = r.score.get("action_units")
                if units:  # the au task: pooled agreement per AU and of the RGS score
                    row.update({f"{au}_{k}": v for au, d in units["au"].items() for k, v in d.items() if k != "n"})
                    row.update({f"rgs_{k}": v for k, v in units["rgs"].items() if k != "n"})
            row.update({"seconds": r.seconds, "config_hash": r.config_hash, "code_hash": r.code_hash, "run_id": r.run_id,
                        "predictions": None if r.predictions is None else str(r.predictions), "error": r.error})
            rows.append(row)
        return pd.DataFrame(rows)

    @property
    def predictions(self) -> pd.DataFrame:
        """Every complete method's predictions (contract columns image, subject, y_true, y_pred, score, fold, method, seed)."""
        if self._preds is None:
            frames = [pd.read_csv(r.predictions, dtype={"image": str, "subject": str, "fold": str})
                      for r in self.results if r.predictions is not None]
            self._preds = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
        return self._preds

    def markdown(self) -> str:
        """The paper's Table 3 layout: per-rat "F1/Acc%" cells and the pooled LORO cell."""
        from tabulate import tabulate

        from .metrics import cell

        subjects = self.dataset.subjects
        rows = []
        for r in self.results:
            if r.score is None:
                rows.append([r.method] + ["-"] * len(subjects) + ["failed", "", f"{r.seconds:.0f}"])
                continue
            per, p, m = r.score["per_subject"], r.score["pooled"], r.score["mean_over_subjects"]
            rows.append([r.method] + [cell(per[s]["f1"], per[s]["accuracy"]) if s in per else "-" for s in subjects]
                        + [cell(p["f1"], p["accuracy"]), cell(m["f1"], m["accuracy"]), f"{r.seconds:.0f}"])
        headers = ["Method"] + [f"Rat#{s}" for s in subjects] + ["LORO (pooled)", "mean over rats", "time (s)"]
        return tabulate(rows, headers=headers, tablefmt="github")

    def au_markdown(self) -> str:
        """The au task: pooled quadratic-weighted kappa per AU and agreement of the RGS score, one row per method."""
        from tabulate import tabulate

        from .tasks import AUS

        def f(x):
            return "–" if x is None else f"{x:.3f}"

        rows = []
        for r in self.results:
            units = (r.score or {}).get("action_units")
            if units:
                rgs = units["rgs"]
                rows.append([r.method, *(f(units["au"][a]["qwk"]) for a in AUS), f(rgs["icc_a1"]), f(rgs["pearson_r"]), f(rgs["mae"])])
        return tabulate(rows, headers=["Method", *(f"κw {a}" for a in AUS), "RGS ICC(A,1)", "RGS r", "RGS MAE"], tablefmt="github")

    def __repr__(self) -> str:
        return self.markdown()


def jobs_count(jobs) -> int:
    """`auto` (every core) or a positive number of worker processes."""
    if jobs in (None, "auto"):
        return os.cpu_count() or 1
    try:
        n = int(jobs)
    except (TypeError, ValueError):
        raise InputError(f"--jobs {jobs!r}: expected auto or a positive number") from None
    if n < 1:
        raise InputError(f"--jobs {jobs}: expected auto or a positive number")
    return n


def launch_settings(launcher: str = "local", devices=None, **options) -> LaunchSettings:
    from dataclasses import fields

    known = {f.name for f in fields(LaunchSettings)} - {"launcher", "devices"}
    unknown = sorted(set(options) - known)
    if unknown:
        raise InputError(f"unknown launch option(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
    devs = parse_devices(devices) if isinstance(devices, str) or devices is None else tuple(devices)
    return LaunchSettings(launcher=launcher, devices=devs, **{k: v for k, v in options.items() if v is not None})


def run(methods=None, data=None, *, suite: str | None = None, profile: str = "quick", seed: int = 0, device: str = "auto",
        jobs="auto", runs_dir="ratspain-runs", tracking_uri: str | None = None, set: dict | None = None,
        weights: str | None = None, finetune: str | None = None, sandbox: bool | str = True, time_limit: float = 1800.0,
        memory_mb: int = 8192, out_mb: int = 256, quiet: bool = True, include_low_confidence: bool = False, launcher: str = "local",
        devices=None, task: str = "binary", protocol: str = "loro", **launch) -> Results:
    """Run `methods` (names; default: `suite`, else the quick suite) on `data` under `protocol` (default `loro`, the
    paper's leave-one-rat-out; `pose-shift`, `leave-one-group-out:COLUMN`: see `ratspain_bench.protocols`).

    `jobs`: processes for the folds of trusted methods whose folds are light once their shared work is done
    (frozen deep heads): `auto` uses every core. Every run is tracked in MLflow (`runs_dir`/`tracking_uri`) and resumable; a configuration already
    complete for the same dataset, config, code and seed is read back, not recomputed. `set`: parameter
    overrides every method must declare; `weights`/`finetune`: applied to the methods that declare them.
    Outside methods (submissions, untrusted plugins) run sandboxed, one fold per process: `sandbox` True (the strongest
    sandbox here: gVisor, else bubblewrap), "runsc", "bwrap", or False/"none" (unisolated, rows marked `unsandboxed`); `time_limit`/`memory_mb`/`out_mb` per fold: `out_mb` caps what a worker
    may write, its log included).
    `launcher`: `local` (this machine) or `submitit` (SLURM, or local processes where there is none);
    `devices` ("cuda:0,cuda:1" or a list): one local worker per GPU; other `launch` keywords are the fields of
    `evaluation.launch.LaunchSettings` (cluster, folder, partition, time_min, gpus_per_job, cpus_per_job,
    array_parallelism).
    `task`: `binary` (the paper's) or `au` (the four action-unit grades; see `ratspain_bench.tasks`).
    """
    if task not in TASKS:
        raise InputError(f"task {task!r}: expected one of {', '.join(TASKS)}")
    if isinstance(methods, str):
        methods = [m.strip() for m in methods.split(",") if m.strip()]
    if methods and suite:
        raise InputError("give methods or a suite, not both")
    from .protocols import get_protocol

    protocol = get_protocol(protocol).id  # an unknown name fails here, before any work
    names = list(methods) if methods else default_registry().suite(suite or DEFAULT_SUITE)
    if not names:
        raise InputError("no methods to run")
    declared = {k: v for k, v in (("weights", weights), ("finetune", finetune)) if v is not None}
    opts = RunOptions(profile=profile, seed=seed, device=device, runs_dir=Path(runs_dir), tracking_uri=tracking_uri, jobs=jobs_count(jobs),
                      quiet=quiet, overrides=dict(set or {}), where_declared=declared,
                      sandbox=sandbox_settings(sandbox, time_limit=time_limit, memory_mb=memory_mb, out_mb=out_mb),
                      launch=launch_settings(launcher, devices, **launch), task=task, protocol=protocol)
    broken = check_methods(names, opts)  # configuration errors before the dataset is read (or the replica rendered)
    dataset = load_dataset(data, include_low_confidence)
    kind = opts.sandbox.resolved(device) if any(not get_method(n).trusted for n in names) else "none"
    return Results(run_methods(names, dataset, opts, broken), dataset, sandbox=kind)


def score(predictions, method: str | None = None, seed=None, format: str = "json"):
    """Score a predictions file (path) or frame: the contract's score object, or a list with `method`/`seed` for
    several runs; `format="md"`: the paper-style Markdown rows instead."""
    from .evaluation.predictions import PredictionsFile, read_predictions, score_runs, select, to_json, to_markdown

    if isinstance(predictions, pd.DataFrame):
        t = predictions.copy()
        for c in ("method", "seed", "fold"):
            t[c] = t[c].astype(str) if c in t.columns else ""
        preds = PredictionsFile("<DataFrame>", t)
    else:
        preds = read_predictions(predictions)
    if method is not None or seed is not None:
        preds = select(preds, method, seed)
    scored = score_runs(preds)
    return to_markdown(scored, default_name=Path(str(predictions)).stem) if format == "md" else to_json(scored)


def compare(a, b) -> dict:
    """McNemar's test of two predictions files (one run each) on the images they share."""
    from .evaluation.predictions import read_predictions
    from .board.compare import compare as _compare

    return _compare(read_predictions(a), read_predictions(b))


def check_data(data=None, include_low_confidence: bool = False):
    """(dataset, every problem found): `data check` (columns, rows, decoding, near-duplicates across subjects)."""
    from .data.check import inspect_dataset

    return inspect_dataset(data, include_low_confidence=include_low_confidence)


def imbalance(data=None, include_low_confidence: bool = False) -> dict:
    """Per-subject label counts (the paper's Table 2) and per-fold train/test counts (Table 4)."""
    from .data.imbalance import imbalance_report

    return imbalance_report(load_dataset(data, include_low_confidence))


def synth(out_dir, seed: int = 0, size: int = 256, counts: dict | None = None, jobs: int | None = None, progress=None,
          low_confidence: int | None = None, hidden: bool = False, video: bool = False, sites: int | None = None) -> Path:
    """Render the synthetic replica into `out_dir` (manifest.csv, images/, au_regions.json, provenance.json); the
    manifest's path. `low_confidence`: images the two-stage rating leaves low-confidence (default 157 with the paper's
    counts, else 0). `hidden`: from a seed drawn from the operating system instead of `seed`, kept only in a file
    outside `out_dir` readable by its owner (`data.replica.hidden_replica`), so outside methods are ranked on it.
    `video`: short clips instead (`video.synth.render_videos`: 2 groups x 3 rats x pre/post, 60 s at 10 fps, pain
    action units rising in the treated group's post sessions only); returns their sidecar `videos.csv`.
    `sites`: the rats recorded in this many labs (camera angle, lighting, background, white balance, JPEG quality per
    lab; a `site` column), for `--protocol leave-one-group-out:site`; None: the replica as it has always been."""
    from .data.replica import hidden_replica
    from .data.synth import generate_replica

    if video:
        from .video.synth import render_videos

        return render_videos(out_dir, seed=seed, sites=sites)

    if hidden:
        return hidden_replica(out_dir, size=size, counts=counts, jobs=jobs, progress=progress, low_confidence=low_confidence,
                              sites=sites)[0]
    return generate_replica(out_dir, seed=seed, size=size, counts=counts, jobs=jobs, progress=progress, low_confidence=low_confidence,
                            sites=sites)


def frames(videos, out, per_minute: int = 5, min_sharpness: float | None = None, crop=None, subject: str | None = None,
           session: str | None = None, sidecar=None, progress: bool = False, faces: str | None = None, keypoints: str | None = None,
           min_likelihood: float = 0.6, track: int | None = None, min_face: int | None = None,
           max_yaw: float | None = None, margin: float | None = None) -> Path:
    """Face frames from `videos` (a file, a list, or None for every video of `sidecar`) into `out`: at most
    `per_minute` a minute (the paper's five), sharp (variance of the Laplacian >= `min_sharpness`, default 60), no
    near-duplicates; returns `out/manifest.csv` (path,subject,session,time_s,sharpness,video + the sidecar's columns),
    which a trained model's `predict(..., by=["subject", "session"])` scores. See `video.frames.extract`.
    `faces`: `dlc:PATH`, `sleap:PATH` (keypoints per frame: each frame cropped to its face, the box and head pose in
    the manifest; `keypoints` maps the file's body parts, `min_likelihood` drops uncertain ones, `track` picks a SLEAP
    track), `detector:MODEL` (a model of `detector_train`) or `fixed:x,y,w,h` (`crop`); see `video.faces`.
    Every frame examined gets `scorable` and a `reason` in `out/quality.csv` (`min_face` px, default 32; `max_yaw`
    degrees, default 60); only scorable frames are kept, each a found face's box grown by `margin` (default 0.17) of
    its side on each side. See `video.frames.judge`."""
    from .video.faces import parse_source
    from .video.frames import MARGIN, MAX_YAW, MIN_FACE, MIN_SHARPNESS, extract

    return extract(videos, out, per_minute, MIN_SHARPNESS if min_sharpness is None else min_sharpness, crop, subject, session,
                   sidecar, progress, faces=parse_source(faces, keypoints, min_likelihood, track),
                   min_face=MIN_FACE if min_face is None else min_face, max_yaw=MAX_YAW if max_yaw is None else max_yaw,
                   margin=MARGIN if margin is None else margin)


def groups(summary, group: str = "group", value: str | None = None, **options):
    """Compare groups of animals on a `predict(..., by=...)` summary (a DataFrame or `summary.csv`); the animal is the
    unit (`video.groups.compare`: exact permutation test, Hedges' g and bootstrap intervals over animals, pre/post
    paired, a mixed model with the animal as random effect). `value`: default `mean_rgs` for an AU model, else
    `mean_pain_prob`. Returns a `Comparison` (`.text()`, `.as_dict()`, `.plot(path)`)."""
    from .video.groups import compare

    table = summary if isinstance(summary, pd.DataFrame) else _read_summary(summary)
    if value is None:
        value = "mean_rgs" if "mean_rgs" in table.columns else "mean_pain_prob"
    return compare(table, group=group, value=value, **options)


def _read_summary(path) -> pd.DataFrame:
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such summary (write one with `ratspain-bench predict MODEL MANIFEST --by subject,session --out DIR/scores.csv`)")
    return pd.read_csv(path, dtype={"subject": str, "session": str, "group": str})


def contact_sheet(data=None, out="replica-sheet.png", per_level: int = 2, seed: int = 0, include_low_confidence: bool = False) -> Path:
    """A PNG of a few faces per subject (rows) and level (columns)."""
    from .data.sheet import contact_sheet as _sheet

    dataset = load_dataset(data, include_low_confidence)
    dataset.require_images()
    return _sheet(dataset, Path(out), per_level=per_level, seed=seed)


def leaderboard(out=None, runs_dir="ratspain-runs", tracking_uri: str | None = None, resamples: int = 2000,
                bootstrap_seed: int = 0, mlflow_ui: str | None = None):
    """The leaderboards of every dataset in the MLflow store; written (README.md, index.html, results.csv,
    results.json) only to `out` when given."""
    from .board import leaderboard_from_store

    if resamples < 1:
        raise InputError(f"resamples {resamples}: must be at least 1")
    return leaderboard_from_store(out, runs_dir, tracking_uri, resamples, bootstrap_seed, mlflow_ui)[0]


def sensitivity(method: str = "painseeker", data=None, *, grid: dict | None = None, jobs="auto", **options):
    """One-at-a-time sensitivity (default grid: the method's SENSITIVITY_GRID, PainSeeker's is the paper's Figure 5).

    `grid`: {name: [values]}; other options are the fields of `study.SensitivityOptions` (profile, finetune,
    fixed, seed, device, runs_dir, tracking_uri, storage, study_name, out_dir, n_trials, quiet, sandbox)."""
    from .study import SensitivityOptions, run_sensitivity

    dataset = load_dataset(data)
    dataset.require_images()
    grid = None if grid is None else {k: [str(v) for v in vals] for k, vals in grid.items()}
    return run_sensitivity(dataset, SensitivityOptions(method=method, grid=grid, jobs=jobs_count(jobs), **options))


def tune(method: str = "painseeker", data=None, **options):
    """Nested-LORO hyper-parameter search; options are the fields of `study.TuneOptions` (n_trials, space, ...)."""
    from .study import TuneOptions, run_tune

    dataset = load_dataset(data)
    dataset.require_images()
    return run_tune(dataset, TuneOptions(method=method, **options))


def validate(path, **options):
    """Check a submission folder or predictions file; a `submit.Report` (`.ok`, `.text()`, `.as_dict()`)."""
    from .submit import validate as _validate

    return _validate(path, **options)


def train(method: str, data=None, *, out, profile: str = "quick", seed: int = 0, device: str = "auto", set: dict | None = None,
          weights: str | None = None, finetune: str | None = None, from_run: str | None = None, register: str | None = None,
          evaluate: bool = False, runs_dir="ratspain-runs", tracking_uri: str | None = None, include_low_confidence: bool = False,
          quiet: bool = True, task: str = "binary", sandbox: bool | str = True, time_limit: float = 1800.0, memory_mb: int = 8192,
          state_mb: int = 1024, out_mb: int = 256):
    """Fit `method` on every animal of `data` with the config `run` would use (or that of the LORO parent run
    `from_run`), save it as an MLflow pyfunc model with MODEL_CARD.md in `out`, log it to MLflow (and `register` it);
    returns the saved model, loaded (`.predict(images)`). `evaluate`: run LORO first, so the card has its evidence.
    `task="au"`: the model also grades the four action units (its `predict` gives `au_<name>` columns).
    An outside method is fitted and saved in a sandboxed worker, and its model scores in such workers (`sandbox=False`
    runs them unisolated; `time_limit`, `memory_mb`, `out_mb` per worker; `state_mb`: the most its saved state may hold)."""
    from .model.saved import load_model as _load_model
    from .model.train import recipe, recipe_from_run, train_model

    if state_mb < 1:
        raise InputError(f"state limit {state_mb} MiB: must be at least 1")
    box = sandbox_settings(sandbox, time_limit=time_limit, memory_mb=memory_mb, state_mb=state_mb, out_mb=out_mb)
    if from_run:
        r = recipe_from_run(from_run, method, runs_dir, tracking_uri, box)
    else:
        declared = {k: v for k, v in (("weights", weights), ("finetune", finetune)) if v is not None}
        r = recipe(method, profile, seed, dict(set or {}), declared, task, box)
    dataset = load_dataset(data, include_low_confidence)
    train_model(r, dataset, out, device=device, register=register, runs_dir=runs_dir, tracking_uri=tracking_uri,
                run_loro=evaluate, quiet=quiet, sandbox=box)
    return _load_model(out, device=device, sandbox=box)


def load_model(uri, runs_dir="ratspain-runs", tracking_uri: str | None = None, device: str = "auto", sandbox: bool | str = True,
               time_limit: float = 1800.0, memory_mb: int = 8192, out_mb: int = 256):
    """A trained model (a folder, `runs:/<run>/model` or `models:/<name>/<version>`); `.predict(images)` scores
    files, folders, manifests or a DataFrame with `path`. A model of an outside method scores each batch in a
    sandboxed worker (`sandbox=False`: unisolated; `time_limit`, `memory_mb`, `out_mb` per worker)."""
    from .model.saved import load_model as _load_model

    return _load_model(uri, runs_dir, tracking_uri, device, sandbox_settings(sandbox, time_limit=time_limit, memory_mb=memory_mb,
                                                                                   out_mb=out_mb))


def detector_train(boxes, images=None, *, out, holdout=(), folds: bool = True, animal: str | None = None, every: int = 1,
                   runs_dir="ratspain-runs", tracking_uri: str | None = None, quiet: bool = True, **settings) -> dict:
    """Train a face detector on the COCO boxes `boxes` (image files under `images`, default the COCO file's folder;
    `synth --video`'s `faces.json` works as is) and save it in the model folder `out`, logged to MLflow (experiment
    `ratspain-detector`). Leave-one-animal-out first, unless `folds=False`; `holdout` (animal names): that one fold
    only, and the model saved is the one trained without them. `animal`: a regex whose first group names an image's
    animal (default: its `subject`/`animal` key, else its first folder); `every`: only every N-th image. `settings`: the fields of
    `video.detector.Settings` (image_size, epochs, batch_size, lr, seed, min_score). Returns the model's
    `detector.json` (settings, per-animal metrics, MLflow run). Load it with `video.detector.load(out)`."""
    from .video.detector import train as _train

    return _train(boxes, images, out, holdout=holdout, folds=folds, animal=animal, every=every, runs_dir=runs_dir,
                  tracking_uri=tracking_uri, quiet=quiet, **settings)


def detector_predict(model, source, out, *, images_dir=None, animal: str | None = None, min_score: float | None = None,
                     every: int = 1) -> dict:
    """The best face box of each image of `source` (a folder of images, or a COCO file whose images are under
    `images_dir`) found by the detector folder `model`, written to `out` as COCO JSON (bbox and score per face);
    returns {"out", "images", "found", "metrics"}, `metrics` (AP@0.5, mean IoU, share with IoU >= 0.7) where the
    COCO file has true boxes. `every`: only every N-th image."""
    from .video.detector import predict as _predict

    return _predict(model, source, out, images_dir=images_dir, animal=animal, min_score=min_score, every=every)
