"""The gpulab wheel carries the gpulab.gpulab collection (docs/collection.md).

build_py copies the collection's files into ``gpulab/_collection/ansible_collections/gpulab/gpulab/``,
where an installed gpulab finds its playbooks (gpulab.collection.PACKAGED). They are the files
``ansible-galaxy collection build`` packs: galaxy.yml's ``build_ignore`` is the one list of what is not
collection content. Everything else about the package is in pyproject.toml.
"""

from __future__ import annotations

import fnmatch
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import yaml
from setuptools import setup
from setuptools.command.build_py import build_py

ROOT = Path(__file__).resolve().parent
DEST = Path("gpulab", "_collection", "ansible_collections", "gpulab", "gpulab")


def collection_files(root: Path) -> Iterator[Path]:
    """Paths (relative to ``root``) of the collection's files, build_ignore applied as ansible-galaxy does:
    fnmatch patterns against each directory's and file's relative path."""
    patterns = yaml.safe_load((root / "galaxy.yml").read_text(encoding="utf-8"))["build_ignore"]

    def ignored(rel: str) -> bool:
        return any(fnmatch.fnmatch(rel, p) for p in patterns)

    for top, dirs, files in os.walk(root):
        base = Path(top).relative_to(root)
        dirs[:] = sorted(d for d in dirs if not ignored(str(base / d)))
        for name in sorted(files):
            rel = base / name
            if not ignored(str(rel)):
                yield rel


class BuildWithCollection(build_py):  # type: ignore[misc]
    def run(self) -> None:
        super().run()
        if getattr(self, "editable_mode", False):  # an editable install runs the checkout's collection
            return
        dest = Path(self.build_lib) / DEST
        shutil.rmtree(dest, ignore_errors=True)
        for rel in collection_files(ROOT):
            target = dest / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / rel, target)


setup(cmdclass={"build_py": BuildWithCollection})
