"""Shared pytest set-up: repo paths, the CI policy for containers, and the offline lab services."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
VENV_BIN = REPO / ".venv" / "bin"
IN_CI = os.environ.get("CI", "").lower() == "true"


def require_containers() -> None:
    """Containers are required: under CI=true their absence FAILS the test, elsewhere it skips it."""
    problem = None
    if shutil.which("podman") is None:
        problem = "podman is not installed (run scripts/test.sh, which installs it)"
    if problem:
        if IN_CI:
            pytest.fail(f"CI=true and {problem}: a missing container runtime is a failure, not a skip")
        pytest.skip(problem)


def tool_env() -> dict[str, str]:
    """Environment for tools run from tests: the venv first on PATH, our podman settings, no colour."""
    from gpulab.lab.podman import podman_env

    env = podman_env()
    env["PATH"] = f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}"
    env["NO_COLOR"] = "1"
    env["ANSIBLE_FORCE_COLOR"] = "0"
    env["PY_COLORS"] = "0"
    return env


@pytest.fixture(scope="session")
def lab_services(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """Start the offline lab services once per session: mirror with stand-in installers and wheelhouse.

    Returns the environment variables that Molecule scenarios read (GPULAB_LAB_MIRROR_URL, GPULAB_LAB_ROOT).
    """
    from gpulab.lab.services import LabServices

    root = tmp_path_factory.mktemp("lab")
    with LabServices(root=root, cache_dir=REPO / ".cache" / "gpulab-lab") as services:
        yield services.environ()
