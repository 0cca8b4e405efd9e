"""A local pip wheelhouse for the offline lab, filled once with `pip download` (PyPI is reachable here).

The mirror serves it as a PEP 503 index, and the stand-in installer bundles its pip wheel.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterable
from pathlib import Path

from packaging.tags import Tag
from packaging.utils import canonicalize_name, parse_wheel_filename
from packaging.version import Version

PLATFORMS = ("manylinux2014_x86_64", "manylinux_2_17_x86_64")


class WheelhouseError(RuntimeError):
    """`pip download` could not fetch what the wheelhouse needs."""


def default_cache_dir() -> Path:
    """`$GPULAB_LAB_CACHE`, else `$XDG_CACHE_HOME/gpulab-lab`, else `~/.cache/gpulab-lab`."""
    if os.environ.get("GPULAB_LAB_CACHE"):
        return Path(os.environ["GPULAB_LAB_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "gpulab-lab"


def _wheels(dest: Path, package: str) -> dict[Path, tuple[Version, frozenset[Tag]]]:
    """`package`'s wheels in `dest`: their versions and tags."""
    found = {}
    for whl in dest.glob("*.whl"):
        name, version, _, tags = parse_wheel_filename(whl.name)
        if name == canonicalize_name(package):
            found[whl] = (version, tags)
    return found


def _has_wheel(dest: Path, package: str, python: str) -> bool:
    cp = "cp" + python.replace(".", "")
    return any(
        t.interpreter in (cp, "py3") or t.abi == "abi3"
        for _, tags in _wheels(dest, package).values()
        for t in tags
    )


def find_wheel(dest: Path, package: str) -> Path | None:
    """The newest wheel of `package` in `dest` (by version), or None."""
    wheels = _wheels(dest, package)
    return max(wheels, key=lambda w: wheels[w][0]) if wheels else None


def ensure(dest: Path, pythons: tuple[str, ...], packages: tuple[str, ...] = ("numpy", "pip")) -> Path:
    """Download binary wheels of `packages` for each Python version into `dest`; skip what is present."""
    dest.mkdir(parents=True, exist_ok=True)
    for python in pythons:
        missing = [p for p in packages if not _has_wheel(dest, p, python)]
        if missing:
            download(dest, missing, python)
    return dest


def download(dest: Path, packages: Iterable[str], python: str) -> None:
    """`pip download` binary wheels of `packages` (names or requirements) for CPython `python` on x86_64
    Linux into `dest`: what a machine that cannot reach an index installs from (the lab, the EE build)."""
    packages = list(packages)
    cmd = [
        sys.executable, "-m", "pip", "download", "--disable-pip-version-check", "--no-input",
        "--only-binary=:all:", "--python-version", python, "--implementation", "cp",
    ]  # fmt: skip
    for plat in PLATFORMS:
        cmd += ["--platform", plat]
    cmd += ["--dest", str(dest), *packages]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-5:]
        raise WheelhouseError(f"pip download of {packages} for Python {python} failed:\n" + "\n".join(tail))
