"""What a new user tripped over in their first hour, each fixed and guarded here (the items of the newcomer review)."""
import os
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
from PIL import Image
from tinydata import make_dataset

import ratspain_bench as rb
from ratspain_bench.cli import main
from ratspain_bench.errors import InputError
from ratspain_bench.evaluation import sandbox


# ---------------------------------------------------------------- 1. waiting is never billed to the method

HOLDER = """
import sys, time
from ratspain_bench.evaluation import sandbox
from ratspain_bench.methods.registry import get_method
w = sandbox.Worker(get_method("cheat"), "describe", {"profile": None, "param_sets": []}, sandbox.SandboxSettings("bwrap"))
w.arm()
print("armed", flush=True)
time.sleep(6)
w.close()
"""


@pytest.mark.skipif(sandbox.unavailable("bwrap") is not None, reason=f"no bubblewrap: {sandbox.unavailable('bwrap')}")
def test_waiting_for_the_sandbox_is_reported_apart_and_never_billed(lab, capsys):
    """Another harness holds the machine's sandbox (bubblewrap): the wait is said once, with who holds it and for how
    long, and no fold's time includes it."""
    tmp, data, cheat, run = lab
    cheat()
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, "ratspain-bench run --data lab"], stdout=subprocess.PIPE,
                              text=True, env=dict(os.environ))
    try:
        assert holder.stdout.readline().strip() == "armed"
        start = time.monotonic()
        r = run(["cheat"], "bwrap")
        waited = time.monotonic() - start
    finally:
        holder.wait(timeout=60)
    err = capsys.readouterr().err
    assert waited > 4.0
    assert f"held by pid {holder.pid}" in err and "waited" in err and "for the sandbox" in err
    from ratspain_bench.evaluation.record import Store

    parent = Store(tmp / "runs-bwrap").client.get_run(r.results[0].run_id)
    assert parent.data.metrics["train_seconds"] < 3.0, parent.data.metrics  # three trivial folds; the wait was 4+ s


# ---------------------------------------------------------------- 2. a method not ranked says so, in the main table


def test_an_unranked_method_says_so_and_sits_in_the_main_table(lab, capsys):
    tmp, data, cheat, run = lab
    cheat(predict="known = {pixels(im): int(im[12:20, 12:20].mean() > 128) for im in test.images}")
    (data / "provenance.json").write_text('{"labels_public": true}')
    assert main(["run", "--methods", "cheat,lbp-r1p8-4x4", "--data", str(data), "--runs-dir", str(tmp / "runs"), "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "cheat: not ranked: this dataset's labels are public" in out and "synth OUT --hidden" in out
    assert main(["leaderboard", "--runs-dir", str(tmp / "runs"), "--out", str(tmp / "board")]) == 0
    summary = capsys.readouterr().out
    assert "not ranked, above it: cheat (pooled F1 1.0000)" in summary
    readme = (tmp / "board" / "README.md").read_text()
    at = [readme.index(x) for x in ("## Results", "| not ranked ", "**Not ranked**",
                                    "- cheat: outside code on a dataset whose labels anyone can recompute", "- Cells are")]
    assert at == sorted(at)  # the row in the main table, its reason right under it, then the definitions
    html = (tmp / "board" / "index.html").read_text()
    assert 'class="unranked" title="not ranked: outside code on a dataset' in html


# ---------------------------------------------------------------- 3. a folder with no manifest


def test_a_replica_folder_without_its_manifest_is_named_as_such(tmp_path):
    folder = rb.synth(tmp_path / "out", seed=1, size=32, counts={r: {"no_pain": 2, "moderate": 2} for r in "123"}).parent
    (folder / "manifest.csv").unlink()
    with pytest.raises(InputError) as e:
        rb.load_dataset(folder)
    text = str(e.value)
    assert text.startswith(f"{folder}: no manifest.csv in {folder} (images/3 is not a level folder)")
    assert "SUBJECT/LEVEL" in text and "manifest .csv" in text and "subject(s)" not in text and "more" not in text


def test_a_missing_column_is_one_short_error(tmp_path):
    cols = [f"c{i}" for i in range(44)]
    (tmp_path / "manifest.csv").write_text(",".join(cols) + "\n" + ",".join("1" for _ in cols) + "\n")
    with pytest.raises(InputError) as e:
        rb.load_dataset(tmp_path)
    text = str(e.value)
    assert "missing column path, subject, level (or label)" in text and "(44 columns)" in text and "c40" not in text
    assert "subject(s)" not in text and "more" not in text  # no knock-on error


# ---------------------------------------------------------------- 4. --method and --methods


def test_method_and_methods_are_one_option(lab, capsys):
    tmp, data, cheat, run = lab
    assert main(["run", "--method", "lbp-r1p8-4x4", "--data", str(data), "--runs-dir", str(tmp / "r"), "--quiet"]) == 0
    capsys.readouterr()
    assert main(["train", "--methods", "lbp-r1p8-4x4,lbp-r1p8-8x8", "--data", str(data), "--out", str(tmp / "m")]) == 2
    assert "train takes one method" in capsys.readouterr().err
    assert main(["train", "--methods", "lbp-r1p8-4x4", "--data", str(data), "--out", str(tmp / "m"), "--runs-dir", str(tmp / "r")]) == 0


# ---------------------------------------------------------------- 6. paths that work from where the user stands


def test_the_board_names_the_store_as_it_was_given(lab, monkeypatch):
    from ratspain_bench.board.collect import shown_uri

    tmp, data, cheat, run = lab
    monkeypatch.chdir(tmp)
    rb.run(["lbp-r1p8-4x4"], str(data), runs_dir=tmp / "abs-runs")
    rb.leaderboard(tmp / "board", runs_dir=tmp / "abs-runs")
    assert f"mlflow ui --backend-store-uri sqlite:///{tmp}/abs-runs/mlflow.db" in (tmp / "board" / "README.md").read_text()
    assert shown_uri(f"sqlite:///{tmp}/rel/mlflow.db", "rel", base=tmp) == "sqlite:///rel/mlflow.db"


def test_score_latest_and_an_empty_argument(lab, capsys):
    tmp, data, cheat, run = lab
    rb.run(["lbp-r1p8-4x4"], str(data), runs_dir=tmp / "elsewhere")
    assert main(["score", "--latest", "lbp-r1p8-4x4", "--runs-dir", str(tmp / "elsewhere"), "--format", "md"]) == 0
    assert "lbp-r1p8-4x4" in capsys.readouterr().out
    assert main(["score", ""]) == 2
    assert "give a predictions file (PREDICTIONS.csv), or --latest METHOD" in capsys.readouterr().err
    assert main(["score", "--latest", "nothing-here", "--runs-dir", str(tmp / "elsewhere")]) == 2


# ---------------------------------------------------------------- 7. errors without clutter


def test_predict_names_the_file_that_is_no_image_and_leaves_no_csv_when_nothing_scored(lab, capsys):
    tmp, data, cheat, run = lab
    rb.train("lbp-r1p8-4x4", str(data), out=tmp / "m", runs_dir=tmp / "runs")
    bad = tmp / "bad"
    bad.mkdir()
    (bad / "a.png").write_bytes(b"not a png at all")
    Image.new("RGB", (8, 8)).save(bad / "b.png")
    out = tmp / "scores.csv"
    assert main(["predict", str(tmp / "m"), str(bad), "--out", str(out), "--quiet"]) == 0
    frame = pd.read_csv(out, keep_default_na=False)
    assert frame.set_index("image").loc[str(bad / "a.png"), "error"] == "ValueError: a.png: not an image PIL can read"
    (bad / "b.png").unlink()
    out.unlink()
    assert main(["predict", str(tmp / "m"), str(bad), "--out", str(out), "--quiet"]) == 2
    assert not out.exists() and not list(tmp.glob(".scores.csv.*"))
    assert "BytesIO" not in capsys.readouterr().err


# ---------------------------------------------------------------- 8. the boards and listings read right


def test_seeds_read_as_seeds_and_the_paper_is_cited_by_title(tmp_path):
    from ratspain_bench.board import cells, paper
    from ratspain_bench.board.table import Row

    one = Row(kind="method", label="x", method="x", seeds=("0",), pooled={}, pooled_std={}, per_subject={},
              mean_over_subjects={}, mean_over_subjects_std={}, confusion={}, ci={})
    assert cells.seeds_cell(one) == "seed 0"
    from dataclasses import replace

    assert cells.seeds_cell(replace(one, seeds=("0", "1", "2"))) == "3 seeds: 0, 1, 2"
    assert paper.SOURCE.startswith("PainSeeker: a head pose-invariant deep learning method") and "seeds/" not in paper.SOURCE


def test_methods_lists_a_submission_plainly(lab, capsys):
    tmp, data, cheat, run = lab
    cheat()
    assert main(["methods", "--pattern", "cheat"]) == 0
    line = next(x for x in capsys.readouterr().out.splitlines() if x.startswith("| cheat"))
    assert "declared in its code" in line and "(+ its Config's defaults)" in line and "runs sandboxed" in line
    assert "(its own)" not in line and "(sandboxed)=" not in line


def test_run_help_names_every_suite(capsys):
    with pytest.raises(SystemExit):
        main(["run", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    for suite in rb.suites():
        assert f"{suite} (" in text, suite


def test_a_one_parameter_study_figure_keeps_its_whole_title():
    """The title wraps to the figure's width instead of being cut at its edges."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    from ratspain_bench.study.report import draw_sensitivity

    rows = pd.DataFrame({"param": ["C"] * 3, "value": [0.1, 1, 10], "pooled_f1": [0.5, 0.6, 0.55]})
    title = "Sensitivity of lbp-r1p8-8x8 on ratspain-replica: pooled F1 under leave-one-rat-out, one panel per parameter"
    fig = draw_sensitivity(rows, title, defaults={"C": 1})
    box = fig._suptitle.get_window_extent(FigureCanvasAgg(fig).get_renderer())
    assert box.x0 >= 0 and box.x1 <= fig.bbox.width
    assert " ".join(fig._suptitle.get_text().split()).startswith(title)
