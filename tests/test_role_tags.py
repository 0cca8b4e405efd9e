"""One tag dialect across the three roles: any phase tag of a role also runs its preflight (and the
phases that phase needs), so `--tags cuda_check_select` or `--tags dl_env_install` never skip what they
depend on. Asked of ansible-playbook itself (`--list-tasks --tags X`), for every phase tag each role's
tasks/main.yml uses."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.conftest import REPO, VENV_BIN, repo_ansible_env

ROLES = ("cuda_check", "miniconda", "dl_env")
# What a phase needs besides preflight (cuda_check's select reads the probe; its record reads both).
NEEDS = {"cuda_check_select": ("probe",), "cuda_check_record": ("probe", "select")}


def phase_tags(role: str) -> list[str]:
    """Every `<role>_<phase>` tag in the role's tasks/main.yml, nested blocks included."""
    found: set[str] = set()

    def walk(tasks: list[dict[str, object]]) -> None:
        for task in tasks:
            tags = task.get("tags", [])
            tags = tags if isinstance(tags, list) else [tags]
            found.update(str(t) for t in tags if str(t).startswith(role + "_"))
            walk(task.get("block", []))  # type: ignore[arg-type]

    walk(yaml.safe_load((REPO / "roles" / role / "tasks" / "main.yml").read_text()))
    return sorted(found)


def listed_tasks(tmp_path: Path, role: str, tag: str) -> list[str]:
    book = tmp_path / "play.yml"
    play = {"name": "tags", "hosts": "localhost", "gather_facts": False, "roles": [f"gpulab.gpulab.{role}"]}
    book.write_text(yaml.safe_dump([play]))
    proc = subprocess.run(
        [str(VENV_BIN / "ansible-playbook"), "-i", "localhost,", str(book), "--list-tasks", "--tags", tag],
        env=repo_ansible_env(),
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return re.findall(rf"^\s+(?:gpulab\.gpulab\.)?{role} : (.+?)\s+TAGS:", proc.stdout, re.MULTILINE)


@pytest.mark.parametrize("role", ROLES)
def test_every_phase_tag_runs_the_preflight_and_what_the_phase_needs(role: str, tmp_path: Path) -> None:
    tags = phase_tags(role)
    assert len(tags) >= 4, tags
    for tag in tags:
        tasks = listed_tasks(tmp_path, role, tag)
        assert any(t.startswith("preflight |") for t in tasks), (tag, tasks)
        for phase in NEEDS.get(tag, ()):
            assert any(t.startswith(f"{phase} |") for t in tasks), (tag, phase, tasks)
