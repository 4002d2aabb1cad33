"""Every shell command of the README and the docs runs as written, or says why it cannot run here.

The commands are read from the ```bash blocks of README.md, CONTRIBUTING.md, SUBMITTING.md, SECURITY.md and
docs/*.md, and run one by one with bash in a scratch working folder that looks like a checkout (the
repository's Makefile, pyproject.toml, docs, benchmarks and tests linked in, a copy of submissions/, this
environment's .venv). The built-in replica there is a tiny one (3 rats) rendered into the scratch cache, so
`ratspain-bench run`, `make demo` and the studies take seconds. A command that needs a GPU or a cluster says
so at the end of its line (`# needs a GPU`, `# needs a cluster`; the hosted board's `# runs until stopped`, `# needs a
running server`, which tests/test_server.py runs) and is only checked to parse; the two
commands that are these tests (`make test`, `make test-all`) are not run again; servers (`mlflow ui`,
`make docs-serve`) are started, asked for a page, and stopped. The benchmarks' commands take minutes each, a few
commands half a minute of what other tests already run (`SLOW`), and a few are what another command or test runs
already (`SAME`): they are `slow` (`make test-all` runs them).
"""
from __future__ import annotations

import os
import re
import shlex
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / n for n in ("README.md", "CONTRIBUTING.md", "SUBMITTING.md", "SECURITY.md")] + sorted(
    p for p in (ROOT / "docs").glob("*.md") if "--8<--" not in p.read_text())
MARKS = ("# needs a GPU", "# needs a cluster", "# runs until stopped", "# needs a running server")  # tests/test_server.py runs these
ITSELF = {"make test": "these tests", "make test-all": "these tests and the slow ones"}
SERVERS = {"make docs-serve": 8000, "mlflow ui": 5000}
FIRST = ("ratspain-bench synth", "cp -r", "ratspain-bench run", "ratspain-bench train")  # what later commands use


def documented() -> list[tuple[str, str]]:
    """(page, command) for every line of every ```bash block, in page order, continuation lines joined."""
    out = []
    for page in PAGES:
        for block in re.findall(r"```bash\n(.*?)```", page.read_text(), re.S):
            for line in block.replace("\\\n", " ").splitlines():
                line = line.strip()
                if line and not line.startswith("#"):
                    out.append((page.relative_to(ROOT).as_posix(), line))
    return out


def bare(cmd: str) -> str:
    """The command without its trailing comment (a mark is kept: it is what says why a command is not run)."""
    return cmd if cmd.endswith(MARKS) else re.sub(r"\s+#\s.*$", "", cmd)


def ordered() -> list[tuple[str, str]]:
    """Each distinct command once; those that make what others use first, in page order otherwise."""
    seen, out = set(), []
    for page, cmd in documented():
        if bare(cmd) not in seen:
            seen.add(bare(cmd))
            out.append((page, bare(cmd)))
    rank = lambda c: next((i for i, p in enumerate(FIRST) if c[1].startswith(p)), len(FIRST))  # noqa: E731
    return sorted(out, key=rank)


COMMANDS = ordered()


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    """A scratch checkout: links to the repository's files, a copy of submissions/, a tiny built-in replica."""
    from ratspain_bench.data.synth import REPLICA_VERSION, generate_replica

    lab = tmp_path_factory.mktemp("checkout")
    for name in ("Makefile", "pyproject.toml", "mkdocs.yml", "mkdocs_hooks.py", "examples", "docs", "benchmarks", "tests", "baselines", "README.md",
                 "SECURITY.md", "SUBMITTING.md", "CONTRIBUTING.md", "CHANGELOG.md"):  # not leaderboard/: commands write one
        (lab / name).symlink_to(ROOT / name)
    (lab / ".venv").symlink_to(Path(sys.prefix))
    shutil.copytree(ROOT / "submissions", lab / "submissions")
    cache = lab / "cache"
    counts = {str(r): {"no_pain": 4, "moderate": 4} for r in (1, 2, 3)}
    generate_replica(cache / "replica" / f"v{REPLICA_VERSION}-seed0-256px", seed=0, size=64, counts=counts, low_confidence=1)
    env = {**os.environ, "RATSPAIN_CACHE_DIR": str(cache), "RATSPAIN_SECRETS_DIR": str(lab / "secrets"),
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}", "HF_HUB_OFFLINE": "1"}
    for k in ("MLFLOW_TRACKING_URI", "RATSPAIN_SUBMISSIONS_DIR", "RATSPAIN_TRUST", "VIRTUAL_ENV"):
        env.pop(k, None)
    return lab, env


def _predictions_entry(lab: Path) -> None:
    """`my-predictions/`, the prediction-only entry SUBMITTING.md validates: every labelled image of out/ called no pain."""
    import ratspain_bench as rb

    folder = lab / "my-predictions"
    if folder.exists():
        return
    ds = rb.load_dataset(lab / "out")
    folder.mkdir()
    pd.DataFrame({"image": ds.table["image"], "subject": ds.table["subject"], "y_pred": 0, "score": 0.5}).to_csv(
        folder / "predictions.csv", index=False)
    (folder / "submission.toml").write_text(
        'kind = "predictions"\nname = "all-no-pain"\nauthors = ["A. Tester"]\ncontact = "a@lab.org"\npaper = "unpublished"\n'
        f'licence = "MIT"\ndataset_fingerprint = "{ds.fingerprint}"\n')


def _serve(cmd: str, port: int, lab: Path, env: dict) -> None:
    """Start a server command, fetch its first page, stop it."""
    proc = subprocess.Popen(["bash", "-c", f"exec {cmd}"], cwd=lab, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1):
                    break
            except OSError:
                time.sleep(0.5)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=30) as r:
            assert r.status == 200
    finally:
        os.killpg(proc.pid, 15)
        proc.wait(timeout=30)


def _stale() -> bool:
    stamp = Path(sys.prefix) / ".installed"
    return not stamp.is_file() or stamp.stat().st_mtime < (ROOT / "pyproject.toml").stat().st_mtime


def test_every_command_is_run_or_marked():
    assert len(COMMANDS) > 20
    for page, cmd in COMMANDS:
        if cmd.endswith(MARKS):
            assert cmd.startswith(("ratspain-bench", "createdb", "mlflow server")), (page, cmd)


BENCHMARKS = ("make bench", "python benchmarks/", ".venv/bin/python benchmarks/")  # minutes each: run by `make test-all`
# Half a minute or more each, and what they do other tests do (test_runner, test_study, test_protocols): `make test-all`
# runs them, so `make test` stays within its time.
SLOW = ("ratspain-bench run --methods lbp-r3p8-4x4,timm:efficientnet_b0", "ratspain-bench run --methods painseeker --set",
        "ratspain-bench study sensitivity --finetune frozen", "ratspain-bench synth two-labs/", "ratspain-bench run --data two-labs/",
        "ratspain-bench detector ", "ratspain-bench frames --sidecar clips/videos.csv --faces detector:",
        "ratspain-bench predict m/ frames/manifest.csv --by subject,session --high",  # minutes; tests/test_detector.py, test_overlay.py
        "make demo", "mlflow ui",  # the demo's steps are documented commands of their own; test_servers runs an MLflow server
        "ratspain-bench synth held-out/",  # test_side_doors renders a hidden replica
        ".venv/bin/python -m pytest tests/",  # a test file of this suite, run again
        "ratspain-bench train --method painseeker --out ps/", "ratspain-bench predict ps/",  # test_model explains PainSeeker
        "ratspain-bench run --suite au --task au")  # run --task au --suite au, its arguments in the other order
SAME = {"ratspain-bench run --suite quick": "`ratspain-bench run` (quick is the default suite)",  # exact commands
        "ratspain-bench leaderboard --out leaderboard": "`ratspain-bench leaderboard`; test_leaderboard runs `--out`",
        "ratspain-bench methods --task au --format json": "test_au_task runs it",
        "ratspain-bench submit validate submissions/_template": "test_submit validates the template through the CLI"}


@pytest.mark.parametrize("page,cmd", [pytest.param(p, c, marks=[pytest.mark.slow] if c.startswith(BENCHMARKS + SLOW) or c in SAME else [])
                                      for p, c in COMMANDS], ids=[c for _, c in COMMANDS])
def test_documented_command(lab, page, cmd):
    lab, env = lab
    if cmd.endswith(MARKS):
        if cmd.startswith("ratspain-bench"):  # it parses, at least
            from ratspain_bench.cli import build_parser

            for part in cmd.split("#")[0].split("&&"):
                if part.strip().startswith("ratspain-bench"):
                    build_parser().parse_args(shlex.split(part)[1:])
        pytest.skip(f"{page}: {cmd.rsplit('# ', 1)[1]}")
    if cmd in ITSELF:
        pytest.skip(f"{page}: `{cmd}` runs {ITSELF[cmd]}")
    if cmd.startswith("make ") and _stale():  # make docs-serve too: it would reinstall from the scratch folder
        pytest.skip("the .venv is older than pyproject.toml: `make` would install again (into the scratch folder); "
                    "`make install` first, as `make test` does")
    server = next((port for prefix, port in SERVERS.items() if cmd.startswith(prefix)), None)
    if server is not None:
        return _serve(cmd, server, lab, env)
    if "my-predictions/" in cmd:
        _predictions_entry(lab)
    r = subprocess.run(["bash", "-c", cmd], cwd=lab, env=env, capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, f"{page}: `{cmd}` exited {r.returncode}\n{r.stdout[-2000:]}\n{r.stderr[-3000:]}"
