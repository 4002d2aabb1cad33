"""Score one uploaded submission through `run`'s fold path: `python -m ratspain_bench.server.scoring REQUEST.json`.

A server worker runs this in a child process per submission (it dies with the worker: `PR_SET_PDEATHSIG`), so a
worker killed mid-run leaves job folders whose finished folds (`DONE`) the next attempt keeps. The request names the
unpacked folder, the method name to register it under, the dataset, the runs folder and the sandbox's limits; the
result file says:
- `scored`, with the board's record of the run (timings removed: the code chooses them) and its predictions;
- `failed`, with a reason key of `sandbox.REASONS` (and the predictions rule broken), chosen by the harness;
- `error`, or exit code 3 (no result): a fault of the harness (the data, the store, the machine), which the worker
  refunds.
"""
from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path

from ..errors import InputError
from ..evaluation.sandbox import REASONS

RULES = {"predict_type": "predict() must return Predictions", "shape": "one prediction per test image",
         "labels": "labels must be 0 or 1", "scores": "scores must be finite probabilities", "au": "action-unit grades"}
HARNESS_FAULT = 3


def reason_text(reason: str, rule: str = "") -> str:
    """The fixed text a team reads for a failure."""
    text = REASONS.get(reason, REASONS["crashed"])
    return f"{text}: {RULES[rule]}" if reason == "malformed" and rule in RULES else text


def classify(result, name: str) -> tuple[str, str] | None:
    """(reason key, rule) of a failed MethodResult, from the harness's account (never the code's words); None when the
    failure is not the submission's: no fold of it failed and the harness named no problem of this method."""
    if result.reason:
        return result.reason, result.rule if result.rule in RULES else ""
    if result.error.startswith(f"{name}: "):  # loading or configuring it failed (`configure`, `outside.describe`)
        return "crashed_import", ""
    return None


def public_record(rec) -> dict:
    """A RunRecord as JSON for the board: no per-fold or whole-run time (the code steers them) and no error text."""
    d = dataclasses.asdict(dataclasses.replace(rec, predictions=None))
    d["metrics"] = {k: v for k, v in d["metrics"].items() if "second" not in k and "time" not in k}
    d["folds"] = [{**f, "metrics": {}} for f in d["folds"]]
    d["error"] = ""
    return d


def record_from(d: dict, predictions_csv: str | None):
    """The RunRecord `public_record` wrote."""
    import io

    import pandas as pd

    from ..evaluation.record import FoldRecord, RunRecord

    d = dict(d)
    d["folds"] = tuple(FoldRecord(**f) for f in d["folds"])
    preds = None
    if predictions_csv:
        preds = pd.read_csv(io.StringIO(predictions_csv), dtype={"image": str, "subject": str, "fold": str, "method": str, "seed": str})
    return RunRecord(**{**d, "predictions": preds})


def score(req: dict) -> dict:
    from .. import api
    from ..board.collect import resolve_tracking_uri
    from ..evaluation.record import fetch_run
    from ..methods.registry import default_registry, submission_spec

    spec = dataclasses.replace(submission_spec(Path(req["folder"])), name=req["method"], source=f"team {req['team']}")
    registry = default_registry()
    if req["method"] not in registry.names():
        registry.add(spec)
    data = api.load_dataset(req["data"])
    if req.get("public"):  # the public phase: no private image or label reaches a worker
        from .partition import subset

        data = subset(data, json.loads(Path(req["public"]).read_text())["ids"], "public")
    try:
        res = api.run([req["method"]], data=data, runs_dir=req["runs_dir"], sandbox=req.get("sandbox", "auto"),
                      device=req.get("device", "cpu"), time_limit=req["time_limit"], memory_mb=req["memory_mb"], jobs=1, quiet=True)
    except InputError as e:
        if str(e).startswith(f"{req['method']}: "):  # loading or configuring it failed (`configure`, `outside.describe`)
            return {"status": "failed", "reason": "crashed_import", "rule": "", "log": str(e)}
        raise
    r = res.results[0]
    if r.status == "complete":
        rec = fetch_run(resolve_tracking_uri(req["runs_dir"]), r.run_id)
        csv = rec.predictions.to_csv(index=False) if rec.predictions is not None else None
        return {"status": "scored", "f1": r.score["pooled"]["f1"], "accuracy": r.score["pooled"]["accuracy"],
                "record": public_record(rec), "predictions": csv, "log": r.error}
    why = classify(r, req["method"])
    if why is None:
        return {"status": "error", "log": r.error}
    return {"status": "failed", "reason": why[0], "rule": why[1], "log": r.error}


def main(argv=None) -> int:
    request = Path((argv or sys.argv[1:])[0])
    req = json.loads(request.read_text())
    try:
        out = score(req)
    except Exception as e:  # the dataset, the store, the machine: not the submission's doing
        print(f"harness fault: {type(e).__name__}: {e}", file=sys.stderr)
        return HARNESS_FAULT
    tmp = Path(req["result"] + ".tmp")
    tmp.write_text(json.dumps(out))
    tmp.replace(req["result"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
