"""Checks of a method submission's code, each in a child process with time and memory limits.

1. import (time limit `import_timeout`): the module imports, the class is a `Method` with a dataclass
   `Config`, `[config]` and `[search_space]` name real fields;
2. run (time limit `time_limit`, memory limit `memory_mb` as RLIMIT_DATA, which counts the heap and
   private mappings but not shared libraries, so torch still loads): on a tiny replica (3 rats) the
   interface (fit/predict, Predictions shape, labels in {0,1}, probabilities in [0,1]), determinism
   (a second fit with the same seed predicts the same), and a full leave-one-rat-out smoke run.
   The data folder is renamed away after the images are loaded, so a method that reads the
   manifest (and the test labels in it) fails; `TestSet` itself carries no labels.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

from .checks import FAIL, SKIP, Check, Report

TINY_COUNTS = {"1": {"no_pain": 5, "moderate": 5}, "2": {"no_pain": 5, "moderate": 4, "severe": 1}, "3": {"no_pain": 4, "moderate": 6}}
PACKAGE_ROOT = Path(__file__).resolve().parents[2]


def make_tiny_replica(out: Path, seed: int = 0, size: int = 64) -> Path:
    """A 3-rat, 30-image replica (a blob dataset when the renderer is unavailable)."""
    try:
        from ..data.synth import generate_replica

        generate_replica(out, seed=seed, size=size, counts=TINY_COUNTS, jobs=1)
        return out
    except ImportError:
        return _blobs(out, size, seed)


def _blobs(root: Path, size: int, seed: int) -> Path:
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    (root / "images").mkdir(parents=True, exist_ok=True)
    rows = ["path,subject,level"]
    for s, counts in TINY_COUNTS.items():
        levels = [0] * counts.get("no_pain", 0) + [1] * counts.get("moderate", 0) + [2] * counts.get("severe", 0)
        for i, level in enumerate(levels):
            img = rng.integers(40, 90, (size, size, 3)).astype(np.uint8)
            c = size // 2 + int(rng.integers(-4, 5))
            img[c - 6:c + 6, c - 6:c + 6] = 220 if level else 10
            name = f"images/{s}_{i:02d}.png"
            Image.fromarray(img).save(root / name)
            rows.append(f"{name},{s},{level}")
    (root / "manifest.csv").write_text("\n".join(rows) + "\n")
    return root


def _limits(memory_mb: int):
    def apply() -> None:
        import resource

        if memory_mb > 0:
            limit = memory_mb * 1024 * 1024
            resource.setrlimit(resource.RLIMIT_DATA, (limit, limit))
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))

    return apply


def run_child(task: str, args: dict, timeout: float, memory_mb: int, work: Path) -> tuple[list[dict], str | None, str]:
    """(result lines, None or why it stopped early, output tail)."""
    result = work / f"{task}.jsonl"
    env = dict(os.environ, RATSPAIN_CACHE_DIR=str(work / "cache"), PYTHONPATH=os.pathsep.join(
        p for p in (str(PACKAGE_ROOT), os.environ.get("PYTHONPATH", "")) if p), PYTHONUNBUFFERED="1")
    cmd = [sys.executable, "-m", "ratspain_bench.submit.child", task, json.dumps(args), str(result)]
    proc = subprocess.Popen(cmd, cwd=work, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True, preexec_fn=_limits(memory_mb))
    stopped = None
    try:
        output, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        output, _ = proc.communicate()
        stopped = f"time limit of {timeout:.0f} s exceeded"
    if stopped is None and proc.returncode < 0:
        sig = -proc.returncode
        stopped = f"killed by signal {signal.Signals(sig).name}" + (" (out of memory?)" if sig == signal.SIGKILL else "")
    lines = []
    if result.is_file():
        for line in result.read_text(encoding="utf-8").splitlines():
            try:
                lines.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    if stopped is None and proc.returncode != 0 and not any(x.get("status") == FAIL for x in lines):
        stopped = f"exited with code {proc.returncode}"
    tail = "\n".join((output or "").strip().splitlines()[-8:])
    return lines, stopped, tail


def _collect(report: Report, lines: list[dict], stopped: str | None, tail: str, stage_fix: dict) -> bool:
    """Add the child's checks to the report; True when the child finished with no failure."""
    stage = None
    for x in lines:
        if "stage" in x:
            stage = x["stage"]
        else:
            report.add(x["check"], x["status"], x["message"], x.get("fix", ""))
    if stopped:
        name = {"import": "import", "data": "harness.data", "interface": "interface.fit", "determinism": "interface.determinism",
                "loro": "loro.smoke"}.get(stage or "", "import")
        detail = f"; last output: {tail.splitlines()[-1][:200]}" if tail else ""
        report.add(name, FAIL, f"stopped during {stage or 'start-up'}: {stopped}{detail}", stage_fix.get(stage or "", stage_fix["default"]))
        return False
    return not any(x.get("status") == FAIL for x in lines if "check" in x)


def check_code(report: Report, folder: Path, meta: dict, *, time_limit: float = 600, import_timeout: float = 120,
               memory_mb: int = 4096, seed: int = 0) -> None:
    folder = Path(folder).resolve()
    args = {"folder": str(folder), "entry_point": meta["entry_point"], "config": meta.get("config", {}) or {},
            "search_space": list((meta.get("search_space") or {}).keys()), "seed": seed}
    fixes = {"default": "make the module import quickly and the method fit the tiny dataset within the limits",
             "import": f"importing must take less than {import_timeout:.0f} s: do heavy work in fit(), not at import",
             "data": "the harness could not prepare the tiny dataset for this config (image_size?)",
             "interface": f"fit+predict on 20 tiny images must finish within {time_limit:.0f} s and {memory_mb} MiB",
             "determinism": f"fit+predict on 20 tiny images must finish within {time_limit:.0f} s and {memory_mb} MiB",
             "loro": f"the 3-fold smoke run must finish within {time_limit:.0f} s and {memory_mb} MiB "
                     "(set --time-limit/--memory-limit when validating a larger method)"}
    with tempfile.TemporaryDirectory(prefix="ratspain-validate-") as tmp:
        work = Path(tmp)
        lines, stopped, tail = run_child("import", args, import_timeout, memory_mb, work)
        if not _collect(report, lines, stopped, tail, fixes):
            for name in ("interface", "loro"):
                report.add(name, SKIP, "not run: the import checks failed")
            return
        data = make_tiny_replica(work / "tiny", seed=seed)
        lines, stopped, tail = run_child("run", {**args, "data": str(data), "work": str(work / "run")}, time_limit, memory_mb, work)
        ok = _collect(report, lines, stopped, tail, fixes)
        if not ok and not any(c.name.startswith("loro") for c in report.checks):
            report.add("loro", SKIP, "not run: the interface checks failed")


def builtin_names() -> set[str]:
    """Names of methods that are not submissions (a submission must not take them)."""
    from ..methods.registry import default_registry

    try:
        return {s.name for s in default_registry().specs() if not s.source.startswith("submission (")}
    except Exception:  # a broken plugin elsewhere must not block validation
        return set()


def registered_elsewhere(name: str, folder: Path) -> Check | None:
    from ..methods.registry import default_registry

    try:
        specs = default_registry().specs()
    except Exception:
        return None
    for s in specs:
        if s.name == name and s.source.startswith("submission (") and Path(s.source[len("submission ("):-1]).resolve() != Path(folder).resolve():
            return Check("metadata.name", FAIL, f"name {name!r} is already taken by {s.source}", "choose another name")
    return None
