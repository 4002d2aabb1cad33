"""MkDocs hook: the repository root's SUBMITTING.md, SECURITY.md, CONTRIBUTING.md and CHANGELOG.md are pages of the site,
read where they live (GitHub shows them there), so no copy or include stub under docs/ can drift or read as empty.
Their links into docs/ (right on GitHub) are made relative to the site, where these pages sit beside docs/' pages."""
from pathlib import Path

from mkdocs.structure.files import File

ROOT_PAGES = ("SUBMITTING.md", "SECURITY.md", "CONTRIBUTING.md", "CHANGELOG.md")


def on_files(files, config):
    root = Path(config["config_file_path"]).parent
    for name in ROOT_PAGES:
        text = (root / name).read_text(encoding="utf-8").replace("](docs/", "](")
        files.append(File.generated(config, name, content=text))
    return files
