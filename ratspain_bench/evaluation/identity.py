"""What makes a result: the dataset, the method's config, its code, the protocol and the seed.

A job (one fold of one method run) is identified by all five, and so are its folder, the predictions
file and the "already complete" check: changed code, another config or another dataset in a folder
of the same name can never reuse an old result. A task other than `binary` is part of it too, and so
are, for the `au` task, the AU grades it is scored on (`task_fingerprint`).

- `config_hash`: the family and every config parameter (public names, defaults included);
- `code_hash`: for a submission, every file of its folder that its worker gets (`folder_files`, copied by
  `snapshot`: what runs is what is hashed); for a built-in or plugin, the package
  version plus the source of the method's module and of every module of the same package it imports,
  transitively (so an edit to the engine a method uses changes its hash); and the protocol version;
- the dataset fingerprint (`Dataset.fingerprint`): labelled rows and image content;
- the protocol (`protocols`): another protocol than loro names itself in the job folders, the predictions file and
  the MLflow experiment and tags, so results of two protocols never mix.
"""
from __future__ import annotations

import ast
import atexit
import hashlib
import importlib.util
import json
import os
import re
import shutil
import stat
import tempfile
import time
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from ..errors import InputError
from ..protocols import PROTOCOL_VERSION, Fold, fold_digest

SKIP_PARTS = {"__pycache__", ".git", ".ipynb_checkpoints"}


def safe_name(name: str) -> str:
    """A name as one portable path component (`timm:resnet18` -> `timm_resnet18`)."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", str(name)).strip("._") or "_"


def config_hash(family: str, params: dict) -> str:
    payload = json.dumps({"family": family, **params}, sort_keys=True, default=str)
    return hashlib.sha1(payload.encode()).hexdigest()[:12]


def _module_file(name: str) -> Path | None:
    """The source file of module `name`, found without importing it or its packages (`find_spec` of a dotted name
    imports the parents, torch with some of ours): the top-level package is located, then the path under it."""
    top, _, rest = name.partition(".")
    try:
        spec = importlib.util.find_spec(top)
    except (ImportError, ValueError):
        return None
    if spec is None:
        return None
    if not rest:
        origin = spec.origin
        return Path(origin) if origin and origin.endswith(".py") else None
    for base in spec.submodule_search_locations or ():
        path = Path(base, *rest.split("."))
        for file in (path / "__init__.py", path.with_name(path.name + ".py")):  # a package first, as Python's finder
            if file.is_file():
                return file
    return None


def _imports(file: Path, module: str, package_root: str) -> set[str]:
    """Modules of `package_root` that `module` (at `file`) imports, absolute or relative."""
    tree = ast.parse(file.read_text(encoding="utf-8"), str(file))
    is_pkg = file.name == "__init__.py"
    parts = module.split(".")
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = parts[: len(parts) - node.level + (1 if is_pkg else 0)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            out.add(target)
            out |= {f"{target}.{a.name}" for a in node.names}
    return {m for m in out if m == package_root or m.startswith(package_root + ".")}


def module_sources(*modules: str) -> dict[str, Path]:
    """`modules` and every module of their top-level packages they import, transitively: {name: file}."""
    seen: dict[str, Path] = {}
    todo = list(modules)
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        file = _module_file(name)
        if file is None:
            continue
        seen[name] = file
        todo += _imports(file, name, name.split(".")[0])
    return seen


SKIP_SUFFIXES = (".pyc", ".pyo", ".tmp")  # compiled Python is never run from a folder (its source is); editor leftovers
MAX_FILES = 20_000


def folder_files(folder: Path) -> list[tuple[str, Path]]:
    """The files of a submission folder that its code hash covers and its worker gets, as (relative name, path),
    sorted. Skipped: `__pycache__/`, `.git/`, compiled Python (`*.pyc`, `*.pyo`: a worker imports only from source)
    and `*.tmp`. Refused with an InputError naming the file: a link that leaves the folder or leads to anything but
    a file inside it, a FIFO, socket or device, more than `MAX_FILES` files."""
    root = Path(folder).resolve()
    out = []
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        here = Path(dirpath)
        for d in list(dirnames):
            if d in SKIP_PARTS:
                dirnames.remove(d)
            elif (here / d).is_symlink():
                _inside(root, here / d)  # a folder link inside the folder: its files are listed where they are
                dirnames.remove(d)
        for name in filenames:
            path = here / name
            if name.endswith(SKIP_SUFFIXES):
                continue
            st = os.lstat(path)
            if stat.S_ISLNK(st.st_mode):
                target = _inside(root, path)
                if not target.is_file():
                    raise InputError(f"{path}: a link to something other than a file of the submission")
            elif not stat.S_ISREG(st.st_mode):
                raise InputError(f"{path}: not a regular file (a FIFO, socket or device); a submission holds files only")
            out.append((path.relative_to(root).as_posix(), path))
            if len(out) > MAX_FILES:
                raise InputError(f"{root}: more than {MAX_FILES:,} files")
    return sorted(out)


def _inside(root: Path, link: Path) -> Path:
    try:
        target = link.resolve(strict=True)
    except (OSError, RuntimeError):
        raise InputError(f"{link}: a broken or looping link") from None
    if target != root and root not in target.parents:
        raise InputError(f"{link}: a link that leaves the submission folder (to {target}); copy the file in instead")
    return target


def _private_dir() -> Path:
    """A folder of this process's (named like a worker's scratch, so a killed harness's is swept), removed at exit."""
    from .cgroup import owner

    folder = Path(tempfile.mkdtemp(prefix=f"ratspain-code-{owner()}-"))
    os.chmod(folder, 0o755)
    atexit.register(shutil.rmtree, folder, True)
    return folder


@dataclass(frozen=True)
class Snapshot:
    """A private, read-only copy of a submission folder's files (`folder_files`) and the digest of exactly those bytes."""

    path: Path
    digest: str


_SNAPSHOTS: dict[tuple, Snapshot] = {}


def snapshot(folder: Path) -> Snapshot:
    """The code a worker runs and the code hash covers, one and the same: the folder's files copied once (again when
    any of them changes) into a folder only this harness writes, hashed as they are copied."""
    files = folder_files(folder)
    sig = tuple((rel, st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino) for rel, st in ((r, os.stat(p)) for r, p in files))
    key = (str(Path(folder).resolve()), sig)
    hit = _SNAPSHOTS.get(key)
    if hit is not None and hit.path.is_dir():
        return hit
    dst = _private_dir()
    h = hashlib.sha1()
    for rel, src in files:
        data = src.read_bytes()
        h.update(f"{rel}\n".encode())
        h.update(data)
        target = dst / rel
        target.parent.mkdir(parents=True, exist_ok=True, mode=0o755)
        target.write_bytes(data)
        os.chmod(target, 0o644)
    newest = max((st[3] for st in (x[1:] for x in sig)), default=0)
    shot = Snapshot(dst, h.hexdigest())
    if time.time_ns() - newest > 2_000_000_000:  # settled: a write in the same clock tick would not show in the signature
        _SNAPSHOTS[key] = shot
    return shot


def _plugin_files(distribution: str, target: str) -> list[Path]:
    """An outside plugin's own files, found without importing it: its distribution's RECORD, else the files of
    the entry point's top-level module or package where the distribution lies."""
    from importlib.machinery import PathFinder
    from importlib.metadata import distribution as dist_of

    dist = dist_of(distribution)
    files = [Path(dist.locate_file(f)) for f in (dist.files or []) if str(f).endswith(".py")]
    if not files:
        found = PathFinder.find_spec(target.partition(":")[0].split(".")[0], [str(dist.locate_file(""))])
        if found is not None and found.origin:
            origin = Path(found.origin)
            files = sorted(origin.parent.rglob("*.py")) if origin.name == "__init__.py" else [origin]
    return sorted(f for f in files if f.is_file())


def code_hash(spec) -> str:
    """A digest of the code that computes `spec`'s predictions, with the protocol version (see the module doc)."""
    h = hashlib.sha1(f"protocol={PROTOCOL_VERSION}\n".encode())
    dist = spec.distribution or "ratspain_bench"
    try:
        h.update(f"{dist}={version(dist)}\n".encode())
    except PackageNotFoundError:
        pass
    if spec.folder is not None:
        h.update(snapshot(spec.folder).digest.encode())
        files = []
    elif not spec.trusted:  # an untrusted plugin: never imported here
        h.update(str(spec.target).encode())
        files = [(str(f), f) for f in _plugin_files(spec.distribution, str(spec.target))]
    else:
        targets = [spec.target.partition(":")[0]] if isinstance(spec.target, str) else []
        targets.append(spec.load().__module__)
        files = sorted(module_sources(*targets).items())
    for name, file in files:
        h.update(f"{name}\n".encode())
        h.update(file.read_bytes())
    return h.hexdigest()[:10]


def task_fingerprint(dataset, task: str = "binary") -> str:
    """The dataset's fingerprint for a task: for `au`, with the consensus AU grades the task is scored on."""
    if task == "binary":
        return dataset.fingerprint
    from ..tasks import AUS, au_column

    cols = [au_column(a) for a in AUS if au_column(a) in dataset.table.columns]
    grades = dataset.table[cols].to_csv(index=False, header=True)
    return hashlib.sha1(f"{dataset.fingerprint}|{task}|{grades}".encode()).hexdigest()[:16]


@dataclass(frozen=True)
class JobKey:
    """One (dataset, method config, code, seed, task): its job folders, predictions file and MLflow parent."""

    dataset: str
    fingerprint: str
    method: str
    config_hash: str
    code_hash: str
    seed: int
    task: str = "binary"
    protocol: str = ""  # `Protocol.key`: "" for loro (its results keep their paths)

    @property
    def _task_part(self) -> str:
        return ("" if self.task == "binary" else f"{self.task}-") + (f"{safe_name(self.protocol)}-" if self.protocol else "")

    def root(self, runs_dir) -> Path:
        return (Path(runs_dir) / "jobs" / f"{safe_name(self.dataset)}-{self.fingerprint}" / safe_name(self.method)
                / f"{self._task_part}{self.config_hash}-{self.code_hash}-seed{self.seed}")

    def fold_dir(self, runs_dir, fold: Fold) -> Path:
        """One folder per fold: its held-out subject and a digest of its rows (inner folds of nested LORO differ)."""
        return self.root(runs_dir) / f"{safe_name(fold.subject)}-{fold_digest(fold)}"

    def predictions_path(self, runs_dir) -> Path:
        return (Path(runs_dir) / "predictions" / f"{safe_name(self.dataset)}-{self.fingerprint}"
                / f"{safe_name(self.method)}__{self._task_part}{self.config_hash}-{self.code_hash}__seed{self.seed}.csv")
