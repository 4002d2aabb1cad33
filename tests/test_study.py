"""Studies: the sensitivity grid (CSV, figure, MLflow, resume), nested LORO, shared storage, two workers."""
import json
import os
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from tinydata import make_dataset

from ratspain_bench.cli import main
from ratspain_bench.evaluation.record import Store
from ratspain_bench.errors import InputError
from ratspain_bench.methods import registry as reg

BRIGHT = '''
import os, time
from dataclasses import dataclass
import numpy as np
from ratspain_bench.methods import Method, Predictions

@dataclass(frozen=True)
class Config:
    threshold: float = 0.3
    gain: float = 1.0
    image_size: int = 32

class Bright(Method):
    """Mean brightness x gain against a threshold. Logs every fit; waits at $GO_FILE's barrier when set."""
    Config = Config
    family = "bright"
    def fit(self, train):
        log = os.environ.get("FIT_LOG")
        if log:
            with open(log, "a") as f:
                f.write(f"{self.config.threshold} {self.config.gain} {','.join(sorted(set(train.subjects)))} {os.getpid()}\\n")
        go = os.environ.get("GO_FILE")
        while go and not os.path.exists(go):
            time.sleep(0.05)
        time.sleep(float(os.environ.get("FIT_DELAY", "0")))
    def predict(self, test):
        s = np.clip(test.images.mean(axis=(1, 2, 3)) / 255 * self.config.gain, 0, 1)
        return Predictions((s > self.config.threshold).astype(int), s)
'''
TOML = '''
name = "bright"
entry_point = "method:Bright"
[search_space]
threshold = { low = 0.1, high = 0.6 }
gain = { low = 0.5, high = 2.0, log = true }
'''


@pytest.fixture()
def env(tmp_path, monkeypatch):
    """A tiny 4-rat dataset, the `bright` submission registered (trusted: it runs in this process and logs its fits),
    caches and runs under tmp_path."""
    data = make_dataset(tmp_path / "data", subjects=("a", "b", "c", "d"), per_subject=6, size=32)
    sub = tmp_path / "submissions" / "bright"
    sub.mkdir(parents=True)
    (sub / "submission.toml").write_text(TOML)
    (sub / "method.py").write_text(textwrap.dedent(BRIGHT))
    monkeypatch.setenv("RATSPAIN_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("RATSPAIN_SUBMISSIONS_DIR", str(tmp_path / "submissions"))
    monkeypatch.setenv("FIT_LOG", str(tmp_path / "fits.log"))
    monkeypatch.setenv("RATSPAIN_TRUST", "bright")
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("GO_FILE", raising=False)
    monkeypatch.setattr(reg, "_default", [])
    return tmp_path, data


def fits(root: Path) -> list[list[str]]:
    log = root / "fits.log"
    return [line.split() for line in log.read_text().splitlines()] if log.exists() else []


GRID = ["--param", "threshold=0.2,0.3,0.5", "--param", "gain=0.5,1,2"]


def test_grid_study_csv_png_mlflow_and_resume(env, capsys):
    root, data = env
    out, runs = root / "out", root / "runs"
    args = ["study", "sensitivity", "--data", str(data), "--method", "bright", *GRID, "--out", str(out), "--runs-dir", str(runs), "--quiet"]
    assert main(args + ["--n-trials", "2"]) == 0  # a worker that stops early: 2 of 6 points
    assert len({(t, g) for t, g, *_ in fits(root)}) == 2
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "not a tuning result" in printed
    rows = pd.read_csv(out / "sensitivity.csv")
    assert list(rows.columns) == ["param", "value", "pooled_f1", "pooled_accuracy"]
    assert rows[["param", "value"]].values.tolist() == [["threshold", 0.2], ["threshold", 0.3], ["threshold", 0.5],
                                                        ["gain", 0.5], ["gain", 1.0], ["gain", 2.0]]
    assert rows["pooled_f1"].between(0, 1).all() and rows["pooled_accuracy"].between(0, 1).all()
    assert (out / "sensitivity.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "not a tuning result" in (out / "sensitivity.md").read_text()
    # threshold=0.3 and gain=1 are the same config (both defaults): fitted once, 4 folds
    configs = [(t, g) for t, g, *_ in fits(root)]
    assert len(configs) == 5 * 4 and all(configs.count(c) == 4 for c in set(configs))
    # a fold never trains on its held-out rat
    assert all(len(s.split(",")) == 3 for _, _, s, _ in fits(root))
    # pooled F1 agrees with the predictions cached on disk
    c = Store(runs).client
    exp = c.get_experiment_by_name(f"ratspain-study/{data.name}")
    parent = c.search_runs([exp.experiment_id], "tags.`ratspain.role` = 'study'")
    assert len(parent) == 1 and parent[0].data.tags["ratspain.status"] == "complete"
    assert "test rats" in parent[0].data.tags["ratspain.scored_on"]
    children = c.search_runs([exp.experiment_id], "tags.`ratspain.role` = 'trial'")
    assert len(children) == 6 and {r.data.tags["mlflow.parentRunId"] for r in children} == {parent[0].info.run_id}
    by_point = {r.data.params["point"]: r.data.metrics["pooled_f1"] for r in children}
    assert by_point["gain=2.0"] == pytest.approx(rows.loc[5, "pooled_f1"])
    arts = {a.path for a in c.list_artifacts(parent[0].info.run_id)}
    assert {"sensitivity.csv", "sensitivity.png"} <= arts
    # never the leaderboard's roles
    for role in ("parent", "fold"):
        assert not c.search_runs([exp.experiment_id], f"tags.`ratspain.role` = '{role}'")
    # rerunning resumes: nothing is fitted again, no trial added
    n_fits = len(fits(root))
    assert main(args) == 0
    assert len(fits(root)) == n_fits
    import optuna

    storage = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(runs / "optuna.journal")))
    (name,) = optuna.study.get_all_study_names(storage)
    trials = optuna.load_study(study_name=name, storage=storage).get_trials()
    assert sorted(t.params["point"] for t in trials if t.state.name == "COMPLETE") == sorted(
        ["threshold=0.2", "threshold=0.3", "threshold=0.5", "gain=0.5", "gain=1.0", "gain=2.0"])
    assert len(c.search_runs([exp.experiment_id], "tags.`ratspain.role` = 'trial'")) == 6


def test_dead_worker_trial_is_run_again(env):
    """A trial left RUNNING by a killed worker (kill -9) is failed as stale and its point is run again."""
    import optuna

    from ratspain_bench.data import load_dataset
    from ratspain_bench.study import SensitivityOptions, run_sensitivity

    root, data = env
    opts = SensitivityOptions(method="bright", grid={"threshold": ["0.2", "0.4"]}, runs_dir=root / "runs", study_name="s", quiet=True)
    from ratspain_bench.study.storage import open_storage

    storage = open_storage(None, root / "runs")
    study = optuna.create_study(storage=storage, study_name="s", direction="maximize")
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    study.enqueue_trial({"point": "threshold=0.2"})
    t = study.ask({"point": optuna.distributions.CategoricalDistribution(["threshold=0.2", "threshold=0.4"])})  # RUNNING forever
    t.set_user_attr("worker", f"{socket.gethostname()}:{dead.pid}")
    res = run_sensitivity(load_dataset(str(data)), opts)
    assert res.complete and res.rows["pooled_f1"].notna().all()
    states = {tr.number: tr.state.name for tr in optuna.load_study(study_name="s", storage=storage).get_trials()}
    assert states[t.number] == "FAIL"


def test_figure5_default_grid_plan(env):
    """The default grid is the paper's Figure 5: 15 points, one parameter at a time, defaults 0.1/0.2/5."""
    from ratspain_bench.methods.painseeker import PainSeeker
    from ratspain_bench.study.sensitivity import SensitivityOptions, plan

    opts = SensitivityOptions(method="painseeker:resnet10t", finetune="frozen", fixed={"image_size": 48, "crop_size": 32})
    base, points, notes = plan(opts)
    assert [p.label for p in points][:5] == ["lambda=0.05", "lambda=0.1", "lambda=0.5", "lambda=1.0", "lambda=1.5"]
    assert [p.value for p in points if p.param == "k_high"] == [3, 5, 10, 15, 20]
    assert len(points) == 15 and sum(len(v) for v in PainSeeker.SENSITIVITY_GRID.values()) == 15
    p = {pt.label: pt.params for pt in points}
    assert (p["delta=0.5"]["lambda"], p["delta=0.5"]["k_high"], p["lambda=1.5"]["delta"]) == (0.1, 5, 0.2)
    assert all(pt.params["finetune"] == "frozen" and pt.params["heatmaps"] == 0 for pt in points)  # scored, not looked at
    opts = SensitivityOptions(method="painseeker:resnet10t", finetune="frozen", fixed={"image_size": 48, "crop_size": 32, "heatmaps": "2"})
    assert all(pt.params["heatmaps"] == 2 for pt in plan(opts)[1])  # --set wins


def test_crop_widened_until_k_high_fits(env):
    """Figure 5's k_high = 20 needs K > 20 regions: a small crop is widened (steps of 8 px) until the backbone gives them."""
    from ratspain_bench.methods.painseeker import PainSeeker
    from ratspain_bench.methods.registry import get_method

    spec = get_method("painseeker:resnet10t")
    grid = PainSeeker.SENSITIVITY_GRID
    extra, note = PainSeeker.study_settings(spec.config(None, image_size=72, crop_size=64, weights="none"), grid)
    assert extra == {"crop_size": 136, "image_size": 144, "heatmaps": 0} and "25 regions" in note
    assert PainSeeker.study_settings(spec.config(None, image_size=240, crop_size=224, weights="none"), grid) == ({"heatmaps": 0}, "")


def test_painseeker_frozen_grid_on_tiny_replica(env):
    from ratspain_bench.data.synth import generate_replica

    root, _ = env
    counts = {s: {"no_pain": 4, "moderate": 4} for s in ("1", "2", "3")}
    generate_replica(root / "rep", seed=0, size=48, counts=counts, jobs=1)
    out = root / "ps"
    rc = main(["study", "sensitivity", "--data", str(root / "rep"), "--method", "painseeker:resnet10t", "--finetune", "frozen",
               "--param", "lambda=0.05,0.5", "--param", "k_high=1,3", "--set", "image_size=48", "--set", "crop_size=48",
               "--set", "k_high=2", "--set", "epochs=1", "--set", "views=1", "--set", "batch_size=8",
               "--out", str(out), "--runs-dir", str(root / "runs"), "--quiet"])
    assert rc == 0
    rows = pd.read_csv(out / "sensitivity.csv")
    assert len(rows) == 4 and rows["pooled_f1"].notna().all()
    assert (out / "sensitivity.png").is_file()
    assert "fits the grid's configs together" in (out / "sensitivity.md").read_text()


def test_a_grid_fitted_together_matches_separate_fits_and_splits_over_processes(env):
    """PainSeeker's frozen grid is fitted as one stacked head per fold: its folds carry the group in their name (never a
    lone config's), score as separate fits do (rounding aside), and a study over two processes, each fitting the folds it
    claims, writes the same results as one process."""
    from ratspain_bench.data import load_dataset
    from ratspain_bench.data.synth import generate_replica
    from ratspain_bench.study.evaluate import Evaluator
    from ratspain_bench.methods.registry import get_method

    root, _ = env
    counts = {s: {"no_pain": 4, "moderate": 4} for s in ("1", "2", "3")}
    generate_replica(root / "rep", seed=0, size=48, counts=counts, jobs=1)
    args = ["study", "sensitivity", "--data", str(root / "rep"), "--method", "painseeker:resnet10t", "--finetune", "frozen",
            "--param", "lambda=0,0.5,2", "--param", "k_high=1,3", "--set", "image_size=48", "--set", "crop_size=48",
            "--set", "k_high=2", "--set", "epochs=3", "--set", "views=1", "--set", "batch_size=8", "--quiet"]
    one, two = root / "one", root / "two"
    assert main(args + ["--out", str(one), "--runs-dir", str(one / "runs"), "--jobs", "1"]) == 0
    assert main(args + ["--out", str(two), "--runs-dir", str(two / "runs"), "--jobs", "2"]) == 0
    assert pd.read_csv(one / "sensitivity.csv").equals(pd.read_csv(two / "sensitivity.csv"))
    assert not list((two / "runs").rglob("*.claim"))

    spec = get_method("painseeker:resnet10t")
    ds = load_dataset(str(root / "rep"))
    grouped, alone = Evaluator(ds, one / "runs", profile="quick"), Evaluator(ds, root / "alone", profile="quick")
    from ratspain_bench.study.sensitivity import SensitivityOptions, plan

    points = plan(SensitivityOptions(method=spec.name, finetune="frozen", grid={"lambda": ["0", "0.5", "2"], "k_high": ["1", "3"]},
                                     fixed={"image_size": 48, "crop_size": 48, "k_high": 2, "epochs": 3, "views": 1, "batch_size": 8}))[1]
    assert grouped.fit_together(spec, [p.params for p in points])
    for p in points:
        key, lone = grouped.key(spec, p.params), alone.key(spec, p.params)
        assert key.config_hash != lone.config_hash and all((key.fold_dir(grouped.runs_dir, f) / "DONE").is_file() for f in grouped.folds)
        a, b = grouped.run(spec, p.params), alone.run(spec, p.params)
        assert a["y_true"].equals(b["y_true"]) and np.allclose(a["score"], b["score"], atol=1e-4)


def test_a_fold_claim_waits_for_a_live_holder_and_takes_over_a_dead_one(tmp_path):
    import socket

    from ratspain_bench.study import evaluate

    claim = tmp_path / "fold.claim"
    assert evaluate._claim(claim) and claim.read_text() == f"{socket.gethostname()}:{os.getpid()}"
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        claim.write_text(f"{socket.gethostname()}:{holder.pid}")
        assert not evaluate._claim(claim)  # a live process of this host holds it
    finally:
        holder.kill()
        holder.wait()
    assert evaluate._claim(claim) and claim.read_text().endswith(f":{os.getpid()}")  # its process is gone: taken over
    claim.write_text("elsewhere:1")
    assert not evaluate._claim(claim)  # another host's, fresh
    old = time.time() - evaluate.STALE_CLAIM_SECONDS - 5
    os.utime(claim, (old, old))
    assert evaluate._claim(claim)  # another host's, stale
    assert not list(tmp_path.glob("*.tmp"))


def test_nested_loro_inner_loop_never_sees_outer_test_rat(env):
    from ratspain_bench.data import load_dataset
    from ratspain_bench.study import TuneOptions, run_tune

    root, data = env
    seen = []
    opts = TuneOptions(method="bright", n_trials=4, runs_dir=root / "runs", quiet=True, startup_trials=1)
    res = run_tune(load_dataset(str(data)), opts, observer=seen.append)
    inner = [s for s in seen if s.stage == "inner"]
    outer = [s for s in seen if s.stage == "outer"]
    assert inner and len(outer) == 4
    ds = load_dataset(str(data))
    subjects = ds.table["subject"].to_numpy()
    for s in inner:
        assert s.outer not in s.train_subjects and s.outer not in s.test_subjects
        rows = list(s.fold.train_idx) + list(s.fold.test_idx)
        assert s.outer not in set(subjects[rows])  # on the indices themselves
        assert len(s.test_subjects) == 1 and len(s.train_subjects) == 2
    for s in outer:
        assert s.test_subjects == {s.outer} and s.outer not in s.train_subjects
    assert {s.outer for s in inner} == {"a", "b", "c", "d"}
    summary = res.summary
    assert summary["complete"] and summary["nested"]["folds_scored"] == 4
    assert {d.split()[0] for d in summary["space"]} == {"threshold", "gain"}
    assert all(set(o["params"]) == {"threshold", "gain"} for o in summary["outer"])
    text = res.report.read_text()
    assert "Parameter importance" in text and "never used to choose" in text
    assert (res.out_dir / "tune_outer.csv").is_file() and (res.out_dir / "importance.csv").is_file()
    # running inner scores were reported per inner fold (what the pruner compares)
    import optuna

    from ratspain_bench.study.storage import open_storage

    st = optuna.load_study(study_name=f"{summary['study']}/outer-a", storage=open_storage(None, root / "runs"))
    done = [t for t in st.get_trials() if t.state.name == "COMPLETE"]
    assert done and all(sorted(t.intermediate_values) == [0, 1, 2] for t in done)


def test_nested_tune_result_is_its_own_ranked_row(env):
    """The nested-LORO estimate reaches the leaderboard as "<method>, tuned (nested LORO)", ranked beside the registered
    row, with the outer predictions the study scored; more trials that change a choice replace it (one row per method)."""
    from ratspain_bench import api
    from ratspain_bench.data import load_dataset
    from ratspain_bench.study import TuneOptions, run_tune

    root, data = env
    res = run_tune(load_dataset(str(data)), TuneOptions(method="bright", n_trials=2, runs_dir=root / "runs", quiet=True))
    api.run(["bright"], str(data), runs_dir=root / "runs", jobs=1)
    (lb,) = api.leaderboard(root / "board", runs_dir=root / "runs")
    by_label = {r.label: r for r in lb.ranked}
    assert set(by_label) == {"bright", "bright, tuned (nested LORO)"}
    tuned = by_label["bright, tuned (nested LORO)"]
    assert tuned.pooled["f1"] == pytest.approx(res.summary["nested"]["f1"])
    assert tuned.source == "nested LORO" and tuned.tier is not None
    run_tune(load_dataset(str(data)), TuneOptions(method="bright", n_trials=3, runs_dir=root / "runs", quiet=True))
    (lb,) = api.leaderboard(root / "board", runs_dir=root / "runs")
    assert [r.label for r in lb.ranked].count("bright, tuned (nested LORO)") == 1


def test_tune_with_declared_search_space_cli(env, capsys):
    root, data = env
    assert main(["study", "tune", "--data", str(data), "--method", "bright", "--n-trials", "2", "--runs-dir", str(root / "runs"),
                 "--out", str(root / "tune"), "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "Nested LORO" in out and "threshold" in out
    summary = json.loads((root / "tune" / "tune.json").read_text())
    assert summary["space_source"].endswith("submission.toml")


WORKER_GRID = "threshold=0.15,0.2,0.25,0.3,0.35,0.4,0.45"


@pytest.mark.parametrize("storage", ["journal", "sqlite"])
def test_two_workers_share_one_study(env, storage):
    """Two processes, one storage: every grid point done exactly once, none lost, both workers busy."""
    root, data = env
    url = f"journal:{root / 'shared.journal'}" if storage == "journal" else f"sqlite:///{root / 'shared.db'}"
    go = root / "go"
    e = dict(os.environ, GO_FILE=str(go), FIT_DELAY="0.05")
    cmd = [sys.executable, "-m", "ratspain_bench", "study", "sensitivity", "--data", str(data), "--method", "bright",
           "--param", WORKER_GRID, "--storage", url, "--study-name", "shared", "--runs-dir", str(root / "runs"), "--quiet",
           "--jobs", "1"]  # one process each (--jobs auto would add a helper per core: more than two workers)
    procs = [subprocess.Popen(cmd + ["--out", str(root / f"out{i}")], env=e, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
             for i in range(2)]
    deadline = time.time() + 120
    while len({line[3] for line in fits(root)}) < 2:  # both workers are inside a trial: open the barrier
        if time.time() > deadline or any(p.poll() is not None for p in procs):
            for p in procs:
                p.kill()
            pytest.fail("a worker died or never started: " + "\n".join(p.communicate()[0][-2000:] for p in procs))
        time.sleep(0.1)
    go.write_text("")
    outs = [p.communicate(timeout=180)[0] for p in procs]
    assert all(p.returncode == 0 for p in procs), outs
    points = [f"threshold={v}" for v in WORKER_GRID.split("=")[1].split(",")]
    import optuna

    from ratspain_bench.study.storage import open_storage

    trials = optuna.load_study(study_name="shared", storage=open_storage(url)).get_trials()
    complete = [t.params["point"] for t in trials if t.state.name == "COMPLETE"]
    assert sorted(complete) == sorted(points)  # nothing lost, nothing twice
    assert not [t for t in trials if t.state.name in ("RUNNING", "FAIL", "WAITING")]
    log = fits(root)
    per_config = pd.Series([t for t, *_ in log]).value_counts()
    assert len(per_config) == len(points) and (per_config == 4).all()  # each point's LORO ran once: 4 folds
    assert len({pid for *_, pid in log}) == 2 and len({t.user_attrs["worker"] for t in trials if t.state.name == "COMPLETE"}) == 2
    last = max((root / f"out{i}" / "sensitivity.csv" for i in range(2)), key=lambda p: p.stat().st_mtime)
    rows = pd.read_csv(last)
    assert len(rows) == len(points)


def test_storage_urls_and_errors(tmp_path):
    from ratspain_bench.study.storage import default_storage_url, open_storage, redact

    assert default_storage_url(tmp_path).endswith("optuna.journal")
    assert type(open_storage(f"journal:{tmp_path / 'a.journal'}")).__name__ == "JournalStorage"
    assert type(open_storage(f"sqlite:///{tmp_path / 'o.db'}")).__name__ == "RDBStorage"
    assert redact("postgresql://user:secret@db.lab/optuna") == "postgresql://user:***@db.lab/optuna"
    with pytest.raises(InputError, match="storage"):
        open_storage("bogus")


def test_space_parsing():
    from ratspain_bench.study.space import parse_cli_dim, parse_dim

    assert parse_cli_dim("C=0.01..10:log").log and parse_cli_dim("C=0.01..10:log").kind == "float"
    assert parse_cli_dim("k_high=1..15").kind == "int"
    assert parse_cli_dim("pool=avg,max").choices == ("avg", "max")
    for bad in ({"low": 1}, {"low": 2, "high": 1}, {"low": 0, "high": 1, "log": True}, {"choices": []}, {"lo": 1, "high": 2}):
        with pytest.raises(InputError):
            parse_dim("x", bad)


def test_cli_errors_exit_2(env, capsys):
    root, data = env
    base = ["study", "sensitivity", "--data", str(data), "--method", "bright", "--runs-dir", str(root / "runs")]
    assert main(base + ["--param", "treshold=0.1,0.2"]) == 2
    assert "did you mean threshold" in capsys.readouterr().err
    assert main(base + ["--param", "threshold"]) == 2
    assert "NAME=v1,v2" in capsys.readouterr().err
    assert main(["study", "tune", "--data", str(data), "--method", "bright", "--space", "nope=1..2", "--runs-dir", str(root / "runs")]) == 2
    assert "no parameter 'nope'" in capsys.readouterr().err


def test_tuning_nests_the_protocol(env):
    """`study tune --protocol pose-shift`: every fold it fits, outer or inner, trains on frontal faces only, and the
    outer folds score every pose of their rat."""
    import pandas as pd

    from ratspain_bench.data import load_dataset
    from ratspain_bench.study import TuneOptions, run_tune

    root, data = env
    manifest = Path(data) / "manifest.csv" if Path(data).is_dir() else Path(data)
    t = pd.read_csv(manifest, dtype=str)
    t["pose_bin"] = ["frontal", "frontal", "moderate", "frontal", "extreme", "frontal"] * (len(t) // 6)
    t.to_csv(manifest, index=False)
    seen = []
    opts = TuneOptions(method="bright", n_trials=2, runs_dir=root / "runs", quiet=True, startup_trials=1, protocol="pose-shift")
    run_tune(load_dataset(str(data)), opts, observer=seen.append)
    pose = load_dataset(str(data)).table["pose_bin"].to_numpy()
    assert {s.stage for s in seen} == {"inner", "outer"}
    for s in seen:
        assert set(pose[list(s.fold.train_idx)]) == {"frontal"}, s.stage
    outer_tested = set().union(*(set(pose[list(s.fold.test_idx)]) for s in seen if s.stage == "outer"))
    assert outer_tested == {"frontal", "moderate", "extreme"}
    assert any("pose-shift-v1" in p.name for p in (root / "runs" / "jobs").rglob("*") if p.is_dir())
