"""Leaderboard: tables from a fixed set of MLflow runs (golden files), honesty rules, statistics, the page.

Regenerate the golden files after an intended change with `RATSPAIN_UPDATE_GOLDEN=1 pytest tests/test_leaderboard.py`.
"""
from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ratspain_bench import metrics
from ratspain_bench.board import build_leaderboards, fetch_runs, registered, write_leaderboards
from ratspain_bench.board import stats
from ratspain_bench.board.export import results_csv
from ratspain_bench.board.render_md import render_markdown

GOLDEN = Path(__file__).parent / "golden"
PAPER_JSON = Path("/work/shared/paper/ratspain_paper.json")
CHROMIUM = shutil.which("chromium") or ("/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None)

# the paper's Table 2: per rat (no pain, pain = moderate + severe)
REPLICA_COUNTS = {"1": (56, 165), "2": (102, 108), "3": (148, 50), "4": (138, 92), "5": (63, 119), "6": (34, 63)}
MICE_COUNTS = {"a": (12, 8), "b": (9, 11), "c": (10, 10)}
T0 = 1_700_000_000_000  # fixed start times (ms) so "latest run" is deterministic
VARIANT = "C0.001-lbp-r1p8-4x4"  # the config hash of a `--set` variant of lbp-r1p8-4x4 in the store
RETIRED = "old-method"  # a method the fixture's registry no longer knows


def fixture_registry(method: str, profile: str) -> str:
    """The store's registered configurations: `cfg-<method>` for every method but RETIRED."""
    from ratspain_bench.errors import InputError

    if method == RETIRED:
        raise InputError(f"unknown method {method!r}")
    return f"cfg-{method}"


def _labels(counts):
    rows = []
    for s, (neg, pos) in counts.items():
        rows += [(f"{s}_{i:04d}.png", s, 0) for i in range(neg)] + [(f"{s}_{neg + i:04d}.png", s, 1) for i in range(pos)]
    return pd.DataFrame(rows, columns=["image", "subject", "y_true"])


def _predictions(labels: pd.DataFrame, accuracy: float, seed: int, bias: float = 0.0) -> pd.DataFrame:
    """Fixed predictions: each image right with probability `accuracy` (per-rat jitter), frozen RNG."""
    rng = np.random.RandomState(seed)
    jitter = {s: rng.uniform(-0.08, 0.08) for s in labels["subject"].unique()}
    p_right = np.clip(labels["subject"].map(jitter).to_numpy() + accuracy, 0.05, 0.98)
    right = rng.uniform(size=len(labels)) < p_right
    y_pred = np.where(right, labels["y_true"], 1 - labels["y_true"])
    flip_to_pain = rng.uniform(size=len(labels)) < bias
    y_pred = np.where(flip_to_pain, 1, y_pred)
    return labels.assign(y_pred=y_pred.astype(int), score=np.round(np.where(y_pred == 1, 0.8, 0.2), 2),
                         fold=labels["subject"])


def _log_method(client, exp_id, tmp: Path, dataset, fingerprint, method, seed, labels, accuracy, *, start, status="complete",
                folds_done=None, bias=0.0, error="", config=None):
    from mlflow.entities import Metric, Param, RunTag

    preds = _predictions(labels, accuracy, seed=hash_seed(method + (config or ""), seed), bias=bias).assign(method=method, seed=seed)
    subjects = list(dict.fromkeys(labels["subject"]))
    done = subjects if folds_done is None else subjects[:folds_done]
    tags = {"ratspain.role": "parent", "ratspain.method": method, "ratspain.dataset": dataset,
            "ratspain.dataset_fingerprint": fingerprint, "ratspain.seed": str(seed), "ratspain.profile": "quick",
            "ratspain.config_hash": config or f"cfg-{method}", "ratspain.source": "built-in", "ratspain.status": status,
            "ratspain.folds_expected": str(len(subjects)), "ratspain.hardware": "cpu x2"}
    if error:
        tags["ratspain.error"] = error
    parent = client.create_run(exp_id, start_time=start, tags=tags, run_name=f"{method} seed {seed}")
    pid = parent.info.run_id
    params = {"method": method, "family": method.split("-")[0].split(":")[0], "seed": str(seed), "profile": "quick",
              "protocol": "loro", "dataset": dataset, "dataset_fingerprint": fingerprint, "cfg.lr": "0.0001"}
    for i, s in enumerate(done):
        part = preds[preds["subject"] == s]
        cm = metrics.confusion(part["y_true"], part["y_pred"])
        child = client.create_run(exp_id, start_time=start + i + 1, tags={
            "mlflow.parentRunId": pid, "ratspain.role": "fold", "ratspain.subject": s, "ratspain.status": "complete"})
        m = {**metrics.summary(cm), "train_seconds": 10.0, "n_test": cm.n}
        client.log_batch(child.info.run_id, metrics=[Metric(k, float(v), start, 0) for k, v in m.items()])
    m = {}
    if status == "complete":
        sc = metrics.score(preds["y_true"], preds["y_pred"], preds["subject"])
        m = {f"pooled_{k}": sc["pooled"][k] for k in ("f1", "accuracy", "balanced_accuracy", "mcc")}
        m.update(mean_f1=sc["mean_over_subjects"]["f1"], mean_accuracy=sc["mean_over_subjects"]["accuracy"],
                 train_seconds=10.0 * len(done), folds_complete=len(done))
        path = tmp / f"{pid}.csv"
        preds.to_csv(path, index=False)
        d = tmp / pid
        d.mkdir()
        shutil.copy(path, d / "predictions.csv")
        client.log_artifact(pid, str(d / "predictions.csv"))
    client.log_batch(pid, metrics=[Metric(k, float(v), start, 0) for k, v in m.items()],
                     params=[Param(k, v) for k, v in params.items()], tags=[RunTag("x.note", "fixture")])
    client.set_terminated(pid, "FINISHED" if status == "complete" else "FAILED", end_time=start + 1000)
    return pid


def hash_seed(method: str, seed: int) -> int:
    return (sum(ord(c) * (i + 1) for i, c in enumerate(method)) * 7919 + seed * 104729) % (2 ** 31)


def make_store(root: Path, template: Path | None = None) -> str:
    """Two datasets; complete, multi-seed, failed, missing-fold, superseded and exploratory runs.

    `template`: an empty, already migrated MLflow database to start from (creating one takes seconds).
    """
    from mlflow.tracking import MlflowClient

    root.mkdir(parents=True, exist_ok=True)
    uri = f"sqlite:///{root / 'mlflow.db'}"
    if template is not None and template.is_file():
        shutil.copy(template, root / "mlflow.db")
    client = MlflowClient(uri)
    tmp = root / "staging"
    tmp.mkdir()
    replica = _labels(REPLICA_COUNTS)
    exp = client.create_experiment("ratspain/ratspain-replica", artifact_location=(root / "artifacts").as_uri())
    fp = "fp-replica-0001"
    t = T0
    for seed in (0, 1, 2):
        _log_method(client, exp, tmp, "ratspain-replica", fp, "painseeker", seed, replica, 0.76, start=t)
        t += 10_000
    _log_method(client, exp, tmp, "ratspain-replica", fp, "resnet18", 0, replica, 0.5, start=t, status="failed",
                folds_done=2, error="RuntimeError: an older attempt that crashed")
    t += 10_000
    _log_method(client, exp, tmp, "ratspain-replica", fp, "resnet18", 0, replica, 0.71, start=t)
    t += 10_000
    _log_method(client, exp, tmp, "ratspain-replica", fp, "lbp-r1p8-4x4", 0, replica, 0.66, start=t, bias=0.15)
    t += 10_000
    _log_method(client, exp, tmp, "ratspain-replica", fp, "painseeker-noprsc", 0, replica, 0.9, start=t, status="failed",
                folds_done=3, error="RuntimeError: CUDA out of memory")
    t += 10_000
    _log_method(client, exp, tmp, "ratspain-replica", fp, "timm:tiny", 0, replica, 0.95, start=t, folds_done=5)
    t += 10_000
    # exploratory: a better `--set` variant of a registered method, and a method no longer registered
    _log_method(client, exp, tmp, "ratspain-replica", fp, "lbp-r1p8-4x4", 0, replica, 0.8, start=t, config=VARIANT)
    t += 10_000
    _log_method(client, exp, tmp, "ratspain-replica", fp, RETIRED, 0, replica, 0.85, start=t)
    t += 10_000
    mice = _labels(MICE_COUNTS)
    exp2 = client.create_experiment("ratspain/mice-demo", artifact_location=(root / "artifacts").as_uri())
    for method, acc in (("resnet18", 0.8), ("lbp-r1p8-4x4", 0.6)):
        _log_method(client, exp2, tmp, "mice-demo", "fp-mice-0001", method, 0, mice, acc, start=t)
        t += 10_000
    return uri


def _empty_db_template(request, tmp_path_factory) -> Path | None:
    """An empty migrated MLflow database kept in pytest's cache (keyed by the MLflow version)."""
    import mlflow
    from mlflow.tracking import MlflowClient

    cache = getattr(request.config, "cache", None)
    if cache is None:
        return None
    template = cache.mkdir(f"ratspain-mlflow-{mlflow.__version__}") / "empty.db"
    if not template.is_file():
        tmp = tmp_path_factory.mktemp("template") / "empty.db"
        MlflowClient(f"sqlite:///{tmp}").search_experiments()
        shutil.copy(tmp, template.with_suffix(".tmp"))
        os.replace(template.with_suffix(".tmp"), template)
    return template


def _no_fsync(dbapi_connection, _record):
    if type(dbapi_connection).__module__.startswith("sqlite3"):
        dbapi_connection.execute("PRAGMA synchronous=OFF")  # a test store needs no durability: 4x faster setup


@pytest.fixture(scope="module")
def store(tmp_path_factory, request):
    from sqlalchemy import event
    from sqlalchemy.engine import Engine

    root = tmp_path_factory.mktemp("lb")
    event.listen(Engine, "connect", _no_fsync)
    try:
        uri = make_store(root, _empty_db_template(request, tmp_path_factory))
    finally:
        event.remove(Engine, "connect", _no_fsync)
    records = fetch_runs(uri)
    boards = build_leaderboards(records, uri, n_resamples=500, bootstrap_seed=0, lookup=fixture_registry)
    return {"root": root, "uri": uri, "records": records, "boards": {b.dataset: b for b in boards}, "list": boards}


def _sanitize(text: str, store) -> str:
    ids = {}
    for m in re.finditer(r"[0-9a-f]{32}", text):
        ids.setdefault(m.group(0), f"RUN{len(ids) + 1:02d}")
    for rid, name in ids.items():
        text = text.replace(rid, name)
    return text.replace(str(store["root"]), "TMP")


def _golden(name: str, text: str) -> None:
    path = GOLDEN / name
    if os.environ.get("RATSPAIN_UPDATE_GOLDEN") or not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    assert text == path.read_text(encoding="utf-8"), f"{path} differs (RATSPAIN_UPDATE_GOLDEN=1 to accept)"


# ---------------------------------------------------------------- golden tables


def test_golden_markdown_and_csv(store):
    lb = store["boards"]["ratspain-replica"]
    _golden("leaderboard_replica_README.md", _sanitize(render_markdown(lb), store))
    _golden("leaderboard_replica_results.csv", _sanitize(results_csv([lb]), store))
    _golden("leaderboard_mice_README.md", _sanitize(render_markdown(store["boards"]["mice-demo"]), store))


def test_one_leaderboard_per_dataset(store):
    assert sorted(store["boards"]) == ["mice-demo", "ratspain-replica"]
    mice = store["boards"]["mice-demo"]
    assert mice.subjects == ("a", "b", "c") and mice.n_images == 60
    assert mice.reference == ()  # the paper's rows belong to RatsPain-like datasets only
    replica = store["boards"]["ratspain-replica"]
    assert replica.subjects == tuple("123456") and replica.n_images == 1138
    assert [r["method"] for r in replica.reference][-1] == "painseeker"
    assert all(r.rank is None for r in replica.rows if r.kind == "baseline")


# ---------------------------------------------------------------- honesty rules


def test_incomplete_runs_listed_never_ranked(store):
    lb = store["boards"]["ratspain-replica"]
    ranked = [r.method for r in lb.ranked]
    assert ranked == ["painseeker", "resnet18", "lbp-r1p8-4x4"]
    assert [r.rank for r in lb.ranked] == [1, 2, 3]
    inc = {r.method: r for r in lb.incomplete}
    assert set(inc) == {"painseeker-noprsc", "timm:tiny"}
    assert "status failed" in inc["painseeker-noprsc"].reasons[0] and inc["painseeker-noprsc"].folds == "3/6"
    assert "5 of 6 folds complete" in inc["timm:tiny"].reasons[0]  # status complete but a fold is missing
    csv_rows = pd.read_csv(pd.io.common.StringIO(results_csv([lb])), dtype=str)
    assert csv_rows.loc[csv_rows["method"] == "timm:tiny", "rank"].isna().all()
    assert (csv_rows.loc[csv_rows["method"] == "timm:tiny", "status"] == "incomplete").all()


def test_only_registered_configurations_ranked_others_exploratory(store):
    lb = store["boards"]["ratspain-replica"]
    exploratory = {(r.method, r.config_hash): r for r in lb.exploratory}
    assert set(exploratory) == {("lbp-r1p8-4x4", VARIANT), (RETIRED, f"cfg-{RETIRED}")}
    variant = exploratory[("lbp-r1p8-4x4", VARIANT)]
    registered_row = next(r for r in lb.ranked if r.method == "lbp-r1p8-4x4")
    assert registered_row.label == "lbp-r1p8-4x4" and registered_row.config_hash == "cfg-lbp-r1p8-4x4"
    assert variant.pooled["f1"] > registered_row.pooled["f1"]  # better on the test rats, and still not ranked
    assert all(r.rank is None and r.tier is None and r.mcnemar is None for r in exploratory.values())
    assert "unknown method" in exploratory[(RETIRED, f"cfg-{RETIRED}")].note
    assert {r.label for r in lb.exploratory}.isdisjoint(r.label for r in lb.main_rows)
    csv_rows = pd.read_csv(pd.io.common.StringIO(results_csv([lb])), dtype=str)
    assert csv_rows.loc[csv_rows["kind"] == "exploratory", "rank"].isna().all()
    assert len(csv_rows[csv_rows["kind"] == "exploratory"]) == 2


def test_tiers_on_the_store(store):
    lb = store["boards"]["ratspain-replica"]
    tiers = [r.tier for r in lb.ranked]
    assert tiers[0] == 1 and tiers == sorted(tiers)
    assert lb.ranked[0].tier_p is None and all(r.tier_p is not None for r in lb.ranked[1:] if r.tier == 1)
    assert all(r.tier is None for r in lb.baselines)
    assert lb.bootstrap_exact and lb.distinct_resamples == 462


def test_superseded_failed_attempt_is_ignored(store):
    lb = store["boards"]["ratspain-replica"]
    resnet = next(r for r in lb.ranked if r.method == "resnet18")
    rec = [r for r in store["records"] if r.method == "resnet18" and r.dataset == "ratspain-replica"]
    assert len(rec) == 2
    assert resnet.run_ids == (next(r.run_id for r in rec if r.status == "complete"),)


def test_seeds_reported_as_mean_and_std(store):
    lb = store["boards"]["ratspain-replica"]
    row = lb.ranked[0]
    assert row.method == "painseeker" and row.seeds == ("0", "1", "2")
    recs = sorted((r for r in store["records"] if r.method == "painseeker"), key=lambda r: int(r.seed))
    per_seed = [metrics.score(r.predictions["y_true"], r.predictions["y_pred"], r.predictions["subject"]) for r in recs]
    f1s = [s["pooled"]["f1"] for s in per_seed]
    assert row.pooled["f1"] == pytest.approx(np.mean(f1s))
    assert row.pooled_std["f1"] == pytest.approx(np.std(f1s, ddof=1))
    assert row.pooled["f1"] < max(f1s)  # not the best seed
    means = [s["mean_over_subjects"]["f1"] for s in per_seed]
    assert row.mean_over_subjects["f1"] == pytest.approx(np.mean(means))
    from ratspain_bench.board.cells import pooled_cell

    assert "±" in pooled_cell(row)


def test_pooled_matches_the_runs_own_score(store):
    lb = store["boards"]["ratspain-replica"]
    row = next(r for r in lb.ranked if r.method == "lbp-r1p8-4x4")
    rec = next(r for r in store["records"] if r.method == "lbp-r1p8-4x4" and r.dataset == "ratspain-replica"
               and r.config_hash == "cfg-lbp-r1p8-4x4")
    assert row.pooled["f1"] == pytest.approx(rec.metrics["pooled_f1"])
    assert row.pooled["mcc"] == pytest.approx(rec.metrics["pooled_mcc"])
    assert row.train_seconds == 60.0 and row.hardware == "cpu x2"


def test_baselines(store):
    lb = store["boards"]["ratspain-replica"]
    maj = next(r for r in lb.baselines if r.method == "majority")
    chance = next(r for r in lb.baselines if r.method == "chance")
    # training counts of each fold follow from Table 2 (the paper's Table 4); fold 5 is a 478/478 tie -> no pain
    table4 = {"1": (485, 432), "2": (439, 489), "3": (393, 547), "4": (403, 505), "5": (478, 478), "6": (507, 534)}
    got = {d["subject"]: (d["train_no_pain"], d["train_pain"]) for d in lb.imbalance}
    assert got == table4
    classes = {d["subject"]: d["majority_class"] for d in lb.imbalance}
    assert classes == {"1": "no pain", "2": "pain", "3": "pain", "4": "pain", "5": "no pain", "6": "pain"}
    assert maj.per_subject["1"]["f1"] == 0.0 and maj.per_subject["1"]["accuracy"] == pytest.approx(56 / 221)
    assert maj.per_subject["2"]["accuracy"] == pytest.approx(108 / 210)
    assert chance.pooled["accuracy"] == 0.5
    assert chance.pooled["f1"] == pytest.approx(stats.chance_f1(597, 541))
    assert maj.mcnemar is not None and maj.significant


def test_mcnemar_against_top(store):
    lb = store["boards"]["ratspain-replica"]
    top, second = lb.ranked[0], lb.ranked[1]
    assert top.mcnemar is None
    m = second.mcnemar
    assert m["pairs"] == 1 and m["n_shared"] == 1138  # resnet18 has seed 0 only: paired with painseeker seed 0
    ps = next(r for r in store["records"] if r.method == "painseeker" and r.seed == "0").predictions
    rn = next(r for r in store["records"] if r.method == "resnet18" and r.status == "complete"
              and r.dataset == "ratspain-replica").predictions
    j = ps.merge(rn, on="image", suffixes=("_top", ""))
    b = int(((j["y_pred"] == j["y_true"]) & (j["y_pred_top"] != j["y_true_top"])).sum())
    c = int(((j["y_pred"] != j["y_true"]) & (j["y_pred_top"] == j["y_true_top"])).sum())
    assert (m["b"], m["c"]) == (b, c)
    assert m["p_value"] == pytest.approx(stats.binomial_two_sided_p(b, b + c))


# ---------------------------------------------------------------- statistics


def test_mcnemar_hand_computed():
    # b = 1, c = 6: P(X <= 1 | n = 7) = (1 + 7) / 128, two-sided p = 16/128 = 0.125
    t = stats.mcnemar_counts(1, 6)
    assert t.p_value == pytest.approx(0.125)
    # chi-square with continuity correction: (|1 - 6| - 1)^2 / 7 = 16/7, p = P(chi2_1 > 16/7)
    chi = stats.mcnemar_counts(1, 6, method="chi2")
    assert chi.statistic == pytest.approx(16 / 7)
    assert chi.p_value == pytest.approx(0.130570, abs=1e-5)
    assert stats.mcnemar_counts(0, 0).p_value == 1.0
    assert stats.mcnemar_counts(5, 5).p_value == 1.0
    # from predictions: 10 images, A right on 8, B right on 4; discordant: A only on images 0-4 (5), B only on 9 (1)
    y = np.array([1, 0, 1, 0, 1, 0, 1, 0, 1, 0])
    a = y.copy()
    a[[8]] = 1 - a[[8]]
    a[[9]] = 1 - a[[9]]
    b = y.copy()
    b[[0, 1, 2, 3, 4, 8]] = 1 - b[[0, 1, 2, 3, 4, 8]]
    t = stats.mcnemar(y, a, b)
    assert (t.b, t.c, t.n_shared) == (5, 1, 10)
    assert t.p_value == pytest.approx(2 * (1 + 6) / 64)  # 0.21875


def test_chance_f1_exact():
    # P = N = 1: F1 = 2TP/(TP+FP+1) over (TP, FP) in {0,1}^2 = (0 + 0 + 1 + 2/3) / 4
    assert stats.chance_f1(1, 1) == pytest.approx(5 / 12)
    assert stats.chance_f1(0, 10) == 0.0
    p = 597 / 1138
    assert stats.chance_f1(597, 541) == pytest.approx(2 * p / (1 + 2 * p), abs=2e-3)


def _rats(n, rng):
    out = []
    for _ in range(n):
        pos, neg = rng.randint(60, 160), rng.randint(40, 150)
        tp = rng.binomial(pos, rng.uniform(0.6, 0.9))
        tn = rng.binomial(neg, rng.uniform(0.5, 0.8))
        out.append(metrics.Confusion(tp, neg - tn, pos - tp, tn))
    return out


def test_bootstrap_contains_estimate_and_shrinks_with_more_rats():
    rng = np.random.RandomState(3)
    six = _rats(6, rng)
    many = six * 4  # the same kind of animals, four times as many
    widths = {}
    for name, rats in (("6", six), ("24", many)):
        cm = stats.as_array(rats)
        ci = stats.bootstrap_over_subjects(cm, n_resamples=2000, seed=0)
        pooled = sum(rats, metrics.Confusion(0, 0, 0, 0))
        assert ci["pooled_f1"].contains(metrics.f1(pooled))
        assert ci["pooled_accuracy"].contains(metrics.accuracy(pooled))
        assert ci["mean_f1"].contains(np.mean([metrics.f1(r) for r in rats]))
        widths[name] = ci["pooled_f1"].high - ci["pooled_f1"].low
    assert widths["24"] < 0.7 * widths["6"]
    # seeded: the same interval twice
    a = stats.bootstrap_over_subjects(stats.as_array(six), 300, seed=5)["pooled_f1"]
    b = stats.bootstrap_over_subjects(stats.as_array(six), 300, seed=5)["pooled_f1"]
    assert a == b


def test_leaderboard_intervals_contain_point_estimates(store):
    for lb in store["list"]:
        for r in lb.rows:
            if r.method == "chance":
                assert r.ci == {}
                continue
            lo, hi = r.ci["pooled_f1"]
            assert lo <= r.pooled["f1"] <= hi, r.label
            lo, hi = r.ci["pooled_accuracy"]
            assert lo <= r.pooled["accuracy"] <= hi, r.label


# ---------------------------------------------------------------- files, layout, CLI


def test_paper_copy_matches_the_shared_json():
    from ratspain_bench.board import paper

    if not PAPER_JSON.exists():
        pytest.skip("shared paper JSON not present")
    d = json.loads(PAPER_JSON.read_text())
    assert paper.TABLE3_LORO == d["table3_loro"] and paper.NOTE == d["note"]


def test_layout_several_datasets(store, tmp_path):
    written = write_leaderboards(store["list"], tmp_path / "lb", with_figures=False)
    for sub in ("mice-demo", "ratspain-replica"):
        for f in ("README.md", "index.html", "results.csv", "results.json"):
            assert (tmp_path / "lb" / sub / f).is_file()
    top = (tmp_path / "lb" / "README.md").read_text()
    assert "[ratspain-replica](ratspain-replica/README.md)" in top
    combined = pd.read_csv(tmp_path / "lb" / "results.csv", dtype=str)
    assert set(combined["dataset"]) == {"mice-demo", "ratspain-replica"}
    data = json.loads((tmp_path / "lb" / "results.json").read_text())
    assert [b["dataset"] for b in data["leaderboards"]] == ["mice-demo", "ratspain-replica"]
    assert len(written) == 4 + 8


def test_single_dataset_page_is_self_contained(store, tmp_path):
    lb = store["boards"]["ratspain-replica"]
    files = write_leaderboards([lb], tmp_path / "one")
    assert [f.name for f in files] == ["README.md", "index.html", "results.csv", "results.json"]
    html = (tmp_path / "one" / "index.html").read_text()
    assert "<script src" not in html and "stylesheet" not in html and "@import" not in html
    assert re.findall(r'src="(?!data:)', html) == []
    assert html.count("data:image/png;base64,") == 4  # heatmap, bars, confusion matrices, class balance
    assert 'id="results-table" class="sortable"' in html and 'id="imbalance-table"' in html
    assert "mlflow ui --backend-store-uri sqlite:///" in html
    assert "#/experiments/" in html
    data = json.loads((tmp_path / "one" / "results.json").read_text())
    board = data["leaderboards"][0]
    assert board["rows"][0]["rank"] == 1 and board["reference"]["rows"][-1]["method"] == "painseeker"
    assert "one confusion matrix" in (tmp_path / "one" / "README.md").read_text()


def test_cli(store, tmp_path, capsys, monkeypatch):
    from ratspain_bench.cli import main

    monkeypatch.setattr(registered, "registered_config_hash", fixture_registry)
    out = tmp_path / "cli"
    assert main(["leaderboard", "--out", str(out), "--tracking-uri", store["uri"], "--resamples", "200"]) == 0
    text = capsys.readouterr().out
    assert f"{out.resolve()}/" in text and "ratspain-replica: 3 ranked, 2 incomplete" in text
    assert (out / "ratspain-replica" / "index.html").is_file()
    assert main(["leaderboard", "--out", str(out), "--runs-dir", str(tmp_path / "nothing-here")]) == 2
    assert "no MLflow store" in capsys.readouterr().err


# ---------------------------------------------------------------- the page in a real browser


def _browser_check():
    spec = importlib.util.spec_from_file_location("check_page", Path(__file__).parent / "browser" / "check_page.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.mark.skipif(CHROMIUM is None, reason="needs Debian's chromium (/usr/bin/chromium)")
def test_page_in_headless_chromium(store, tmp_path):
    lb = store["boards"]["ratspain-replica"]
    write_leaderboards([lb], tmp_path / "page")
    check = _browser_check()
    t = time.monotonic()
    result = check.check_page(tmp_path / "page" / "index.html", screenshot=tmp_path / "shot.png", chromium=CHROMIUM)
    assert result["console_errors"] == [], result["console_errors"]
    assert result["rows"] == len(lb.main_rows)
    assert result["sorted_by_method"] and result["order_changed_by_click"]
    assert result["sorted_descending"] and result["sorted_ascending"]
    assert (tmp_path / "shot.png").stat().st_size > 10_000
    assert time.monotonic() - t < 60


# ---------------------------------------------------------------- score --compare


def _write_preds(path: Path, images, y_true, y_pred, method: str) -> Path:
    pd.DataFrame({"image": images, "subject": ["1"] * 5 + ["2"] * (len(images) - 5), "y_true": y_true, "y_pred": y_pred,
                  "method": method, "seed": 0}).to_csv(path, index=False)
    return path


def test_score_compare(tmp_path, capsys):
    from ratspain_bench.cli import main

    y = np.array([1, 0, 1, 0, 1, 0, 1, 0, 1, 0])
    a, b = y.copy(), y.copy()
    a[[8, 9]] = 1 - a[[8, 9]]                       # A wrong on 8, 9
    b[[0, 1, 2, 3, 4, 8]] = 1 - b[[0, 1, 2, 3, 4, 8]]  # B wrong on 0-4 and 8
    images = [f"img{i}.png" for i in range(10)]
    fa = _write_preds(tmp_path / "a.csv", images + ["extra_a.png"], list(y) + [1], list(a) + [1], "m-a")
    fb = _write_preds(tmp_path / "b.csv", images, y, b, "m-b")
    assert main(["score", str(fa), "--compare", str(fb), "--format", "json"]) == 0
    r = json.loads(capsys.readouterr().out)
    assert r["n_shared"] == 10 and r["only_in_a"] == 1 and r["only_in_b"] == 0
    assert (r["mcnemar"]["b_only_a_right"], r["mcnemar"]["c_only_b_right"]) == (5, 1)
    assert r["mcnemar"]["p_value"] == pytest.approx(0.21875) and not r["significant"]
    assert main(["score", str(fa), "--compare", str(fb), "--format", "md"]) == 0
    text = capsys.readouterr().out
    assert "b = 5 images only A gets right" in text and "p=0.2188" in text
    fc = _write_preds(tmp_path / "c.csv", images, 1 - y, b, "m-c")
    assert main(["score", str(fa), "--compare", str(fc)]) == 2
    assert "y_true differs" in capsys.readouterr().err


# ---------------------------------------------------------------- pure table function on hand-made records


def _record(method, seed, status, preds=None, folds=2, fingerprint="fp", dataset="toy", start=0, config="h"):
    from ratspain_bench.board.collect import FoldRecord, RunRecord

    return RunRecord(run_id=f"{method}-{seed}-{start}-{config}", experiment_id="1", dataset=dataset, fingerprint=fingerprint,
                     method=method, family="x", seed=str(seed), profile="quick", config_hash=config, source="built-in",
                     status=status, folds_expected=2, hardware="cpu x2", start_time=start,
                     folds=tuple(FoldRecord(f"f{i}", s, "complete") for i, s in enumerate(["r1", "r2"][:folds])),
                     predictions=preds)


def _registry_h(method, profile):
    return "h"


def test_no_complete_run_still_renders():
    lb = build_leaderboards([_record("m", 0, "failed", folds=1)], "sqlite:////x/mlflow.db", lookup=_registry_h)[0]
    assert lb.rows == () and len(lb.incomplete) == 1 and lb.incomplete[0].folds == "1/2"
    assert "No complete run yet." in render_markdown(lb)
    from ratspain_bench.board.render_html import render_html

    assert "No complete run yet." in render_html(lb)


def test_fingerprints_never_mixed_and_partial_predictions_flagged():
    labels = pd.DataFrame({"image": ["a", "b", "c", "d"], "subject": ["r1", "r1", "r2", "r2"], "y_true": [0, 1, 0, 1]})
    full = labels.assign(y_pred=[0, 1, 1, 1])
    boards = build_leaderboards([_record("m", 0, "complete", full, fingerprint="fp1"),
                                 _record("m", 0, "complete", full, fingerprint="fp2"),
                                 _record("n", 0, "complete", full.iloc[:3], fingerprint="fp2")], "", lookup=_registry_h)
    assert [b.dataset for b in boards] == ["toy@fp1", "toy@fp2"]
    second = boards[1]
    assert [r.method for r in second.ranked] == ["m"]
    assert "predictions cover 3 of 4 images" in second.incomplete[0].reasons[0]


def test_a_local_store_is_named_relative_to_the_working_folder(tmp_path):
    """A committed board must not carry this machine's absolute path: a SQLite store under the working folder is
    named relative to it; one elsewhere, or a server, as given."""
    from ratspain_bench.board.collect import shown_uri

    assert shown_uri(f"sqlite:///{tmp_path}/ratspain-runs/mlflow.db", base=tmp_path) == "sqlite:///ratspain-runs/mlflow.db"
    assert shown_uri("sqlite:////elsewhere/mlflow.db", base=tmp_path) == "sqlite:////elsewhere/mlflow.db"
    assert shown_uri("sqlite:///rel/mlflow.db", base=tmp_path) == "sqlite:///rel/mlflow.db"
    assert shown_uri("http://127.0.0.1:5000", base=tmp_path) == "http://127.0.0.1:5000"
