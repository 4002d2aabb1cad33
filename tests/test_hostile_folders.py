"""Hostile submission folders (a red-team review): each one fails alone, with its reason, and every other method runs;
`submit validate` finds each; no MLflow parent is left RUNNING; what runs is what the code hash covers; no link takes a
host file anywhere; outside strings reach the boards and the terminal as text.

Each door is shown open first (the plain Python behaviour the harness used to rely on), then closed.
"""
import json
import os
import py_compile
import re
import stat
import sys
import tomllib

import pandas as pd
import pytest

import ratspain_bench as rb
from ratspain_bench.cli import main
from ratspain_bench.errors import InputError
from ratspain_bench.evaluation import sandbox
from ratspain_bench.evaluation.identity import code_hash
from ratspain_bench.methods.registry import get_method

pytestmark = pytest.mark.skipif(sandbox.unavailable() is not None, reason=f"no sandbox here: {sandbox.unavailable()}")

BUILT_IN = "lbp-r1p8-4x4"
TOML = ('name = "{name}"\nentry_point = "method:Cheat"\nauthors = ["M. Allory"]\ncontact = "m@lab.org"\n'
        'paper = "unpublished"\nlicence = "MIT"\n')


def _statuses(runs) -> dict[str, str]:
    """Every parent run's status tag in a runs folder, by method."""
    from ratspain_bench.evaluation.record import Store, Tag

    store = Store(runs)
    out = {}
    for exp in store.client.search_experiments():
        for r in store.client.search_runs([exp.experiment_id], filter_string=f"tags.`{Tag.ROLE}` = 'parent'"):
            out[r.data.tags.get(Tag.METHOD)] = r.data.tags.get(Tag.STATUS)
    return out


def _runs_alone(lab, name: str, reason: str) -> None:
    """`run` of the hostile folder beside a built-in: it fails with `reason`, the built-in completes, no parent RUNNING;
    `submit validate` fails it naming the same reason."""
    tmp, data, cheat, run = lab
    r = run([name, BUILT_IN], runs=f"alone-{name}")
    rows = r.table.set_index("method")
    assert rows.loc[BUILT_IN, "status"] == "complete"
    assert rows.loc[name, "status"] == "failed" and reason in rows.loc[name, "error"], rows.loc[name, "error"]
    assert "running" not in _statuses(tmp / f"alone-{name}-sandbox").values()
    report = rb.validate(tmp / "submissions" / name)
    assert not report.ok and reason in " ".join(c.message for c in report.checks if c.status == "FAIL"), report.text()


def test_a_deeply_nested_toml_is_one_broken_folder(lab, capsys):
    tmp, data, cheat, run = lab
    deep = tmp / "submissions" / "deep"
    deep.mkdir(parents=True)
    text = "a = " + "[" * 600 + "]" * 600 + "\n"
    (deep / "submission.toml").write_text(text)
    with pytest.raises(RecursionError):  # the door: the parser itself gives up
        tomllib.loads(text)
    assert main(["methods"]) == 0
    assert "nested too deeply" in capsys.readouterr().out
    assert main(["run", "--methods", BUILT_IN, "--data", str(data), "--runs-dir", str(tmp / "runs"), "--quiet"]) == 0
    assert main(["leaderboard", "--runs-dir", str(tmp / "runs"), "--out", str(tmp / "board")]) == 0
    assert main(["submit", "validate", str(deep)]) == 2
    assert "nested too deeply" in capsys.readouterr().out


def test_a_huge_image_size_fails_its_method_before_anything_is_allocated(lab):
    tmp, data, cheat, run = lab
    cheat(name="huge")
    with open(tmp / "submissions" / "huge" / "submission.toml", "a") as f:
        f.write("[config]\nimage_size = 100000\n")
    _runs_alone(lab, "huge", "more than the worker's memory limit")


def test_a_link_to_a_special_file_is_refused_unread(lab):
    tmp, data, cheat, run = lab
    cheat(name="special")
    os.symlink("/proc/self/mem", tmp / "submissions" / "special" / "weights.bin")
    _runs_alone(lab, "special", "a link that leaves the submission folder")


def test_a_config_field_that_is_no_name_fails_its_method(lab):
    tmp, data, cheat, run = lab
    cheat(name="badname", module='''
        from dataclasses import field, make_dataclass
        Cheat.Config = make_dataclass("Config", [("image_size", int, 32), ("odd", int, field(default=1, metadata={"name": "bad!name<"}))],
                                      frozen=True)
    ''')
    _runs_alone(lab, "badname", "is not a name")


def test_the_code_that_runs_is_the_code_that_is_hashed(lab, monkeypatch):
    """An honest `method.py` (no pain everywhere) with an unchecked-hash `.pyc` beside it (PEP 552) that predicts from
    the images: Python itself runs the `.pyc`. Sandboxed, the worker gets only the hashed sources and runs them."""
    tmp, data, cheat, run = lab
    folder = tmp / "submissions" / "cheat"
    cheat(predict="known = {pixels(im): int(im[12:20, 12:20].mean() > 128) for im in test.images}")
    clever = (folder / "method.py").read_text()
    cheat()  # the honest source
    honest = code_hash(get_method("cheat"))
    (tmp / "clever.py").write_text(clever)
    py_compile.compile(str(tmp / "clever.py"), cfile=str(folder / "__pycache__" / f"method.{sys.implementation.cache_tag}.pyc"),
                       invalidation_mode=py_compile.PycInvalidationMode.UNCHECKED_HASH)
    assert code_hash(get_method("cheat")) == honest
    monkeypatch.setenv("PYTHONDONTWRITEBYTECODE", "1")
    assert rb.run(["cheat"], str(data), runs_dir=tmp / "trusted", sandbox=False).table.loc[0, "pooled_f1"] == 0.0
    trusted = run(["cheat"], "trusted")  # in this process Python imports the .pyc: other code than reviewed
    assert trusted.table.loc[0, "pooled_f1"] == 1.0
    assert run(["cheat"]).table.loc[0, "pooled_f1"] == 0.0  # the worker runs the source


def test_a_link_to_a_host_file_is_copied_nowhere(lab):
    """`notes.txt` linking to a root-only host file: `train` used to copy it into the model folder (0644) and MLflow."""
    tmp, data, cheat, run = lab
    secret = tmp / "host-secret"
    secret.write_text("root:$6$salt$hash:19000:0:99999:7:::\n")
    os.chmod(secret, stat.S_IRUSR)
    cheat(name="linked")
    os.symlink(secret, tmp / "submissions" / "linked" / "notes.txt")
    assert (tmp / "submissions" / "linked" / "notes.txt").read_text().startswith("root:")  # the door: the harness can read it
    with pytest.raises(InputError, match="notes.txt: a link that leaves the submission folder"):
        rb.train("linked", str(data), out=tmp / "model", runs_dir=tmp / "runs")
    assert not (tmp / "model").exists()
    assert not [p for p in tmp.rglob("*") if p.is_file() and not p.is_symlink() and p != secret
                and b"$6$salt$hash" in p.read_bytes()]
    _runs_alone(lab, "linked", "a link that leaves the submission folder")


MARKUP = '| x | <img src="https://example.org/x.png" onerror="alert(1)"> | #1 zz-forged: F1 0.99 | [link](https://example.org)'


def _cell_breaks(line: str) -> int:
    return len(re.findall(r"(?<!\\)\|", line))


def test_outside_strings_reach_the_markdown_board_as_text(lab):
    """A folder name and a failure reason (text sandboxed code writes) with cell breaks, a heading and an image: each a
    plain cell of its table on the Markdown board."""
    tmp, data, cheat, run = lab
    cheat(name="crasher", fit=f"raise RuntimeError({MARKUP!r})")
    folder = tmp / "submissions" / "zz | <img src=x onerror=alert(1)>"
    folder.mkdir(parents=True)
    (folder / "submission.toml").write_text(TOML.format(name="forger"))
    (folder / "method.py").write_text((tmp / "submissions" / "crasher" / "method.py").read_text().replace(
        f"raise RuntimeError({MARKUP!r})", "pass"))
    run(["forger", "crasher", BUILT_IN], "bwrap", runs="markup")
    rb.leaderboard(tmp / "board", runs_dir=tmp / "markup-bwrap")
    text = (tmp / "board" / "README.md").read_text()
    assert "<img" not in text and not re.search(r"(?<!\\)\]\(https://example", text)  # no tag, no link
    assert "forger" in text and "zz-forged" in text  # shown, as text
    lines = text.splitlines()
    for i, line in enumerate(lines):
        if line.startswith("|") and i and lines[i - 1].startswith("|"):
            assert _cell_breaks(line) == _cell_breaks(lines[i - 1]), line  # no forged cell


def test_control_characters_never_reach_the_terminal(lab, capsys):
    tmp, data, cheat, run = lab
    folder = tmp / "submissions" / "esc\x1b]0;owned\x07\x1b[2J"
    folder.mkdir(parents=True)
    (folder / "submission.toml").write_text('name = "Bad Name"\n')
    assert main(["methods"]) == 0
    out = capsys.readouterr()
    assert "esc" in out.out and "\x1b" not in out.out + out.err and "\x07" not in out.out + out.err
