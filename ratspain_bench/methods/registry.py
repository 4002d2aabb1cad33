"""One typed registry of methods.

Sources, in order: built-in families (lazy `module:Class` targets, so listing methods never imports
torch), named configurations in `baselines/*.toml`, classes decorated with `@register`, installed
plugins (entry-point group `ratspain_bench.methods`), and folders under `submissions/`.
Parametric names resolve by family: `timm:<model>`, `painseeker:<model>`.
"""
from __future__ import annotations

import difflib
import importlib
import importlib.util
import os
import sys
import tomllib
from dataclasses import dataclass, replace
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any, Callable

from ..errors import InputError
from .base import Method, config_params, make_config

ENTRY_POINT_GROUP = "ratspain_bench.methods"
REPO_ROOT = Path(__file__).resolve().parents[2]

BUILTIN_FAMILIES = {
    "lbp": "ratspain_bench.methods.lbp_svm:LbpSvm",
    "timm": "ratspain_bench.methods.timm_linear:TimmLinear",
    "painseeker": "ratspain_bench.methods.painseeker:PainSeeker",
}
# `family:<value>` sets this parameter of the family's config
PARAMETRIC = {"timm": "model", "painseeker": "model"}


class DuplicateMethodError(ValueError):
    pass


class UnknownMethodError(InputError, KeyError):
    pass


@dataclass(frozen=True)
class MethodSpec:
    """A registered method: a family (its class) plus fixed parameters (public names)."""

    name: str
    family: str
    target: Any  # a Method subclass, "module:Class", or a zero-argument callable returning the class
    params: tuple[tuple[str, Any], ...] = ()
    source: str = "built-in"
    cite: str = ""

    def load(self) -> type[Method]:
        t = self.target
        if isinstance(t, str):
            module, _, attr = t.partition(":")
            t = getattr(importlib.import_module(module), attr)
        elif not isinstance(t, type):
            t = t()
        return t

    def config(self, profile: str | None = None, **overrides):
        """The frozen config: the class defaults, then the profile, then this spec's params, then overrides."""
        return make_config(self.load().Config, profile, **{**dict(self.params), **overrides})

    def checked_config(self, profile: str | None = None, **overrides):
        """`config`, with an unknown or ill-typed parameter reported as an InputError naming this method."""
        try:
            return self.config(profile, **overrides)
        except (KeyError, TypeError, ValueError) as e:
            raise InputError(f"{self.name}: {e.args[0] if e.args else e}") from None

    def build(self, profile: str | None = None, context=None, **overrides) -> Method:
        return self.load()(self.config(profile, **overrides), context)

    def with_params(self, **params) -> "MethodSpec":
        return replace(self, params=tuple({**dict(self.params), **params}.items()))

    def describe(self, profile: str | None = "quick") -> dict:
        try:
            params = config_params(self.config(profile))
        except Exception as e:  # a broken plugin must not break `methods`
            params = {"error": f"{type(e).__name__}: {e}"}
        return {"name": self.name, "family": self.family, "params": params, "source": self.source, "cite": self.cite}


class Registry:
    def __init__(self):
        self._specs: dict[str, MethodSpec] = {}
        self._families: dict[str, tuple[Any, str]] = {}

    def add_family(self, family: str, target, source: str = "built-in") -> None:
        if family in self._families:
            raise DuplicateMethodError(f"method family {family!r} is registered twice ({self._families[family][1]} and {source})")
        self._families[family] = (target, source)

    def add(self, spec: MethodSpec) -> None:
        if spec.name in self._specs:
            raise DuplicateMethodError(f"method {spec.name!r} is registered twice ({self._specs[spec.name].source} and {spec.source})")
        self._specs[spec.name] = spec

    def names(self) -> list[str]:
        return list(self._specs)

    def specs(self) -> list[MethodSpec]:
        return list(self._specs.values())

    def get(self, name: str) -> MethodSpec:
        if name in self._specs:
            return self._specs[name]
        family, sep, arg = name.partition(":")
        if sep and family in PARAMETRIC and family in self._families and arg:
            target, source = self._families[family]
            return MethodSpec(name, family, target, ((PARAMETRIC[family], arg),), source)
        candidates = self.names() + [f"{f}:<model>" for f in PARAMETRIC if f in self._families]
        near = difflib.get_close_matches(name, candidates, n=3, cutoff=0.5)
        hint = f"; did you mean {', '.join(near)}?" if near else "; run `ratspain-bench methods` for the list"
        raise UnknownMethodError(f"unknown method {name!r}{hint}")


# ---------------------------------------------------------------- sources

_decorated: list[MethodSpec] = []


def register(name: str | None = None, *, cite: str = "", **params) -> Callable[[type], type]:
    """Class decorator: register a Method subclass under `name` (default: its `family`)."""

    def wrap(cls: type) -> type:
        _decorated.append(MethodSpec(name or cls.family or cls.__name__.lower(), cls.family or (name or cls.__name__.lower()),
                                     cls, tuple(params.items()), f"registered in {cls.__module__}", cite))
        _default.clear()
        return cls

    return wrap


def baselines_dir() -> Path:
    return Path(os.environ.get("RATSPAIN_BASELINES_DIR", REPO_ROOT / "baselines"))


def load_baselines(registry: Registry, folder: Path) -> None:
    """Named configurations: each TOML table `[name]` has `family`, `cite` and parameters."""
    for path in sorted(folder.glob("*.toml")):
        for name, table in tomllib.loads(path.read_text()).items():
            table = dict(table)
            family, cite = table.pop("family"), table.pop("cite", "")
            target = registry._families[family][0]
            registry.add(MethodSpec(name, family, target, tuple(table.items()), f"built-in ({path.name})", cite))


def submission_dirs() -> list[Path]:
    """`submissions/` of the repository and of the current folder (once each)."""
    dirs = {REPO_ROOT / "submissions", Path.cwd() / "submissions"}
    extra = os.environ.get("RATSPAIN_SUBMISSIONS_DIR")
    if extra:
        dirs.add(Path(extra))
    return sorted(d.resolve() for d in dirs if d.is_dir())


def read_submission_metadata(folder: Path) -> dict:
    path = folder / "submission.toml"
    try:
        return tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as e:
        raise InputError(f"{path}: invalid TOML: {e}") from None


def submission_loader(folder: Path, entry_point: str) -> Callable[[], type]:
    """A lazy loader importing `module:Class` from a submission folder (the module is a file there)."""

    def load() -> type:
        module_name, _, attr = entry_point.partition(":")
        unique = f"ratspain_submission_{folder.name.replace('-', '_')}_{module_name.replace('.', '_')}"
        if unique not in sys.modules:
            spec = importlib.util.spec_from_file_location(unique, folder / f"{module_name.replace('.', '/')}.py")
            if spec is None or spec.loader is None:
                raise InputError(f"{folder}: cannot import {module_name}.py (entry_point {entry_point!r})")
            module = importlib.util.module_from_spec(spec)
            sys.modules[unique] = module
            sys.path.insert(0, str(folder))
            try:
                spec.loader.exec_module(module)
            finally:
                sys.path.remove(str(folder))
        return getattr(sys.modules[unique], attr)

    return load


def load_submissions(registry: Registry, root: Path, include_private: bool = False) -> None:
    """Each folder with a `submission.toml` (`name`, `entry_point`, `[config]`); `_`-prefixed folders are templates."""
    for folder in sorted(p for p in root.iterdir() if (p / "submission.toml").is_file()):
        if folder.name.startswith("_") and not include_private:
            continue
        meta = read_submission_metadata(folder)
        name = meta.get("name", folder.name)
        registry.add(MethodSpec(name, name, submission_loader(folder, meta["entry_point"]),
                                tuple(meta.get("config", {}).items()), f"submission ({folder})", meta.get("paper", "")))


def load_entry_points(registry: Registry) -> None:
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        dist = getattr(ep.dist, "name", "?")
        registry.add(MethodSpec(ep.name, ep.name, ep.value, (), f"plugin ({dist})"))


_default: list[Registry] = []


def default_registry() -> Registry:
    """The registry of everything installed and discovered (built once per process)."""
    if not _default:
        r = Registry()
        for family, target in BUILTIN_FAMILIES.items():
            r.add_family(family, target)
        if baselines_dir().is_dir():
            load_baselines(r, baselines_dir())
        for spec in _decorated:
            r.add(spec)
        load_entry_points(r)
        for root in submission_dirs():
            load_submissions(r, root)
        _default.append(r)
    return _default[0]


def get_method(name: str) -> MethodSpec:
    return default_registry().get(name)
