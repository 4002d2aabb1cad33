"""Against real servers: two `study tune` workers on one PostgreSQL study, two `run` processes into one MLflow
tracking server (the leaderboard matches a local store's), and a server that is down."""
import os
import subprocess
import sys
import time

import pandas as pd
import pytest
from servers import free_port, start_mlflow_server, start_postgres
from test_launch import data  # noqa: F401  (a tiny 3-rat dataset, caches and MLflow under tmp_path)
from test_study import env  # noqa: F401  (the tiny 4-rat dataset and the `bright` submission)

from ratspain_bench import api
from ratspain_bench.cli import main


@pytest.fixture
def postgres():
    url, stop = start_postgres()
    yield url
    stop()


@pytest.fixture
def mlflow_server(tmp_path):
    url, stop = start_mlflow_server(tmp_path / "mlflow-server")
    yield url
    stop()


def test_two_tune_workers_share_one_postgresql_study(env, postgres):  # noqa: F811
    root, folder = env
    cmd = [sys.executable, "-m", "ratspain_bench", "study", "tune", "--data", str(folder), "--method", "bright", "--n-trials", "3",
           "--storage", postgres, "--study-name", "pg", "--runs-dir", str(root / "runs"), "--quiet"]
    e = dict(os.environ, FIT_DELAY="0.02")
    procs = [subprocess.Popen(cmd + ["--out", str(root / f"out{i}")], env=e, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
             for i in range(2)]
    outs = [p.communicate(timeout=600)[0] for p in procs]
    assert all(p.returncode == 0 for p in procs), [o[-2000:] for o in outs]
    import optuna

    storage = optuna.storages.RDBStorage(postgres)
    outer = sorted(n for n in optuna.study.get_all_study_names(storage) if "/outer-" in n)
    assert [n.rsplit("-", 1)[1] for n in outer] == ["a", "b", "c", "d"]
    workers = set()
    for name in outer:
        trials = optuna.load_study(study_name=name, storage=storage).get_trials()
        assert sorted(t.number for t in trials) == list(range(6))  # 2 workers x 3 trials: every number once, none lost
        assert not [t for t in trials if t.state.name in ("RUNNING", "WAITING")]
        workers |= {t.user_attrs.get("worker") for t in trials}
    assert len(workers - {None}) == 2


RUN_SPECIFIC = ["train_seconds", "mlflow_experiment_id", "mlflow_run_ids"]


def test_two_runs_into_one_mlflow_server_give_the_local_leaderboard(data, mlflow_server, tmp_path):
    methods = ["lbp-r1p8-4x4", "lbp-r3p8-4x4"]
    base = [sys.executable, "-m", "ratspain_bench", "run", "--data", str(data), "--runs-dir", str(tmp_path / "runs"),
            "--tracking-uri", mlflow_server, "--quiet", "--jobs", "1"]
    procs = [subprocess.Popen(base + ["--methods", m], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for m in methods]
    outs = [p.communicate(timeout=300)[0] for p in procs]
    assert all(p.returncode == 0 for p in procs), [o[-2000:] for o in outs]
    assert main(["leaderboard", "--tracking-uri", mlflow_server, "--out", str(tmp_path / "board-server"), "--resamples", "200"]) == 0

    api.run(methods, data, runs_dir=tmp_path / "local", jobs=1)
    api.leaderboard(tmp_path / "board-local", runs_dir=tmp_path / "local", resamples=200)
    server = pd.read_csv(tmp_path / "board-server" / "results.csv").drop(columns=RUN_SPECIFIC)
    local = pd.read_csv(tmp_path / "board-local" / "results.csv").drop(columns=RUN_SPECIFIC)
    assert (server["kind"] == "method").sum() == 2
    pd.testing.assert_frame_equal(server, local)


def test_a_tracking_server_that_is_down_fails_at_once(data, capsys):
    uri = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    t = time.perf_counter()
    assert main(["run", "--methods", "lbp-r1p8-4x4", "--data", str(data), "--tracking-uri", uri]) == 2
    assert main(["leaderboard", "--tracking-uri", uri, "--out", "unused-board"]) == 2
    assert time.perf_counter() - t < 60  # not the MLflow client's minutes of retries
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and all(uri in line and "does not answer" in line for line in err)
