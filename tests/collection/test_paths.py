"""gpulab.collection: which collection gpulab runs, the link that makes Ansible find it, where state goes."""

from __future__ import annotations

from pathlib import Path

import pytest

from gpulab import collection
from gpulab.runner import build_envvars, state_dir
from tests.conftest import REPO


def test_the_checkout_is_the_collection_and_its_link_points_at_it() -> None:
    assert collection.checkout() == REPO
    assert collection.root() == REPO
    base = collection.collections_dir(REPO)
    assert base == REPO / ".cache" / "collections"
    assert (base / "ansible_collections" / "gpulab" / "gpulab").resolve() == REPO
    assert collection.work_dir(REPO) == REPO


def test_a_stale_link_is_replaced(tmp_path: Path) -> None:
    project = tmp_path / "project"
    (project / "playbooks").mkdir(parents=True)
    (project / "galaxy.yml").write_text("namespace: gpulab\nname: gpulab\n")
    link = project / ".cache" / "collections" / "ansible_collections" / "gpulab" / "gpulab"
    link.parent.mkdir(parents=True)
    link.symlink_to(tmp_path)  # e.g. a checkout that moved
    assert collection.collections_dir(project) == project / ".cache" / "collections"
    assert link.resolve() == project.resolve()


def test_a_project_that_is_no_collection_gets_gpulabs_own(tmp_path: Path) -> None:
    (tmp_path / "playbooks").mkdir()  # a stand-in project: playbooks, no galaxy.yml
    assert collection.collections_dir(tmp_path) == REPO / ".cache" / "collections"


def test_an_installed_collection_is_used_in_place_and_state_goes_to_the_user(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tmp_path / "site" / "ansible_collections" / "gpulab" / "gpulab"
    (root / "playbooks").mkdir(parents=True)
    (root / "MANIFEST.json").write_text("{}")  # as ansible-galaxy installs it
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    monkeypatch.delenv("GPULAB_STATE_DIR", raising=False)
    assert collection.collections_dir(root) == tmp_path / "site"
    assert not (root / ".cache").exists()
    assert state_dir(root) == tmp_path / "state" / "gpulab" / "runs"


def test_the_driver_puts_the_collection_first_and_keeps_the_users_paths() -> None:
    env = build_envvars(REPO, {"PATH": "/usr/bin", "ANSIBLE_COLLECTIONS_PATH": "/opt/mine"})
    assert env["ANSIBLE_COLLECTIONS_PATH"].split(":") == [str(REPO / ".cache" / "collections"), "/opt/mine"]
    default = build_envvars(REPO, {"PATH": "/usr/bin"})["ANSIBLE_COLLECTIONS_PATH"].split(":")
    assert default[1:] == ["~/.ansible/collections", "/usr/share/ansible/collections"]
