"""A method's full configuration (every parameter, public names) from its profile and overrides.

Trusted methods are asked in this process (their Config class); outside methods in a sandboxed worker
(`outside.describe`), so their code never runs here; their answers are kept in the cache, keyed by the
method's code hash. Either way an unknown or ill-typed parameter is an InputError naming the method,
raised before any work starts.
"""
from __future__ import annotations

import dataclasses
import json

from ..errors import InputError
from ..methods.base import config_params, public_name
from ..methods.registry import MethodSpec
from ..paths import atomic_write_text
from .outside import describe
from .sandbox import SandboxSettings

_DESCRIBED: dict[tuple, dict] = {}


def _key(params: dict) -> tuple:
    return tuple(sorted((k, str(v)) for k, v in params.items()))


def _disk(spec: MethodSpec, code: str):
    """Where an outside method's descriptions are kept between runs: keyed by its code, so an edit asks again."""
    import hashlib

    from ..paths import cache_dir

    return cache_dir() / "describe" / f"{hashlib.sha1(spec.name.encode()).hexdigest()[:8]}-{code}.json"


def _outside(spec: MethodSpec, profile, sets: list[dict], settings: SandboxSettings) -> tuple[list[dict], dict]:
    """(the full config of each set, the method's declarations), described once per code in its sandbox."""
    from .identity import code_hash

    code = code_hash(spec)
    me = (spec.name, code)  # in this process too, an edited method is asked again
    if (me, "info") not in _DESCRIBED:
        try:
            saved = json.loads(_disk(spec, code).read_text())
            if "tasks" not in saved["info"]:  # described by an older harness: ask again
                raise KeyError("tasks")
            _DESCRIBED[(me, "info")] = saved["info"]
            _DESCRIBED.update({(me, p, tuple(map(tuple, k))): c for p, k, c in saved["configs"]})
        except (OSError, ValueError, KeyError, TypeError):
            pass
    todo = [s for s in sets if (me, profile, _key(s)) not in _DESCRIBED]
    if todo or (me, "info") not in _DESCRIBED:
        info = describe(spec, profile, todo or [{}], settings)
        info.pop("seconds", None)
        _DESCRIBED[(me, "info")] = info
        for s, c in zip(todo, info["configs"]):
            _DESCRIBED[(me, profile, _key(s))] = c
        configs = [[k[1], k[2], c] for k, c in _DESCRIBED.items() if k[0] == me and k[1] != "info"]
        atomic_write_text(_disk(spec, code), json.dumps({"info": info, "configs": configs}, default=str))
    return [_DESCRIBED[(me, profile, _key(s))] for s in sets], _DESCRIBED[(me, "info")]


def configure_many(spec: MethodSpec, profile: str | None, overrides: list[dict], settings: SandboxSettings = SandboxSettings(),
                   errors: str = "raise") -> list[dict]:
    """Full params for each set of overrides (on top of the spec's own params). A bad set raises an InputError
    naming the method, or with `errors="return"` gives {"error": message} in its place."""
    if spec.trusted:
        out = []
        for o in overrides:
            try:
                out.append(config_params(spec.checked_config(profile, **o)))
            except InputError as e:
                if errors == "raise":
                    raise
                out.append({"error": str(e).removeprefix(f"{spec.name}: ")})
        return out
    out = _outside(spec, profile, [{**dict(spec.params), **o} for o in overrides], settings)[0]
    for c in out:
        if errors == "raise" and "error" in c and len(c) == 1:
            raise InputError(f"{spec.name}: {c['error']}")
    return out


def configure(spec: MethodSpec, profile: str | None, overrides: dict | None = None, where_declared: dict | None = None,
              settings: SandboxSettings = SandboxSettings()) -> dict:
    """Full params: profile, the spec's params, `where_declared` settings the method has, then `overrides`."""
    extra = {}
    if where_declared:
        names = declared_names(spec, settings)
        extra = {k: v for k, v in where_declared.items() if k in names}
    return configure_many(spec, profile, [{**extra, **(overrides or {})}], settings)[0]


def declared_names(spec: MethodSpec, settings: SandboxSettings = SandboxSettings()) -> set[str]:
    """The method's config parameters (public names)."""
    if spec.trusted:
        return {public_name(f) for f in dataclasses.fields(spec.load().Config)}
    return set(_outside(spec, None, [{}], settings)[1]["fields"])


def declaration(spec: MethodSpec, name: str, settings: SandboxSettings = SandboxSettings()) -> dict:
    """A class-level declaration (`search_space`, `sensitivity_grid`) of the method; {} when it has none."""
    if spec.trusted:
        cls = spec.load()
        attr = {"search_space": "SEARCH_SPACE", "sensitivity_grid": "SENSITIVITY_GRID"}[name]
        return dict(getattr(cls, attr, {}) or getattr(cls.Config, attr, {}) or {})
    value = _outside(spec, None, [{}], settings)[1].get(name) or {}
    return value if isinstance(value, dict) else {}


def supported_tasks(spec: MethodSpec, settings: SandboxSettings = SandboxSettings()) -> tuple[str, ...]:
    """The tasks the method declares (`Method.tasks`; `binary` only when it declares none)."""
    if spec.trusted:
        return tuple(getattr(spec.load(), "tasks", ("binary",)))
    return tuple(_outside(spec, None, [{}], settings)[1].get("tasks") or ("binary",))


def require_task(spec: MethodSpec, task: str, settings: SandboxSettings = SandboxSettings()) -> None:
    """An InputError naming the method when it does not support `task`."""
    tasks = supported_tasks(spec, settings)
    if task not in tasks:
        raise InputError(f"{spec.name}: does not support the {task} task (it declares tasks = {', '.join(tasks)}); "
                         f"methods for it: `ratspain-bench methods --task {task}`")


def registered_hash(spec: MethodSpec, profile: str | None) -> str:
    """`config_hash` of the method's registered configuration for `profile` (no overrides): what the leaderboard
    ranks. Kept on disk per (method, its registry entry, profile, code), so reading it back imports no method code."""
    import hashlib

    from ..paths import cache_dir
    from .identity import code_hash, config_hash, module_sources

    if spec.trusted and isinstance(spec.target, str):  # its module's sources, read without importing them
        code = [(n, hashlib.sha1(f.read_bytes()).hexdigest()) for n, f in sorted(module_sources(spec.target.partition(":")[0]).items())]
    else:
        code = code_hash(spec)
    key = json.dumps([spec.name, spec.family, profile, list(spec.params), code], sort_keys=True, default=str)
    path = cache_dir() / "registered" / f"{hashlib.sha1(key.encode()).hexdigest()[:20]}.txt"
    try:
        return path.read_text().strip()
    except OSError:
        pass
    value = config_hash(spec.family, configure(spec, profile))
    atomic_write_text(path, value)
    return value
