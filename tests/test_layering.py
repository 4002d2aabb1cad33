"""Nothing imports upward: data and protocol, then features/engine, methods, evaluation, studies/leaderboard/
submissions/models/video, the API, the hosted leaderboard, the CLI (the architecture picture in the docs); and no module imports itself
through others (no import circle)."""
import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "ratspain_bench"
LAYERS = [
    {"errors", "paths", "tasks"},
    {"data", "protocols", "metrics", "metrics_au"},
    {"features", "engine", "attention", "plots"},
    {"methods"},
    {"evaluation"},
    {"study", "board", "submit", "model", "video"},
    {"api"},
    {"server"},
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


def _module_name(file: Path) -> str:
    rel = file.relative_to(PACKAGE.parent).with_suffix("")
    parts = list(rel.parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _module_imports(file: Path, modules: set[str]) -> set[str]:
    """The package's modules that `file` imports, at any depth in the file (function-level imports included);
    `from pkg import name` counts as pkg.name when that is a module, else as pkg."""
    me = _module_name(file)
    base = me.split(".") if file.name == "__init__.py" else me.split(".")[:-1]
    out = set()
    for node in ast.walk(ast.parse(file.read_text())):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            root = ".".join(base[: len(base) - node.level + 1] + ([node.module] if node.module else [])) if node.level \
                else node.module or ""
            targets = [f"{root}.{a.name}" if f"{root}.{a.name}" in modules else root for a in node.names]
        else:
            continue
        for t in targets:
            while t and t not in modules:
                t = t.rpartition(".")[0]
            if t and t != me:
                out.add(t)
    return out


def test_no_import_circle():
    """No module imports, directly or through others, a module that imports it (lazy imports inside functions too)."""
    files = {_module_name(f): f for f in PACKAGE.rglob("*.py")}
    graph = {m: _module_imports(f, set(files)) - {"ratspain_bench"} for m, f in files.items()}
    state, stack, circles = {}, [], []

    def visit(m):
        state[m] = 1
        stack.append(m)
        for n in sorted(graph[m]):
            if state.get(n) == 1:
                circles.append(stack[stack.index(n):] + [n])
            elif n not in state:
                visit(n)
        stack.pop()
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m)
    assert not circles, [" -> ".join(c) for c in circles]
