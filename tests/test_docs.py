"""The documentation: the MkDocs site builds in strict mode (a broken link, a missing page or anchor, an API object
that is gone fails), and the README stays short, with its relative links pointing at files that exist."""
import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
NEEDED = {"mkdocs": "mkdocs", "material": "mkdocs-material", "mkdocstrings_handlers.python": "mkdocstrings-python"}


def _missing() -> list[str]:
    out = []
    for module, dist in NEEDED.items():
        try:
            found = importlib.util.find_spec(module) is not None
        except ModuleNotFoundError:
            found = False
        if not found:
            out.append(dist)
    return out


def test_mkdocs_build_strict(tmp_path):
    missing = _missing()
    if missing:
        pytest.skip(f"the docs build needs {', '.join(missing)} (pip install mkdocs-material mkdocstrings-python)")
    out = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--quiet", "-d", str(tmp_path / "site")],
                         cwd=ROOT, capture_output=True, text=True, timeout=300, env={**os.environ, "NO_MKDOCS_2_WARNING": "1"})
    assert out.returncode == 0, out.stdout + out.stderr
    assert (tmp_path / "site" / "api" / "index.html").is_file()


def test_readme_is_at_most_250_lines():
    lines = README.read_text().count("\n")
    assert lines <= 250, f"README.md has {lines} lines; move detail into docs/"


def test_readme_relative_links_exist():
    text = README.read_text()
    targets = re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", text)
    missing = [t for t in targets if "://" not in t and not t.startswith("mailto:") and not (ROOT / t).exists()]
    assert not missing, missing


def _slug(heading: str) -> str:
    text = re.sub(r"[`*_\[\]()]", "", heading.strip().lower())
    return re.sub(r"\s+", "-", re.sub(r"[^\w\s-]", "", text))


def test_readme_anchors_into_the_docs_exist():
    links = re.findall(r"\]\((docs/[^)#\s]+\.md)#([^)\s]+)\)", README.read_text())
    missing = []
    for page, anchor in links:
        slugs = {_slug(h) for h in re.findall(r"^#+\s+(.*)$", (ROOT / page).read_text(), re.M)}
        if anchor not in slugs:
            missing.append(f"{page}#{anchor}")
    assert not missing, missing


def test_getting_started_holds_the_readmes_sections_as_they_are():
    """getting-started.md copies two README sections (GitHub shows no snippet markers' content): they stay equal."""
    readme, page = README.read_text(), (ROOT / "docs" / "getting-started.md").read_text()
    for name in ("demo", "python"):
        section = re.search(rf"<!-- --8<-- \[start:{name}\] -->\n(.*?)<!-- --8<-- \[end:{name}\] -->", readme, re.S).group(1)
        copy = re.search(rf"<!-- README.md's section \"{name}\",[^\n]*-->\n(.*?)<!-- end of README.md's section \"{name}\" -->",
                         page, re.S).group(1)
        assert copy == section, f"docs/getting-started.md: the README's section {name!r} changed; copy it again"


def test_no_page_under_docs_is_an_include_stub():
    """The root's SUBMITTING, SECURITY, CONTRIBUTING and CHANGELOG become pages through `mkdocs_hooks.py`: no stub file
    under docs/ reads as empty on GitHub."""
    stubs = [p.name for p in (ROOT / "docs").glob("*.md") if p.read_text().lstrip().startswith("--8<--")]
    assert not stubs, stubs
