"""Every repository path the docs cite exists: README.md and docs/*.md never point at a missing file."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.conftest import REPO

DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
# Top-level entries of the repository a cited path can start with.
ROOTS = (
    ".ci/",
    "benchmarks/",
    "docs/",
    "inventory/",
    "molecule/",
    "playbooks/",
    "roles/",
    "scripts/",
    "src/",
    "templates/",
    "tests/",
)
ROOT_FILES = ("README.md", "pyproject.toml", "ansible.cfg", ".ansible-lint", ".yamllint")
_CODE = re.compile(r"`([^`\n]+)`")
_LINK = re.compile(r"\]\(([^)#\s]+)(?:#[^)]*)?\)")
# Placeholders and patterns, not paths: <host>, *.yml, {a,b}, …, $VAR.
_PATTERN = re.compile(r"[<>*{}…$\[\]]")
# Another repository named before a span on its line (`conda/conda` `tests/x.py`): the path is theirs.
_OURS = "|".join(root.rstrip("/") for root in ROOTS)
_OTHER_REPO = re.compile(rf"(?<![\w./-])(?!(?:{_OURS})/)[\w.-]+/[\w.-]+(?![\w/])")


def cited_paths(doc: Path, text: str | None = None) -> set[str]:
    """Repository-relative paths cited in `doc` (or in `text` as if it were `doc`): in code spans and in
    relative links."""
    text = doc.read_text(encoding="utf-8") if text is None else text
    found: set[str] = set()
    for line in text.splitlines():
        for match in _CODE.finditer(line):
            if _OTHER_REPO.search(line[: match.start()].replace("`", " ")):
                continue
            for word in match.group(1).split():
                word = word.rstrip(".,:;)").split(":", 1)[0]
                if _PATTERN.search(word):
                    continue
                if word.startswith(ROOTS) or word in ROOT_FILES or re.match(r"\.\./[\w.-]+/", word):
                    found.add(word)  # "../dir/..." leaves the repository: not there in a clone
    for target in _LINK.findall(_CODE.sub("", text)):
        if "://" in target or target.startswith("mailto:"):
            continue
        path = (doc.parent / target).resolve()
        found.add(str(path.relative_to(REPO)) if path.is_relative_to(REPO) else target)
    return found


def test_the_checker_finds_code_spans_and_links() -> None:
    paths = cited_paths(REPO / "docs" / "cli.md")
    assert "src/gpulab/cli.py" in paths and "docs/report-schema.md" in paths
    text = (
        "See `../shared/docs/facts.md`, `src/gone.py:12` and [x](nowhere.md).\n"
        "conda/conda has `tests/test_theirs.py`; a spec may say `-r ../x` or `foo[a](optional)`.\n"
    )
    paths = cited_paths(REPO / "docs" / "new.md", text)
    assert paths == {"../shared/docs/facts.md", "src/gone.py", "docs/nowhere.md"}


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: str(p.relative_to(REPO)))
def test_every_cited_path_exists(doc: Path) -> None:
    missing = sorted(
        p for p in cited_paths(doc) if p.startswith("../") or not (REPO / p.rstrip("/")).exists()
    )
    assert not missing, f"{doc.relative_to(REPO)} cites paths that are not in the repository: {missing}"
