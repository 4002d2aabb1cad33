"""Hyper-parameter search spaces: declared by a method, parsed from TOML or the command line.

Where `study tune` finds a method's space, first match wins:
1. `--space NAME=SPEC` on the command line (all of them replace the declared space);
2. a submission's `[search_space]` table in its `submission.toml`;
3. a `SEARCH_SPACE` dict on the method class or its `Config` class (same format as the TOML table);
4. the built-in spaces of the built-in families (`BUILTIN_SPACES`).

TOML format, one entry per config parameter (public names):
    C = { low = 0.001, high = 100.0, log = true }   # float (low/high floats), log scale
    k_high = { low = 1, high = 15 }                  # int (low/high ints), optional step
    pool = { choices = ["avg", "max"] }              # categorical
Command line: `NAME=LOW..HIGH`, `NAME=LOW..HIGH:log`, or `NAME=a,b,c` (choices).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..errors import InputError

# Built-in families. PainSeeker: the ranges of the paper's Figure 5 grid (lambda 0.05-1.5, delta
# 0.05-0.5, k_high 3-20), a little wider; k_high must stay below the number of regions K (49 for
# ResNet-18 at 224 px crops), a trial whose k_high is too large fails and the search goes on.
BUILTIN_SPACES: dict[str, dict[str, dict]] = {
    "painseeker": {"lambda": {"low": 0.01, "high": 2.0, "log": True}, "delta": {"low": 0.01, "high": 0.5},
                   "k_high": {"low": 1, "high": 20}},
    "lbp": {"C": {"low": 0.001, "high": 100.0, "log": True}},
    "timm": {"lr": {"low": 1e-5, "high": 1e-2, "log": True}, "weight_decay": {"low": 1e-5, "high": 0.1, "log": True}},
}


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


def submission_folder(spec) -> Path | None:
    """The folder of a submission-registered method (None for other sources)."""
    src = spec.source or ""
    if src.startswith("submission (") and src.endswith(")"):
        folder = Path(src[len("submission ("):-1])
        if (folder / "submission.toml").is_file():
            return folder
    return None


def declared_space(spec) -> tuple[dict[str, Dim], str]:
    """(space, where it came from) for a registered method; empty when it declares none."""
    folder = submission_folder(spec)
    if folder is not None:
        from ..methods.registry import read_submission_metadata

        meta = read_submission_metadata(folder)
        if meta.get("search_space"):
            return parse_space(meta["search_space"], f"{folder / 'submission.toml'} [search_space]"), f"{folder / 'submission.toml'}"
    cls = spec.load()
    for owner in (cls, getattr(cls, "Config", None)):
        table = getattr(owner, "SEARCH_SPACE", None) if owner is not None else None
        if table:
            return parse_space(dict(table), f"{owner.__qualname__}.SEARCH_SPACE"), f"{owner.__module__}.{owner.__qualname__}.SEARCH_SPACE"
    if spec.family in BUILTIN_SPACES:
        return parse_space(BUILTIN_SPACES[spec.family]), f"built-in space of the {spec.family} family"
    return {}, ""


def check_against_config(names, params: dict, method: str, source: str) -> None:
    """Every searched or varied name (from `source`, e.g. `--param`) must be a config parameter of the method."""
    import difflib

    for name in names:
        if name not in params:
            near = difflib.get_close_matches(name, list(params), n=3)
            hint = f"; did you mean {', '.join(near)}?" if near else f"; its parameters: {', '.join(params)}"
            raise InputError(f"{method} has no parameter {name!r} ({source}){hint}")
