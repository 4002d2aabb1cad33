"""Launchers: the same folds through the local pool, one worker per device, and submitit's local executor,
with identical predictions; the collecting process alone writes MLflow."""
import pandas as pd
import pytest
from tinydata import make_dataset

from ratspain_bench import api
from ratspain_bench.errors import InputError
from ratspain_bench.evaluation import record
from ratspain_bench.evaluation.launch import LaunchSettings, parse_devices
from ratspain_bench.methods import registry as reg

LBP = ["lbp-r1p8-4x4", "lbp-r3p8-4x4"]


@pytest.fixture
def data(tmp_path, monkeypatch):
    monkeypatch.setenv("RATSPAIN_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.setattr(reg, "_default", [])
    return make_dataset(tmp_path / "data", subjects=("a", "b", "c"), per_subject=8)


def fold_tags(runs_dir, tag) -> dict:
    """{(method, subject): tag value} over the fold child runs of the local store."""
    store = record.Store(runs_dir)
    out = {}
    for exp in store.client.search_experiments():
        for parent in store.find(exp.experiment_id, **{record.Tag.ROLE: record.PARENT}):
            for subject, child in record.fold_runs(store, exp.experiment_id, parent.info.run_id).items():
                out[(parent.data.tags[record.Tag.METHOD], subject)] = child.data.tags.get(tag)
    return out


def predictions(result) -> pd.DataFrame:
    return result.predictions.sort_values(["method", "image"]).reset_index(drop=True)


def test_devices_give_each_worker_its_own_gpu_and_the_same_predictions(data, tmp_path):
    local = api.run(LBP, data, runs_dir=tmp_path / "local", jobs=1)
    per_gpu = api.run(LBP, data, runs_dir=tmp_path / "gpus", devices="cuda:0,cuda:1")
    assert not per_gpu.failed
    pd.testing.assert_frame_equal(predictions(per_gpu), predictions(local))
    seen = fold_tags(tmp_path / "gpus", record.Tag.WORKER_DEVICE)
    assert len(seen) == 6 and set(seen.values()) == {"0", "1"}  # each worker saw only its own GPU, both worked
    workers = fold_tags(tmp_path / "gpus", record.Tag.WORKER)
    assert len(set(workers.values())) == 2  # one process per device
    assert set(fold_tags(tmp_path / "local", record.Tag.WORKER).values()) == {None}  # folds run in this process


def test_submitit_local_executor_gives_the_local_predictions(data, tmp_path):
    pytest.importorskip("submitit")
    local = api.run(LBP, data, runs_dir=tmp_path / "local", jobs=1)
    sub = api.run(LBP, data, runs_dir=tmp_path / "sub", launcher="submitit", cluster="local")
    assert not sub.failed, [r.error for r in sub.failed]
    pd.testing.assert_frame_equal(predictions(sub), predictions(local))
    logs = list((tmp_path / "sub" / "submitit").rglob("*_log.out"))
    assert len(logs) == 6  # one job per fold
    assert len(set(fold_tags(tmp_path / "sub", record.Tag.WORKER).values())) == 6
    again = api.run(LBP, data, runs_dir=tmp_path / "sub", launcher="submitit", cluster="local")
    assert all(r.skipped for r in again.results) and len(list((tmp_path / "sub" / "submitit").rglob("*_log.out"))) == 6


BOOM = """
from dataclasses import dataclass
import numpy as np
from ratspain_bench.methods import Method, Predictions

@dataclass(frozen=True)
class Config:
    image_size: int = 32

class Boom(Method):
    Config = Config
    family = "boom"
    def fit(self, train):
        if "c" not in set(train.subjects):
            raise ValueError("boom on the fold of rat c")
    def predict(self, test):
        return Predictions(np.zeros(len(test.images), int), np.zeros(len(test.images)))
"""


def test_a_failing_fold_job_fails_its_method_only(data, tmp_path, monkeypatch):
    pytest.importorskip("submitit")
    sub = tmp_path / "submissions" / "boom"
    sub.mkdir(parents=True)
    (sub / "submission.toml").write_text('name = "boom"\nentry_point = "method:Boom"\n')
    (sub / "method.py").write_text(BOOM)
    monkeypatch.setenv("RATSPAIN_SUBMISSIONS_DIR", str(tmp_path / "submissions"))
    monkeypatch.setenv("RATSPAIN_TRUST", "boom")  # trusted: its folds go to the launcher
    res = api.run(["boom", "lbp-r1p8-4x4"], data, runs_dir=tmp_path / "runs", launcher="submitit", cluster="local")
    assert [r.method for r in res.failed] == ["boom"] and "boom on the fold of rat c" in res.failed[0].error
    assert res.table.set_index("method").loc["lbp-r1p8-4x4", "status"] == "complete"


def test_launch_settings_errors():
    assert parse_devices("cuda:0, cuda:1") == ("cuda:0", "cuda:1")
    with pytest.raises(InputError, match="--devices 'gpu0'"):
        LaunchSettings(devices=("gpu0",))
    with pytest.raises(InputError, match="--launcher 'pbs'"):
        LaunchSettings(launcher="pbs")
    with pytest.raises(InputError, match="--devices is for --launcher local"):
        LaunchSettings(launcher="submitit", devices=("cuda:0",))
    with pytest.raises(InputError, match="unknown launch option"):
        api.launch_settings("submitit", partitions="gpu")
