"""One fail-message shape across the roles: a message that fails a host, or warns about it, starts with the
host (`{{ inventory_hostname }}: `), then names the variable or file and says what to do. Failures inside a
block with a `rescue` are exempt: the rescue quotes them inside its own message, which carries the host."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import REPO

HOST = "{{ inventory_hostname }}: "
TASK_FILES = sorted((REPO / "roles").glob("*/tasks/*.yml"))


def messages(tasks: list[dict[str, Any]], rescued: bool = False) -> Iterator[tuple[str, str, bool]]:
    """(task name, message, quoted by a rescue) for every fail, assert and debug message, blocks included."""
    for task in tasks or []:
        for key in ("block", "rescue", "always"):
            yield from messages(task.get(key, []), rescued or (key == "block" and "rescue" in task))
        if "ansible.builtin.fail" in task:
            yield task["name"], str(task["ansible.builtin.fail"]["msg"]), rescued
        if "ansible.builtin.assert" in task:
            yield task["name"], str(task["ansible.builtin.assert"].get("fail_msg", "")), rescued
        if "ansible.builtin.debug" in task and "msg" in task["ansible.builtin.debug"]:
            # A debug message is checked only when it names the host.
            yield task["name"], str(task["ansible.builtin.debug"]["msg"]), True


def all_messages() -> list[tuple[str, str, str, bool]]:
    found = []
    for path in TASK_FILES:
        where = str(path.relative_to(REPO))
        found += [(where, *m) for m in messages(yaml.safe_load(path.read_text(encoding="utf-8")))]
    return found


def test_the_walk_finds_the_roles_failures() -> None:
    found = all_messages()
    assert {where.split("/")[1] for where, *_ in found} >= {"cuda_check", "miniconda", "dl_env", "host_lock"}
    assert sum(1 for *_, quoted in found if not quoted) >= 15


@pytest.mark.parametrize("path", TASK_FILES, ids=lambda p: str(p.relative_to(REPO / "roles")))
def test_every_failure_and_warning_starts_with_the_host(path: Path) -> None:
    wrong = []
    for where, name, text, quoted in all_messages():
        if where != str(path.relative_to(REPO)):
            continue
        names_host = "inventory_hostname" in text
        if (not quoted or names_host) and not text.startswith(HOST):
            wrong.append(f"{name}: {text[:90]!r}")
    assert wrong == [], "messages not shaped '{{ inventory_hostname }}: <variable>: <what to do>'"
