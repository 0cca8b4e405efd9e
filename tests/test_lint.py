"""The project's lint gates, run as tests so the suite fails when any of them fails."""

from __future__ import annotations

import subprocess

import pytest

from tests.conftest import REPO, VENV_BIN, tool_env


def _run(argv: list[str], timeout: float = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        argv, cwd=REPO, env=tool_env(), capture_output=True, text=True, timeout=timeout, check=False
    )


@pytest.mark.slow
def test_ansible_lint_production_profile() -> None:
    proc = _run([str(VENV_BIN / "ansible-lint"), "--profile", "production", "--offline", "--nocolor", "-q"])
    assert proc.returncode == 0, f"ansible-lint failed:\n{proc.stdout[-6000:]}\n{proc.stderr[-3000:]}"


def test_yamllint() -> None:
    proc = _run([str(VENV_BIN / "yamllint"), "--strict", "."])
    assert proc.returncode == 0, f"yamllint failed:\n{proc.stdout[-6000:]}"


def test_ruff() -> None:
    proc = _run([str(VENV_BIN / "ruff"), "check", "."])
    assert proc.returncode == 0, f"ruff failed:\n{proc.stdout[-6000:]}"


def test_mypy_strict_driver() -> None:
    proc = _run([str(VENV_BIN / "mypy")])
    assert proc.returncode == 0, f"mypy failed:\n{proc.stdout[-6000:]}"
