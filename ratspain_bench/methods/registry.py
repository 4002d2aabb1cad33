"""One registry of methods, fed by one mechanism for built-ins and plugins alike.

- **Families**: entry points of the group `ratspain_bench.methods` (`family = "module:Class"`). The
  built-in families (`lbp`, `timm`, `painseeker`) are declared in this project's own pyproject.toml,
  exactly as a plugin declares its own; a class declares everything else about itself in its file
  (Config and profiles, `SEARCH_SPACE`, `parametric`, `suites`, hooks). A family's name runs its
  defaults; a `parametric` family also answers `family:<value>` (e.g. `timm:efficientnet_b0`).
- **Named rows**: tables of `baselines/*.toml` (`paper.toml` first, then by name): `family`, `cite`,
  optional `suites`, and parameters.
- **Submissions**: folders with a `submission.toml` under `submissions/` (the repository's, the
  current folder's, `$RATSPAIN_SUBMISSIONS_DIR`). Discovery reads the TOML only; a broken folder is
  listed with its reason and never stops the others.

Built-in rows and families run in the harness's process; every other method is *outside* code and
runs sandboxed, one fold per process (`ratspain_bench.evaluation.sandbox`), unless it is trusted
(`RATSPAIN_TRUST=name,...`, or `trusted=` where the API takes it).
"""
from __future__ import annotations

import difflib
import importlib
import os
import re
import tomllib
from dataclasses import dataclass, field, replace
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

from ..errors import InputError
from .base import Method, config_params, make_config

ENTRY_POINT_GROUP = "ratspain_bench.methods"
OWN_DISTRIBUTION = "ratspain_bench"
REPO_ROOT = Path(__file__).resolve().parents[2]
NAME_RE = re.compile(r"^[a-z0-9][a-z0-9._-]{1,63}$")


class DuplicateMethodError(InputError, ValueError):
    pass


class UnknownMethodError(InputError, KeyError):
    pass


@dataclass(frozen=True)
class MethodSpec:
    """A registered method: a family (its class) plus fixed parameters (public names).

    `kind`: `built-in`, `plugin` or `submission`; `folder`: a submission's folder. `target` is a Method
    subclass or a lazy "module:Class" string (None for a submission: its code is never imported here).
    """

    name: str
    family: str
    target: Any
    params: tuple[tuple[str, Any], ...] = ()
    source: str = "built-in"
    cite: str = ""
    kind: str = "built-in"
    suites: tuple[str, ...] = ()
    folder: Path | None = None
    distribution: str = ""
    meta: dict = field(default_factory=dict, compare=False, hash=False)

    @property
    def outside(self) -> bool:
        """Code that is not part of ratspain_bench (a plugin or a submission)."""
        return self.kind != "built-in"

    @property
    def trusted(self) -> bool:
        """Runs in the harness's process: built-ins, and outside methods named in $RATSPAIN_TRUST."""
        return not self.outside or self.name in trusted_names() or (self.distribution and self.distribution in trusted_names())

    def load(self) -> type[Method]:
        """The method class. Imports its module: refused in the harness's process for untrusted outside code,
        which is imported only inside its sandboxed worker (where `allow_outside_code` is set)."""
        if not self.trusted and not _OUTSIDE_CODE_ALLOWED:
            raise InputError(f"{self.name}: outside code is imported only in its sandboxed worker "
                             "(name it in $RATSPAIN_TRUST to run it in this process)")
        t = self.target
        try:
            if self.folder is not None:
                t = load_from_folder(self.folder, self.meta["entry_point"])
            elif isinstance(t, str):
                module, _, attr = t.partition(":")
                t = getattr(importlib.import_module(module), attr)
        except SyntaxError as e:
            raise InputError(f"{self.name}: {Path(e.filename or '?').name}:{e.lineno}: syntax error: {e.msg}") from None
        except (ImportError, AttributeError) as e:
            raise InputError(f"{self.name}: cannot import {self.meta.get('entry_point') or t!r} ({type(e).__name__}: {e})") from None
        if not (isinstance(t, type) and issubclass(t, Method)):
            raise InputError(f"{self.name}: {self.meta.get('entry_point') or self.target!r} is not a "
                             "ratspain_bench.methods.Method subclass")
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
        tasks = None  # an outside method's are declared in its code, read in its sandbox when it runs
        if not self.trusted:  # its code never runs here: what its submission.toml sets, the rest are its Config's defaults
            params = dict(self.params)
        else:
            try:
                params = config_params(self.config(profile))
                tasks = list(self.load().tasks)
            except Exception as e:  # a broken plugin must not break `methods`
                params = {"error": f"{type(e).__name__}: {e}"}
        return {"name": self.name, "family": self.family, "params": params, "source": self.source, "cite": self.cite,
                "kind": self.kind, "sandboxed": not self.trusted, "tasks": tasks}


@dataclass(frozen=True)
class BrokenMethod:
    """An outside method that could not be registered, and why (shown by `methods`, never fatal)."""

    name: str
    source: str
    reason: str


_OUTSIDE_CODE_ALLOWED = False


def allow_outside_code() -> None:
    """Called by the sandboxed worker only: this process may import the outside method it runs."""
    global _OUTSIDE_CODE_ALLOWED
    _OUTSIDE_CODE_ALLOWED = True


def trusted_names() -> set[str]:
    return {n.strip() for n in os.environ.get("RATSPAIN_TRUST", "").split(",") if n.strip()}


class Registry:
    def __init__(self):
        self._specs: dict[str, MethodSpec] = {}
        self._families: dict[str, MethodSpec] = {}
        self.broken: list[BrokenMethod] = []

    def add_family(self, spec: MethodSpec) -> None:
        if spec.family in self._families:
            raise DuplicateMethodError(f"method family {spec.family!r} is registered twice "
                                       f"({self._families[spec.family].source} and {spec.source})")
        self._families[spec.family] = spec

    def add(self, spec: MethodSpec) -> None:
        """A named method; it may take its own family's name only when both are built in (`painseeker`)."""
        fam = self._families.get(spec.name)
        taken = self._specs.get(spec.name) or (fam if fam is not None and not (fam.family == spec.family and not fam.outside
                                                                               and not spec.outside) else None)
        if taken is not None:
            raise DuplicateMethodError(f"method {spec.name!r} is registered twice ({taken.source} and {spec.source})")
        self._specs[spec.name] = spec

    def names(self) -> list[str]:
        return list(self._specs) + [f for f in self._families if f not in self._specs]

    def specs(self) -> list[MethodSpec]:
        return [self.get(n) for n in self.names()]

    def families(self) -> list[MethodSpec]:
        return list(self._families.values())

    def get(self, name: str) -> MethodSpec:
        if name in self._specs:
            return self._specs[name]
        if name in self._families:
            return self._families[name]
        family, sep, arg = name.partition(":")
        fam = self._families.get(family)
        if sep and arg and fam is not None and fam.trusted:
            key = getattr(fam.load(), "parametric", None)
            if key:
                return replace(fam, name=name, params=((key, arg),), suites=())
        near = difflib.get_close_matches(name, self.names(), n=3, cutoff=0.5)
        hint = f"; did you mean {', '.join(near)}?" if near else "; run `ratspain-bench methods` for the list"
        broken = next((b for b in self.broken if b.name == name), None)
        if broken is not None:
            raise UnknownMethodError(f"method {name!r} is broken: {broken.reason} ({broken.source})")
        raise UnknownMethodError(f"unknown method {name!r}{hint}")

    def suites(self) -> dict[str, list[str]]:
        """Suite name -> member names, in registration order: named rows' `suites`, and a trusted family's
        class attribute `suites` for its own name. Outside methods cannot join a built-in suite."""
        members = [(s, s.suites) for s in self._specs.values()]
        for fam in self._families.values():
            if fam.name not in self._specs and fam.trusted:
                try:
                    members.append((fam, tuple(getattr(fam.load(), "suites", ()))))
                except InputError:
                    continue
        builtin = {s for spec, suites in members if not spec.outside for s in suites}
        out: dict[str, list[str]] = {}
        for spec, suites in members:
            for s in suites:
                if not (spec.outside and s in builtin):
                    out.setdefault(s, []).append(spec.name)
        return out

    def suite(self, name: str) -> list[str]:
        suites = self.suites()
        if name not in suites:
            near = difflib.get_close_matches(name, list(suites), n=3, cutoff=0.5)
            hint = f"; did you mean {', '.join(near)}?" if near else f"; suites: {', '.join(suites)}"
            raise InputError(f"unknown suite {name!r}{hint}")
        return suites[name]


# ---------------------------------------------------------------- sources


def baselines_dir() -> Path:
    return Path(os.environ.get("RATSPAIN_BASELINES_DIR", REPO_ROOT / "baselines"))


def load_baselines(registry: Registry, folder: Path) -> None:
    """Named configurations: each TOML table `[name]` has `family`, `cite`, optional `suites` and parameters."""
    for path in sorted(folder.glob("*.toml"), key=lambda p: (p.stem != "paper", p.name)):
        for name, table in tomllib.loads(path.read_text()).items():
            table = dict(table)
            family, cite, suites = table.pop("family"), table.pop("cite", ""), tuple(table.pop("suites", ()))
            fam = registry._families.get(family)
            if fam is None:
                raise InputError(f"{path}: [{name}] names family {family!r}, which is not registered")
            registry.add(MethodSpec(name, family, fam.target, tuple(table.items()), f"built-in ({path.name})", cite,
                                    suites=suites))


def load_entry_points(registry: Registry) -> None:
    """Every family of the entry-point group: ours (built-in) and other distributions' (plugins)."""
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        dist = getattr(ep.dist, "name", "") or ""
        own = dist.replace("-", "_").lower() == OWN_DISTRIBUTION
        spec = MethodSpec(ep.name, ep.name, ep.value, (), "built-in" if own else f"plugin ({dist})",
                          kind="built-in" if own else "plugin", distribution="" if own else dist)
        if not NAME_RE.match(ep.name):
            registry.broken.append(BrokenMethod(ep.name, spec.source, "entry-point name must be 2-64 lowercase letters, digits, - _ ."))
            continue
        try:
            registry.add_family(spec)
        except DuplicateMethodError as e:
            registry.broken.append(BrokenMethod(ep.name, spec.source, str(e)))


def submission_dirs() -> list[Path]:
    """`submissions/` of the repository and of the current folder, and $RATSPAIN_SUBMISSIONS_DIR (once each)."""
    dirs = {REPO_ROOT / "submissions", Path.cwd() / "submissions"}
    extra = os.environ.get("RATSPAIN_SUBMISSIONS_DIR")
    if extra:
        dirs.add(Path(extra))
    return sorted(d.resolve() for d in dirs if d.is_dir())


TOML_LIMIT = 256 * 1024  # a submission.toml larger than this is refused unread


def read_submission_metadata(folder: Path) -> dict:
    """A folder's submission.toml as a dict; InputError naming the file for one that is not a plain file of sane size,
    not UTF-8 TOML, or nested past what the parser can take (each a problem of this submission only)."""
    path = Path(folder) / "submission.toml"
    if path.is_symlink():
        raise InputError(f"{path}: a link; submission.toml must be a plain file")
    try:
        if path.stat().st_size > TOML_LIMIT:
            raise InputError(f"{path}: {path.stat().st_size:,} bytes, more than the limit of {TOML_LIMIT:,}")
        meta = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise InputError(f"{path}: invalid TOML: {e}") from None
    except RecursionError:
        raise InputError(f"{path}: invalid TOML: nested too deeply") from None
    except OSError as e:
        raise InputError(f"{path}: cannot be read ({e.strerror})") from None
    return meta


def submission_spec(folder: Path) -> MethodSpec:
    """A method folder as a spec, from its submission.toml alone; InputError saying what is wrong."""
    folder = Path(folder).resolve()
    meta = read_submission_metadata(folder)
    where = folder / "submission.toml"
    kind = meta.get("kind", "method")
    if kind == "predictions":
        raise InputError(f"{where}: a predictions-only entry (record it with `submit validate --record`), not a method")
    if kind != "method":
        raise InputError(f"{where}: kind = {kind!r}; expected \"method\" or \"predictions\"")
    name = meta.get("name", folder.name)
    if not isinstance(name, str) or not NAME_RE.match(name):
        raise InputError(f"{where}: name {name!r}: use 2-64 lowercase letters, digits, '-', '_' or '.'")
    entry = meta.get("entry_point")
    if not isinstance(entry, str) or ":" not in entry:
        raise InputError(f"{where}: entry_point missing or not \"module:Class\"")
    config = meta.get("config", {})
    if not isinstance(config, dict):
        raise InputError(f"{where}: [config] must be a table")
    return MethodSpec(name, name, None, tuple(config.items()), f"submission ({folder.name})", str(meta.get("paper", "")),
                      kind="submission", folder=folder, meta=meta)


def load_submissions(registry: Registry, root: Path, include_private: bool = False) -> None:
    """Each folder with a `submission.toml`; `_`-prefixed folders are templates. Broken folders are kept aside."""
    for folder in sorted(p for p in root.iterdir() if (p / "submission.toml").is_file()):
        if folder.name.startswith("_") and not include_private:
            continue
        try:
            spec = submission_spec(folder)
        except InputError as e:
            if "predictions-only entry" not in str(e):
                registry.broken.append(BrokenMethod(folder.name, f"submission ({folder.name})", str(e)))
            continue
        try:
            registry.add(spec)
        except DuplicateMethodError as e:
            registry.broken.append(BrokenMethod(spec.name, spec.source, str(e)))


def load_from_folder(folder: Path, entry_point: str) -> type:
    """Import `module:Class` from a submission folder (the module is a .py file there, or an installed module)."""
    import importlib.util
    import sys

    module_name, _, attr = entry_point.partition(":")
    file = Path(folder) / f"{module_name.replace('.', '/')}.py"
    if not file.is_file():
        return getattr(importlib.import_module(module_name), attr)
    import hashlib

    digest = hashlib.sha1(str(file.resolve()).encode() + file.read_bytes()).hexdigest()[:12]  # edited code is imported anew
    unique = f"ratspain_submission_{re.sub(r'[^A-Za-z0-9_]', '_', Path(folder).name)}_{module_name.replace('.', '_')}_{digest}"
    if unique not in sys.modules:
        spec = importlib.util.spec_from_file_location(unique, file)
        module = importlib.util.module_from_spec(spec)
        sys.modules[unique] = module  # dataclasses look their module up while it executes
        sys.path.insert(0, str(folder))
        try:
            spec.loader.exec_module(module)
        except BaseException:
            del sys.modules[unique]
            raise
        finally:
            sys.path.remove(str(folder))
    return getattr(sys.modules[unique], attr)


_default: list[Registry] = []


def default_registry() -> Registry:
    """The registry of everything installed and discovered (built once per process)."""
    if not _default:
        r = Registry()
        load_entry_points(r)
        if not any(not f.outside for f in r.families()):
            raise InputError("no built-in method families found: install the project (`pip install -e .`), "
                             "which declares them as entry points")
        if baselines_dir().is_dir():
            load_baselines(r, baselines_dir())
        for root in submission_dirs():
            load_submissions(r, root)
        _default.append(r)
    return _default[0]


def get_method(name: str) -> MethodSpec:
    return default_registry().get(name)
