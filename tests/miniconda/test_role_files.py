"""The miniconda role's files beyond the shared contract (tests/test_role_contract.py): no lock of its own,
its choices, checksum data, task names, tags, commands and templates."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

ROLE = Path(__file__).resolve().parents[2] / "roles" / "miniconda"
PHASES = ("preflight", "install", "configure", "shell", "verify", "cleanup")


def _yaml(rel: str) -> Any:
    return yaml.safe_load((ROLE / rel).read_text())


@pytest.fixture(scope="module")
def defaults() -> dict[str, Any]:
    data: dict[str, Any] = _yaml("defaults/main.yml")
    return data


@pytest.fixture(scope="module")
def specs() -> dict[str, Any]:
    data: dict[str, Any] = _yaml("meta/argument_specs.yml")["argument_specs"]
    return data


def test_the_role_holds_no_lock_of_its_own(defaults: dict[str, Any], specs: dict[str, Any]) -> None:
    # The host lock is the host_lock role's, held by the playbooks around every role.
    assert not [name for name in defaults if "lock" in name]
    assert set(specs) == {"main", "cleanup"}
    assert not (ROLE / "tasks" / "lock.yml").exists() and not (ROLE / "tasks" / "unlock.yml").exists()


def test_flavor_and_install_mode_choices(specs: dict[str, Any]) -> None:
    assert specs["main"]["options"]["miniconda_flavor"]["choices"] == ["miniconda", "miniforge"]
    assert specs["main"]["options"]["miniconda_install_mode"]["choices"] == ["system", "user"]


def test_checksums_are_real_sha256_values_for_the_pinned_release(defaults: dict[str, Any]) -> None:
    checksums = defaults["miniconda_checksums"]
    assert set(checksums) == {"miniconda", "miniforge"}
    for flavor, versions in checksums.items():
        for version, arches in versions.items():
            for arch, digest in arches.items():
                assert re.fullmatch(r"[0-9a-f]{64}", digest), (flavor, version, arch)
                assert arch in {"x86_64", "aarch64"}
    assert "x86_64" in checksums[defaults["miniconda_flavor"]][defaults["miniconda_version"]]
    patterns = _yaml("vars/main.yml")["__miniconda_version_patterns"]
    for flavor, versions in checksums.items():
        for version in versions:
            assert re.fullmatch(patterns[flavor], version), (flavor, version)


def _tasks(path: Path) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    for task in yaml.safe_load(path.read_text()) or []:
        found.append(task)
        for key in ("block", "rescue", "always"):
            for sub in task.get(key, []):
                found.append(sub)
                for key2 in ("block", "rescue", "always"):
                    found.extend(sub.get(key2, []))
    return found


@pytest.mark.parametrize("phase", PHASES)
def test_task_files_name_every_task_with_their_prefix(phase: str) -> None:
    tasks = _tasks(ROLE / "tasks" / f"{phase}.yml")
    assert tasks
    for task in tasks:
        assert task.get("name", "").startswith(f"{phase} | "), task.get("name")
        module = next((k for k in task if k.startswith("ansible.")), None)
        if "block" not in task:
            assert module is not None, f"{task['name']}: use FQCN modules"


def test_main_outline_tags_every_phase() -> None:
    main = _tasks(ROLE / "tasks" / "main.yml")
    imports = [t for t in main if "ansible.builtin.import_tasks" in t]
    assert [t["ansible.builtin.import_tasks"] for t in imports] == [
        "preflight.yml",
        "install.yml",
        "configure.yml",
        "shell.yml",
        "verify.yml",
    ]
    block = next(t for t in main if "block" in t)
    assert "miniconda" in block["tags"]
    assert "miniconda" in imports[0]["tags"]
    for task in imports:
        phase = task["ansible.builtin.import_tasks"].removesuffix(".yml")
        assert f"miniconda_{phase}" in task["tags"], task


def test_commands_use_argv_and_declare_change() -> None:
    for phase in PHASES:
        for task in _tasks(ROLE / "tasks" / f"{phase}.yml"):
            cmd = task.get("ansible.builtin.command")
            if cmd is None:
                continue
            assert isinstance(cmd, dict) and "argv" in cmd, task["name"]
            assert "changed_when" in task or "creates" in cmd, task["name"]
            assert "ansible.builtin.shell" not in task


def test_templates_start_with_ansible_managed_and_have_no_timestamps() -> None:
    for template in (ROLE / "templates").glob("*.j2"):
        text = template.read_text()
        assert text.startswith("{{ ansible_managed | comment }}\n"), template.name
        assert "now(" not in text and "date_time" not in text, template.name
