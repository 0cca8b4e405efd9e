"""Calling podman with the settings that work on these machines (runc, lower ulimits)."""

from __future__ import annotations

import os
import shutil
import subprocess
from importlib import resources
from pathlib import Path


class PodmanError(RuntimeError):
    """podman is missing or a podman command failed; the message says which and how to fix it."""


def containers_conf() -> Path:
    """The containers.conf shipped with gpulab (runc + ulimits that podman can set here)."""
    return Path(str(resources.files("gpulab") / "data" / "containers.conf"))


def podman_env() -> dict[str, str]:
    """The environment for podman: ours unless the user already points CONTAINERS_CONF elsewhere."""
    env = dict(os.environ)
    env.setdefault("CONTAINERS_CONF", str(containers_conf()))
    return env


def require_podman() -> str:
    path = shutil.which("podman")
    if path is None:
        raise PodmanError(
            "podman is not installed; install it with: apt-get install -y podman runc (see README)"
        )
    return path


def podman(*args: str, check: bool = True, timeout: float | None = 600, stdin: str | None = None) -> str:
    """Run `podman ARGS...` and return stdout; raise PodmanError with podman's own words on failure.

    `stdin` is written to podman's standard input (`podman exec -i`): the way secrets reach a container,
    never on a command line.
    """
    exe = require_podman()
    proc = subprocess.run(
        [exe, *args],
        capture_output=True,
        text=True,
        env=podman_env(),
        check=False,
        timeout=timeout,
        input=stdin,
    )
    if check and proc.returncode != 0:
        msg = (proc.stderr or proc.stdout).strip().splitlines()
        detail = msg[-1] if msg else f"exit code {proc.returncode}"
        raise PodmanError(f"podman {args[0]} failed: {detail}")
    return proc.stdout
