"""Nothing imports upward: data and protocol, then features/engine, methods, evaluation, studies/leaderboard/
submissions, the API, the CLI (the README's Layout picture)."""
import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "ratspain_bench"
LAYERS = [
    {"errors", "paths", "tasks"},
    {"data", "protocol", "metrics", "metrics_au"},
    {"features", "engine", "attention", "plots"},
    {"methods"},
    {"evaluation"},
    {"study", "board", "submit", "model"},
    {"api"},
    {"cli", "__main__"},
]
LEVEL = {name: i for i, layer in enumerate(LAYERS) for name in layer}


def _top(module_file: Path) -> str:
    rel = module_file.relative_to(PACKAGE)
    return rel.parts[0].removesuffix(".py")


def _imported(file: Path) -> set[str]:
    """Top-level parts of ratspain_bench that a module imports (absolute or relative, at any depth in the file)."""
    rel = file.relative_to(PACKAGE).with_suffix("")
    parts = list(rel.parts) if rel.name != "__init__" else list(rel.parts[:-1]) + ["__init__"]
    out = set()
    for node in ast.walk(ast.parse(file.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level:
            base = parts[: len(parts) - node.level]
            target = base + (node.module.split(".") if node.module else [])
            names = target[:1] or [a.name for a in node.names]
            out |= set(names)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            mods = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
            out |= {m.split(".")[1] for m in mods if m.startswith("ratspain_bench.")}
            out |= {"__init__" for m in mods if m == "ratspain_bench"}
    return out


def test_no_module_imports_a_higher_layer():
    problems = []
    files = [f for f in PACKAGE.rglob("*.py") if f.name != "__init__.py" or f.parent != PACKAGE]
    for f in files:
        mine = LEVEL[_top(f)]
        for other in _imported(f):
            if other == "__init__" and _top(f) in ("cli",):
                continue  # the CLI prints the version
            if other in LEVEL and LEVEL[other] > mine:
                problems.append(f"{f.relative_to(PACKAGE)} imports {other}")
    assert not problems, problems
    assert set(LEVEL) >= {_top(f) for f in files}, "a new top-level module needs a layer"
