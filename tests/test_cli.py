"""The command line's face: --version, --debug anywhere, no abbreviations, an example in every --help,
one-line errors, and outputs written where asked."""
import argparse

import pytest
from tinydata import make_dataset

from ratspain_bench import __version__
from ratspain_bench.cli import build_parser, main


def _subparsers(parser):
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield name, sub
                yield from ((f"{name} {n}", s) for n, s in _subparsers(sub))


def test_version(capsys):
    with pytest.raises(SystemExit) as e:
        main(["--version"])
    assert e.value.code == 0 and capsys.readouterr().out.strip() == f"ratspain-bench {__version__}"


def test_every_command_has_examples_debug_and_no_abbreviations():
    parser = build_parser()
    names = []
    for name, sub in _subparsers(parser):
        names.append(name)
        help_text = sub.format_help()
        assert "examples:\n  ratspain-bench" in help_text, name
        assert "--debug" in help_text, name
        assert sub.allow_abbrev is False, name
    assert {"synth", "data check", "methods", "run", "score", "leaderboard", "study sensitivity", "study tune", "submit validate"} <= set(names)


def test_the_same_commands_as_before():
    (action,) = [a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction)]
    assert list(action.choices) == ["synth", "data", "methods", "protocols", "run", "score", "leaderboard", "study", "submit", "train",
                                   "predict", "frames", "detector", "groups", "serve", "server"]


def test_debug_after_the_subcommand_and_before(capsys):
    assert main(["methods", "--debug", "--pattern", "lbp-r1*"]) == 0
    assert main(["--debug", "methods", "--pattern", "lbp-r1*"]) == 0
    assert "lbp-r1p8-4x4" in capsys.readouterr().out


def test_abbreviated_option_is_refused(capsys):
    with pytest.raises(SystemExit) as e:
        main(["run", "--meth", "lbp-r1p8-4x4"])  # --methods (also --method) is the option: no abbreviation slips in
    assert e.value.code == 2 and "--meth" in capsys.readouterr().err


def test_errors_are_one_line_and_debug_shows_the_traceback(tmp_path, capsys):
    assert main(["score", str(tmp_path / "missing.csv")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no such predictions file" in err
    from ratspain_bench.errors import InputError

    with pytest.raises(InputError):
        main(["score", str(tmp_path / "missing.csv"), "--debug"])


def test_leaderboard_writes_under_the_runs_folder_unless_asked(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("RATSPAIN_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    data = make_dataset(tmp_path / "data")
    assert main(["run", "--data", str(data), "--methods", "lbp-r1p8-4x4", "--quiet"]) == 0
    assert main(["leaderboard", "--resamples", "50"]) == 0
    assert (tmp_path / "ratspain-runs" / "leaderboard" / "index.html").is_file() and not (tmp_path / "leaderboard").exists()
    assert main(["leaderboard", "--resamples", "50", "--out", "board", "--mlflow-ui", "http://mlflow.lab:5000/"]) == 0
    page = (tmp_path / "board" / "index.html").read_text()
    assert 'href="http://mlflow.lab:5000/#/experiments/' in page and "127.0.0.1:5000/#" not in page
