"""The lab's offline services in one place: wheelhouse, stand-in installers, and the mirror serving them.

Used by the test suite (in-process, so tests can inject faults) and by `gpulab lab up` (as a detached
`python -m gpulab.lab.mirror serve` process that outlives the command).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import yaml
from packaging.version import Version

from gpulab import collection
from gpulab.lab import installer, mirror, wheelhouse


def role_pins() -> dict[installer.Flavor, str]:
    """The releases the miniconda role pins, read from its defaults (the one source of the pin): Miniconda's
    `miniconda_version`, and for Miniforge the newest release `miniconda_checksums` publishes."""
    defaults = yaml.safe_load((collection.root() / "roles/miniconda/defaults/main.yml").read_text())
    forge = max(
        defaults["miniconda_checksums"]["miniforge"], key=lambda v: Version(installer.conda_version_of(v))
    )
    return {"miniconda": str(defaults["miniconda_version"]), "miniforge": str(forge)}


PINS = role_pins()
# The Miniforge release the pre-baked conda images carry (images.CONDA_RECIPES), so the lab must serve it.
IMAGE_MINIFORGE_RELEASE = "25.11.1-0"
# The stand-in releases every lab offers: (flavor, release string as in the real file name). The first of
# each flavor is the release the miniconda role pins; the others let upgrades be rehearsed.
STANDIN_RELEASES: tuple[tuple[installer.Flavor, str], ...] = (
    ("miniforge", PINS["miniforge"]),
    ("miniforge", IMAGE_MINIFORGE_RELEASE),
    ("miniforge", "25.5.1-0"),
    ("miniconda", PINS["miniconda"]),
    ("miniconda", "py313_25.5.1-1"),
)
WHEEL_PACKAGES = ("numpy", "pip")
WHEEL_PYTHONS = ("3.11", "3.13")


@dataclass
class LabServices:
    """Build (cached) and serve the lab's downloads under `root`."""

    root: Path
    cache_dir: Path
    _mirror: mirror.Mirror | None = field(default=None, init=False, repr=False)

    @property
    def mirror_root(self) -> Path:
        return self.root / "mirror"

    def prepare(self) -> dict[str, str]:
        """Lay out the mirror directory; return {installer file name: sha256}."""
        wheels = prefetch(self.cache_dir)
        built = [
            installer.build_installer(self.root / "installers", version, flavor, cache_dir=self.cache_dir)
            for flavor, version in STANDIN_RELEASES
        ]
        mirror.populate(self.mirror_root, built, wheels)
        checksums = {path.name: mirror.sha256_of(path) for path in built}
        (self.root / "checksums.json").write_text(json.dumps(checksums, indent=2, sort_keys=True) + "\n")
        return checksums

    def __enter__(self) -> LabServices:
        self.prepare()
        self._mirror = mirror.Mirror(self.mirror_root)
        self._mirror.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.mirror.stop()
        self._mirror = None

    @property
    def mirror(self) -> mirror.Mirror:
        if self._mirror is None:
            raise RuntimeError("lab services are not started")
        return self._mirror

    def environ(self) -> dict[str, str]:
        """What Molecule scenarios read to find the mirror and the staged files."""
        return {"GPULAB_LAB_MIRROR_URL": self.mirror.url, "GPULAB_LAB_ROOT": str(self.root)}


def checksums(root: Path) -> dict[str, str]:
    """The stand-in installers' sha256 digests recorded by `LabServices.prepare` under `root`."""
    return dict(json.loads((root / "checksums.json").read_text()))


def start_detached_mirror(root: Path, port: int, log: Path) -> int:
    """Serve `root` on 127.0.0.1:`port` from a background process that outlives this one; return its pid."""
    with log.open("ab") as fh:
        proc = subprocess.Popen(
            [sys.executable, "-m", "gpulab.lab.mirror", "serve", "--root", str(root), "--port", str(port)],
            stdout=fh,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    url = f"http://127.0.0.1:{port}/miniconda/"
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the lab mirror exited at start (port {port} taken?); see {log}")
        try:
            with urllib.request.urlopen(url, timeout=1):
                return proc.pid
        except OSError:
            time.sleep(0.2)
    proc.terminate()
    raise RuntimeError(f"the lab mirror did not answer on port {port} within 15 s; see {log}")


def stop_detached_mirror(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGTERM)


def prefetch(cache_dir: Path) -> Path:
    """Download what the lab needs from PyPI once (wheelhouse, incl. the pip wheel the installers bundle)."""
    return wheelhouse.ensure(cache_dir / "wheelhouse", WHEEL_PYTHONS, WHEEL_PACKAGES)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m gpulab.lab.services")
    parser.add_argument("command", choices=["prefetch"], help="download the lab's wheelhouse once")
    parser.add_argument("--cache-dir", type=Path, required=True)
    args = parser.parse_args(argv)
    try:
        print(prefetch(args.cache_dir))
    except wheelhouse.WheelhouseError as exc:
        print(f"gpulab: {exc}")
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
