"""Find the gpulab.gpulab collection and make Ansible find it (docs/collection.md).

The roles, playbooks and plugins are one Ansible collection, ``gpulab.gpulab``, in one of two places:

- a checkout: the repository root is the collection root (``galaxy.yml``). Ansible finds a collection
  only as ``<path>/ansible_collections/<namespace>/<name>``, so :func:`collections_dir` keeps the
  gitignored link ``.cache/collections/ansible_collections/gpulab/gpulab -> <repo root>`` (``ansible.cfg``
  has ``.cache/collections`` first in ``collections_path``);
- an installed wheel: ``gpulab/_collection/ansible_collections/gpulab/gpulab/`` (copied in by setup.py),
  already in that shape. Runs and state then go to a per-user state directory (:func:`work_dir`),
  never into site-packages.

``python -m gpulab.collection`` creates the checkout's link and prints the collections directory (for
Molecule or ``ansible-playbook`` run by hand before any ``gpulab`` run).
"""

from __future__ import annotations

import os
from pathlib import Path

from gpulab.errors import UsageError

NAMESPACE = "gpulab"
NAME = "gpulab"
FQCN = f"{NAMESPACE}.{NAME}"
_PACKAGE = Path(__file__).resolve().parent
# Where setup.py puts the collection inside the wheel.
PACKAGED = _PACKAGE / "_collection" / "ansible_collections" / NAMESPACE / NAME
LINK = Path(".cache") / "collections"


def is_collection(path: Path) -> bool:
    """A collection root: galaxy.yml (checkout, wheel) or MANIFEST.json (installed by ansible-galaxy)."""
    meta = (path / "galaxy.yml").is_file() or (path / "MANIFEST.json").is_file()
    return meta and (path / "playbooks").is_dir()


def checkout() -> Path | None:
    """The repository root when this package runs from a checkout (src/gpulab/ under it), else None."""
    root = _PACKAGE.parents[1]
    return root if is_collection(root) and (root / "src" / "gpulab").is_dir() else None


def root() -> Path:
    """The collection gpulab runs: the checkout's, else the one the wheel carries."""
    found = checkout() or (PACKAGED if is_collection(PACKAGED) else None)
    if found is None:
        raise UsageError(
            f"the {FQCN} collection is missing: neither a checkout around {_PACKAGE} nor {PACKAGED}"
            " (reinstall gpulab from its wheel, or set GPULAB_PROJECT_DIR to a checkout)"
        )
    return found


def installed(project: Path) -> bool:
    """True for a collection in the ``ansible_collections/<namespace>/<name>`` layout (wheel, galaxy)."""
    return project.parent.parent.name == "ansible_collections"


def user_state_dir() -> Path:
    """Per-user state (XDG Base Directory): ``$XDG_STATE_HOME/gpulab``, default ``~/.local/state/gpulab``."""
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base).expanduser() / "gpulab"


def work_dir(project: Path) -> Path:
    """Where runs, lab state and caches go: the project itself, or the per-user state directory when the
    project is an installed collection (site-packages is no place for them)."""
    return user_state_dir() if installed(project) else project


def _link(project: Path) -> Path:
    """Keep ``<project>/.cache/collections/ansible_collections/gpulab/gpulab -> <project>``; return
    ``<project>/.cache/collections``. Replaced atomically, so concurrent runs and test workers agree."""
    base = project / LINK
    link = base / "ansible_collections" / NAMESPACE / NAME
    if link.is_symlink() and link.resolve() == project.resolve():
        return base
    link.parent.mkdir(parents=True, exist_ok=True)
    tmp = link.with_name(f".{NAME}.{os.getpid()}")
    tmp.unlink(missing_ok=True)
    tmp.symlink_to(project.resolve(), target_is_directory=True)
    tmp.replace(link)
    return base


def collections_dir(project: Path | None = None) -> Path:
    """The directory to put first on ANSIBLE_COLLECTIONS_PATH so that ``gpulab.gpulab`` is ``project``'s
    collection (or, for a project that is no collection, e.g. a stand-in test project, gpulab's own)."""
    project = root() if project is None else project
    if not is_collection(project):
        return collections_dir(root())
    if installed(project):
        return project.parents[2]
    return _link(project)


def main() -> int:
    print(collections_dir())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
