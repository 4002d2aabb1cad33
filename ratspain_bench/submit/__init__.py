"""Outside submissions: validation of method folders and of prediction-only entries.

`validate(path)` returns a `Report` (one `Check` per line: PASS/FAIL/WARN/SKIP and what to fix):
- a folder with `submission.toml` of kind `method`: metadata schema, then the code through the fold
  path of `run`, sandboxed, on a tiny replica (import; interface; determinism; a LORO smoke run), see `code`;
- a folder of kind `predictions` (with `predictions.csv`), or a bare `.csv` file: format checks against
  a dataset, never a score; `record=True` (a maintainer's step) adds a folder's predictions to MLflow
  as a predictions-only entry, see `predictions`.
"""
from __future__ import annotations

from pathlib import Path

from ..errors import InputError
from .checks import FAIL, PASS, SKIP, WARN, Check, Report

__all__ = ["Check", "Report", "validate"]


def validate(path, *, data=None, name: str | None = None, record: bool = False, replace: bool = False, runs_dir="ratspain-runs",
             tracking_uri=None, time_limit: float = 600, import_timeout: float = 120, memory_mb: int = 4096, seed: int = 0,
             sandbox: bool | str = True) -> Report:
    from . import code, metadata

    path = Path(path)
    if not path.exists():
        r = Report(str(path))
        r.add("path", FAIL, f"{path}: no such file or folder", "pass a submission folder (with submission.toml) or a predictions .csv")
        return r
    meta: dict = {}
    if path.is_dir():
        meta_or_none, first = metadata.read(path)
        kind = (meta_or_none or {}).get("kind", "method") if isinstance(meta_or_none, dict) else "method"
        report = Report(str(path), kind if kind in ("method", "predictions") else "method")
        report.checks.append(first)
        if meta_or_none is None:
            report.add("code", SKIP, "not checked: submission.toml is missing or invalid")
            return report
        meta = meta_or_none
        report.extend(metadata.check_metadata(meta, path, code.builtin_names()))
        if not report.failed("metadata.name") and isinstance(meta.get("name"), str):
            clash = code.registered_elsewhere(meta["name"], path)
            if clash:
                report.checks.append(clash)
        if report.kind == "method":
            if report.failed("metadata.entry_point") or report.failed("metadata.file"):
                report.add("code", SKIP, "not checked: fix entry_point first")
                return report
            from ..evaluation.identity import folder_files
            from ..evaluation.sandbox import settings

            try:
                settings(sandbox).resolved("cpu")
            except InputError as e:
                report.add("sandbox", FAIL, f"outside code runs only sandboxed, and {e}",
                           "install gVisor (runsc) or bubblewrap, or pass --sandbox none (the code then runs unisolated)")
                return report
            try:
                files = folder_files(path)
                report.add("files", PASS, f"{len(files)} file(s), every one plain and inside the folder; compiled Python "
                                          "(__pycache__, *.pyc) is never run: only sources")
            except InputError as e:
                report.add("files", FAIL, str(e), "keep only plain files in the folder: copy what a link points to in")
                return report
            code.check_code(report, path, meta, time_limit=time_limit, import_timeout=import_timeout, memory_mb=memory_mb,
                            seed=seed, sandbox=sandbox)
            return report
        csv_path = path / str(meta.get("predictions", "predictions.csv"))
    else:
        report = Report(str(path), "predictions")
        report.add("metadata", SKIP, "a bare predictions file: no submission.toml (authors, licence, dataset fingerprint) checked",
                   "for the leaderboard, submit a folder with predictions.csv and submission.toml (kind = \"predictions\")")
        csv_path = path
    return _predictions(report, csv_path, meta, path.is_dir(), data=data, name=name, record=record, replace=replace,
                        runs_dir=runs_dir, tracking_uri=tracking_uri)


def _predictions(report: Report, csv_path: Path, meta: dict, folder: bool, *, data, name, record, replace, runs_dir, tracking_uri) -> Report:
    from ..data import load_dataset
    from ..errors import InputError
    from . import code, predictions

    try:
        dataset = load_dataset(data)
    except InputError as e:
        report.add("dataset", FAIL, str(e), "pass --data with the dataset the predictions are for")
        return report
    want = meta.get("dataset")
    if want and want != dataset.name:
        report.add("dataset", WARN, f"submission.toml names dataset {want!r}, checking against {dataset.name!r}",
                   f"pass --data for {want!r}")
    else:
        report.add("dataset", PASS, f"{dataset.name}: {len(dataset)} images of {dataset.table['subject'].nunique()} rats ({dataset.source})")
    if not csv_path.is_file():
        report.add("predictions.format", FAIL, f"{csv_path}: no such file", "put predictions.csv next to submission.toml")
        return report
    frame = predictions.check(report, csv_path, dataset)
    if frame is None:
        return report
    predictions.y_true_warning(report, csv_path, frame)
    if record and not folder:
        report.add("record", FAIL, "a bare CSV cannot be recorded", "put it in a folder with submission.toml (kind, name, authors, "
                                                                    "contact, paper, licence, dataset_fingerprint)")
        return report
    if meta.get("dataset_fingerprint") or record:
        predictions.check_fingerprint(report, meta, dataset)
    label = name or meta.get("name") or (frame["_method"].iloc[0] or csv_path.stem)
    report.extra["name"] = label
    if not report.ok:
        return report
    if not record:
        report.add("record", SKIP, "format checked; not scored here (a maintainer records it with --record, and the leaderboard "
                                   "shows it under \"predictions only, not reproduced\")")
    else:
        taken = code.builtin_names() | {s.name for s in _registered()}
        predictions.record(report, frame, dataset, str(label), meta, runs_dir, tracking_uri, str(csv_path), replace, taken)
    return report


def _registered():
    from ..methods.registry import default_registry

    return default_registry().specs()
