"""A local pip wheelhouse for the offline lab, filled once with `pip download` (PyPI is reachable here).

The mirror serves it as a PEP 503 index, and the stand-in installer bundles its pip wheel.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterable
from pathlib import Path

PLATFORMS = ("manylinux2014_x86_64", "manylinux_2_17_x86_64")


class WheelhouseError(RuntimeError):
    """`pip download` could not fetch what the wheelhouse needs."""


def default_cache_dir() -> Path:
    """`$GPULAB_LAB_CACHE`, else `$XDG_CACHE_HOME/gpulab-lab`, else `~/.cache/gpulab-lab`."""
    if os.environ.get("GPULAB_LAB_CACHE"):
        return Path(os.environ["GPULAB_LAB_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "gpulab-lab"


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "_", name).lower()


def _has_wheel(dest: Path, package: str, python: str) -> bool:
    tag = "cp" + python.replace(".", "")
    for whl in dest.glob("*.whl"):
        parts = whl.name[:-4].split("-")
        if len(parts) < 5 or _norm(parts[0]) != _norm(package):
            continue
        py_tags = parts[-3].split(".")
        if tag in py_tags or any(t in ("py3", "py2.py3") for t in py_tags) or "abi3" in parts[-2]:
            return True
    return False


def find_wheel(dest: Path, package: str) -> Path | None:
    """The newest wheel of `package` in `dest` (by version), or None."""
    found = [w for w in dest.glob("*.whl") if _norm(w.name.split("-")[0]) == _norm(package)]

    def key(w: Path) -> tuple[int, ...]:
        return tuple(int(p) if p.isdigit() else 0 for p in w.name.split("-")[1].split("."))

    return max(found, key=key) if found else None


def ensure(
    dest: Path, pythons: Iterable[str] = ("3.11", "3.13"), packages: Iterable[str] = ("numpy", "pip")
) -> Path:
    """Download binary wheels of `packages` for each Python version into `dest`; skip what is present."""
    dest.mkdir(parents=True, exist_ok=True)
    packages = tuple(packages)
    for python in pythons:
        missing = [p for p in packages if not _has_wheel(dest, p, python)]
        if not missing:
            continue
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
