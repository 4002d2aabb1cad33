"""Hyper-parameter search spaces: declared by a method, parsed from TOML or the command line.

Where `study tune` finds a method's space, first match wins:
1. `--space NAME=SPEC` on the command line (all of them replace the declared space);
2. a submission's `[search_space]` table in its `submission.toml`;
3. a `SEARCH_SPACE` dict on the method class or its `Config` class (same format as the TOML table),
   declared in the method's own file (the built-in families do so).

TOML format, one entry per config parameter (public names):
    C = { low = 0.001, high = 100.0, log = true }   # float (low/high floats), log scale
    k_high = { low = 1, high = 15 }                  # int (low/high ints), optional step
    pool = { choices = ["avg", "max"] }              # categorical
Command line: `NAME=LOW..HIGH`, `NAME=LOW..HIGH:log`, or `NAME=a,b,c` (choices).
"""
from __future__ import annotations

from dataclasses import dataclass
from ..errors import InputError

@dataclass(frozen=True)
class Dim:
    name: str
    kind: str  # float | int | categorical
    low: float | int | None = None
    high: float | int | None = None
    log: bool = False
    step: float | int | None = None
    choices: tuple = ()

    def suggest(self, trial):
        if self.kind == "categorical":
            return trial.suggest_categorical(self.name, list(self.choices))
        if self.kind == "int":
            return trial.suggest_int(self.name, int(self.low), int(self.high), step=int(self.step or 1), log=self.log)
        return trial.suggest_float(self.name, float(self.low), float(self.high), step=self.step, log=self.log)

    def describe(self) -> str:
        if self.kind == "categorical":
            return f"{self.name} in {{{', '.join(map(str, self.choices))}}}"
        scale = ", log" if self.log else ""
        step = f", step {self.step}" if self.step else ""
        return f"{self.name} in [{self.low}, {self.high}] ({self.kind}{scale}{step})"


def parse_dim(name: str, table, where: str = "search_space") -> Dim:
    """One TOML entry; raises InputError naming `where` and what to write instead."""
    example = f'{name} = {{ low = 0.01, high = 1.0, log = true }} or {name} = {{ choices = [1, 2, 3] }}'
    if not isinstance(table, dict):
        raise InputError(f"{where}.{name}: expected a table, e.g. {example}")
    unknown = set(table) - {"low", "high", "log", "step", "choices", "type"}
    if unknown:
        raise InputError(f"{where}.{name}: unknown key(s) {', '.join(sorted(unknown))} (use low/high/log/step or choices)")
    if "choices" in table:
        choices = table["choices"]
        if not isinstance(choices, list) or not choices:
            raise InputError(f"{where}.{name}: choices must be a non-empty list, e.g. {name} = {{ choices = [1, 2, 3] }}")
        for c in choices:
            if not isinstance(c, (str, int, float, bool)):
                raise InputError(f"{where}.{name}: choice {c!r} is not a string, number or boolean")
        return Dim(name, "categorical", choices=tuple(choices))
    if "low" not in table or "high" not in table:
        raise InputError(f"{where}.{name}: needs low and high (or choices), e.g. {example}")
    low, high = table["low"], table["high"]
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (low, high)):
        raise InputError(f"{where}.{name}: low and high must be numbers, got {low!r} and {high!r}")
    if low >= high:
        raise InputError(f"{where}.{name}: low ({low}) must be smaller than high ({high})")
    log = bool(table.get("log", False))
    if log and low <= 0:
        raise InputError(f"{where}.{name}: log = true needs low > 0, got {low}")
    step = table.get("step")
    kind = table.get("type") or ("int" if isinstance(low, int) and isinstance(high, int) and (step is None or isinstance(step, int)) else "float")
    if kind not in ("int", "float"):
        raise InputError(f"{where}.{name}: type must be int or float, got {kind!r}")
    if log and step:
        raise InputError(f"{where}.{name}: use either log or step, not both")
    return Dim(name, kind, low, high, log, step)


def parse_space(tables: dict, where: str = "search_space") -> dict[str, Dim]:
    if not isinstance(tables, dict):
        raise InputError(f"{where}: expected a table of parameter ranges")
    return {name: parse_dim(name, t, where) for name, t in tables.items()}


def _number(text: str):
    text = text.strip()
    try:
        return int(text)
    except ValueError:
        return float(text)


def parse_cli_dim(item: str) -> Dim:
    """`NAME=LOW..HIGH[:log]` or `NAME=a,b,c`."""
    name, sep, spec = item.partition("=")
    name, spec = name.strip(), spec.strip()
    if not sep or not name or not spec:
        raise InputError(f"--space {item!r}: expected NAME=LOW..HIGH, NAME=LOW..HIGH:log or NAME=a,b,c")
    if ".." in spec:
        rng, _, opt = spec.partition(":")
        lo, _, hi = rng.partition("..")
        try:
            table = {"low": _number(lo), "high": _number(hi)}
        except ValueError:
            raise InputError(f"--space {item!r}: LOW and HIGH must be numbers") from None
        if opt:
            if opt != "log":
                raise InputError(f"--space {item!r}: only ':log' may follow the range")
            table["log"] = True
        return parse_dim(name, table, "--space")
    values = []
    for v in spec.split(","):
        try:
            values.append(_number(v))
        except ValueError:
            values.append(v.strip())
    return Dim(name, "categorical", choices=tuple(values))


def declared_space(spec, sandbox=None) -> tuple[dict[str, Dim], str]:
    """(space, where it came from) for a registered method; empty when it declares none."""
    from ..evaluation.configure import declaration
    from ..evaluation.sandbox import SandboxSettings

    if spec.folder is not None and spec.meta.get("search_space"):
        toml = spec.folder / "submission.toml"
        return parse_space(spec.meta["search_space"], f"{toml} [search_space]"), str(toml)
    table = declaration(spec, "search_space", sandbox or SandboxSettings())
    if table:
        return parse_space(table, f"{spec.name} SEARCH_SPACE"), f"SEARCH_SPACE declared by {spec.name} ({spec.source})"
    return {}, ""


def check_against_config(names, params: dict, method: str, source: str) -> None:
    """Every searched or varied name (from `source`, e.g. `--param`) must be a config parameter of the method."""
    import difflib

    for name in names:
        if name not in params:
            near = difflib.get_close_matches(name, list(params), n=3)
            hint = f"; did you mean {', '.join(near)}?" if near else f"; its parameters: {', '.join(params)}"
            raise InputError(f"{method} has no parameter {name!r} ({source}){hint}")
