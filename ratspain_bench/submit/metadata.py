"""The `submission.toml` schema: required keys, their types, and what to write instead.

| key | kinds | type | rule |
|---|---|---|---|
| `name` | all | string | lowercase letters, digits, `-`, `_`, `.`; 2-64 characters; not a built-in method's name |
| `authors` | all | list of strings | at least one |
| `contact` | all | string | an e-mail address or an http(s) URL |
| `paper` | all | string | an http(s) URL, a DOI (`10.x/y` or `doi:...`), or `unpublished` |
| `licence` (or `license`) | all | string | an SPDX licence expression such as `MIT`, `Apache-2.0`, `CC-BY-4.0` (checked against the SPDX list) |
| `entry_point` | method | string | `module:Class`, `module.py` in the folder (or an installed module) |
| `kind` | optional | string | `method` (default) or `predictions` |
| `config` | method, optional | table | default values of Config fields |
| `search_space` | method, optional | table | ranges for `study tune` (see `ratspain_bench.study.space`) |
| `predictions` | predictions, optional | string | file name in the folder (default `predictions.csv`) |
| `dataset` | predictions, optional | string | the dataset name the predictions are for |
| `dataset_fingerprint` | predictions, to record | string | the fingerprint `ratspain-bench data check` prints for that dataset |
| `description`, `version`, `code`, `seed` | optional | string/int | shown with the run |
"""
from __future__ import annotations

import re
from pathlib import Path

from .checks import FAIL, PASS, WARN, Check

NAME_RE = re.compile(r"^[a-z0-9][a-z0-9._-]{1,63}$")
ENTRY_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*:[A-Za-z_][A-Za-z0-9_]*$")
EMAIL_RE = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
DOI_RE = re.compile(r"^(doi:\s*)?10\.\d{4,9}/\S+$", re.I)
KNOWN = {"kind", "name", "authors", "contact", "paper", "licence", "license", "entry_point", "config", "search_space",
         "predictions", "dataset", "dataset_fingerprint", "description", "version", "code", "seed"}


def is_spdx(expression: str) -> bool:
    """An SPDX licence expression of known identifiers (packaging's copy of the SPDX list)."""
    from packaging.licenses import InvalidLicenseExpression, canonicalize_license_expression

    try:
        canonicalize_license_expression(expression)
        return True
    except InvalidLicenseExpression:
        return False


def read(folder: Path) -> tuple[dict | None, Check]:
    from ..errors import InputError
    from ..methods.registry import read_submission_metadata

    path = Path(folder) / "submission.toml"
    if not path.is_file():
        return None, Check("metadata.file", FAIL, f"no submission.toml in {folder}",
                           "copy submissions/_template/submission.toml into the folder and edit it")
    try:
        return read_submission_metadata(folder), Check("metadata.file", PASS, f"{path} is valid TOML")
    except InputError as e:
        return None, Check("metadata.file", FAIL, str(e), "fix the TOML syntax (strings in double quotes, lists in [ ])")


def _key(meta: dict, key: str, example: str, validate) -> Check:
    name = f"metadata.{key}"
    if key not in meta:
        return Check(name, FAIL, f"missing required key {key!r}", f"add {example} to submission.toml")
    problem = validate(meta[key])
    if problem:
        return Check(name, FAIL, f"{key} = {meta[key]!r}: {problem}", f"write it as {example}")
    return Check(name, PASS, f"{key} = {meta[key]!r}")


def _string(rule, why):
    def check(v):
        if not isinstance(v, str) or not v.strip():
            return "must be a non-empty string"
        return None if rule(v.strip()) else why
    return check


def check_metadata(meta: dict, folder: Path, builtin_names=()) -> list[Check]:
    """One check per key; `builtin_names`: names the submission must not take."""
    folder = Path(folder)
    out = []
    kind = meta.get("kind", "method")
    if kind not in ("method", "predictions"):
        out.append(Check("metadata.kind", FAIL, f"kind = {kind!r}: unknown", 'write kind = "method" (code) or kind = "predictions" (a predictions.csv)'))
        kind = "method"
    out.append(_key(meta, "name", 'name = "my-method"', _string(NAME_RE.match, "use 2-64 lowercase letters, digits, '-', '_' or '.', starting with a letter or digit")))
    if out[-1].status == PASS and meta["name"] in builtin_names:
        out[-1] = Check("metadata.name", FAIL, f"name {meta['name']!r} is already a built-in method", "choose another name")

    def authors(v):
        if isinstance(v, str):
            return "must be a list of strings, not one string"
        if not isinstance(v, list) or not v or not all(isinstance(a, str) and a.strip() for a in v):
            return "must be a non-empty list of non-empty strings"
        return None

    out.append(_key(meta, "authors", 'authors = ["Ada Lovelace"]', authors))
    out.append(_key(meta, "contact", 'contact = "you@lab.org" (or a URL)',
                    _string(lambda v: bool(EMAIL_RE.match(v)) or v.startswith(("http://", "https://")), "must be an e-mail address or an http(s) URL")))
    out.append(_key(meta, "paper", 'paper = "https://doi.org/10.xxxx/yyyy" (or "unpublished")',
                    _string(lambda v: v.startswith(("http://", "https://")) or bool(DOI_RE.match(v)) or v.lower() == "unpublished",
                            "must be an http(s) URL, a DOI or \"unpublished\"")))
    lic_key = "licence" if "licence" in meta or "license" not in meta else "license"
    c = _key(meta, lic_key, 'licence = "Apache-2.0" (an SPDX identifier)', _string(is_spdx, "must be an SPDX licence identifier such as MIT or Apache-2.0"))
    out.append(Check("metadata.licence", c.status, c.message, c.fix))
    if kind == "method":
        def entry(v):
            if not isinstance(v, str) or not ENTRY_RE.match(v.strip()):
                return "must be \"module:Class\" (a Python module name, a colon, a class name)"
            module = v.split(":")[0]
            if not (folder / f"{module.replace('.', '/')}.py").is_file():
                import importlib.util

                try:
                    found = importlib.util.find_spec(module) is not None
                except (ImportError, ValueError):
                    found = False
                if not found:
                    return f"no {module.replace('.', '/')}.py in {folder} and no installed module {module!r}"
            return None

        out.append(_key(meta, "entry_point", 'entry_point = "method:MyMethod" (method.py in this folder, class MyMethod)', entry))
        cfg = meta.get("config", {})
        if not isinstance(cfg, dict):
            out.append(Check("metadata.config", FAIL, "config must be a table", "write [config] followed by NAME = value lines"))
        else:
            out.append(Check("metadata.config", PASS, f"[config] sets {', '.join(cfg) or 'nothing (the Config defaults are used)'}"))
        if "search_space" in meta:
            from ..errors import InputError
            from ..study.space import parse_space

            try:
                dims = parse_space(meta["search_space"], "search_space")
                out.append(Check("metadata.search_space", PASS, "; ".join(d.describe() for d in dims.values()) or "empty"))
            except InputError as e:
                out.append(Check("metadata.search_space", FAIL, str(e), "see the [search_space] examples in submissions/_template/submission.toml"))
        else:
            out.append(Check("metadata.search_space", WARN, "no [search_space]: `study tune` needs --space for this method",
                             "add a [search_space] table (see the template) so others can tune it"))
    else:
        pred = meta.get("predictions", "predictions.csv")
        if not isinstance(pred, str) or not (folder / pred).is_file():
            out.append(Check("metadata.predictions", FAIL, f"predictions file {pred!r} not found in {folder}",
                             "put predictions.csv in the folder (or name the file with predictions = \"file.csv\")"))
        else:
            out.append(Check("metadata.predictions", PASS, f"predictions file {pred}"))
    unknown = sorted(set(meta) - KNOWN)
    if unknown:
        out.append(Check("metadata.unknown_keys", WARN, f"unknown key(s) {', '.join(unknown)} are ignored",
                         f"check the spelling; known keys: {', '.join(sorted(KNOWN))}"))
    return out
