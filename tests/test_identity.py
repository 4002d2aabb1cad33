"""The code identity of a method (`evaluation.identity.module_sources`): the files it covers, found without imports."""
import importlib.util
import subprocess
import sys
from pathlib import Path

from ratspain_bench import api
from ratspain_bench.evaluation import identity


def by_find_spec(name: str) -> Path | None:
    """The reference: Python's own lookup (which imports a dotted name's parent packages)."""
    try:
        spec = importlib.util.find_spec(name)
    except (ImportError, ValueError):
        return None
    origin = getattr(spec, "origin", None) if spec else None
    return Path(origin) if origin and origin.endswith(".py") else None


def test_module_sources_are_the_files_pythons_finder_gives(monkeypatch):
    modules = sorted({s.target.partition(":")[0] for s in api.list_methods(None) if isinstance(s.target, str)})
    assert "ratspain_bench.methods.painseeker" in modules
    got = {m: identity.module_sources(m) for m in modules}
    assert {"ratspain_bench.methods.base", "ratspain_bench.engine.augment"} <= set(got["ratspain_bench.methods.painseeker"])
    monkeypatch.setattr(identity, "_module_file", by_find_spec)
    assert got == {m: identity.module_sources(m) for m in modules}
    assert identity._module_file("ratspain_bench.methods.Method") is None  # a name imported from a module, not a module


def test_module_sources_import_nothing():
    code = ("import sys; from ratspain_bench.evaluation.identity import module_sources; "
            "files = module_sources('ratspain_bench.methods.painseeker'); "
            "print(len(files), sorted(m for m in ('torch', 'sklearn', 'timm', 'ratspain_bench.methods') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120).stdout.split(maxsplit=1)
    assert int(out[0]) > 10 and out[1].strip() == "[]"
