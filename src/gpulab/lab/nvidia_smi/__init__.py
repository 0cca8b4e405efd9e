"""gpulab lab STAND-IN: a fake `nvidia-smi` that replays outputs captured on real GPUs.

`PROFILES` lists the GPUs/drivers (and broken states) a test host can pretend to have; `stage()` writes
the files of one profile under a directory as they must land under `/` on the host:

- `usr/bin/nvidia-smi`: the replaying script (`fake_nvidia_smi.py`, stdlib only), mode 0755;
- `etc/gpulab-lab/nvidia-smi.profile`: one line, the profile name;
- `usr/local/share/gpulab-lab/nvidia-smi/<profile>/`: `manifest.json` plus the captures, byte for byte;
- `etc/gpulab-lab/proc-driver-nvidia-version` for `driver-mismatch` only (a real
  `/proc/driver/nvidia/version` whose kernel-module version differs from the NVML library's).

Profile `none` stands for a host without the NVIDIA driver: nothing but the profile file is staged and
`/usr/bin/nvidia-smi` must be absent on the host. The captures and their sources are in
`gpulab/lab/fixtures/` (see its SOURCES.md).
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

FIXTURES_DIR = Path(__file__).resolve().parent.parent / "fixtures"
SCRIPT = Path(__file__).resolve().parent / "fake_nvidia_smi.py"

# Where the files land on a host (relative to /).
BIN_FILE = "usr/bin/nvidia-smi"
PROFILE_FILE = "etc/gpulab-lab/nvidia-smi.profile"
DATA_DIR = "usr/local/share/gpulab-lab/nvidia-smi"
PROC_VERSION_FILE = "etc/gpulab-lab/proc-driver-nvidia-version"

# Response kind -> file name inside the staged profile directory.
STAGED_NAMES = {
    "table": "table.txt",
    "query": "query.txt",
    "list": "list.txt",
    "version": "version.txt",
    "query_gpu_csv": "query-gpu-allfields.csv",
    "query_xml": "query.xml",
}

ProfileKind = Literal["gpu", "error", "absent"]


class UnknownProfileError(ValueError):
    """The profile name is not in PROFILES."""

    def __init__(self, name: str) -> None:
        super().__init__(
            f"unknown nvidia-smi profile {name!r}; known profiles: {', '.join(sorted(PROFILES))}"
        )


@dataclass(frozen=True)
class Profile:
    """One GPU/driver state a test host can have, built only from real captures.

    `captures` maps a response kind (`table`, `query`, `list`, `version`, `query_gpu_csv`, `query_xml`) to
    a fixture path relative to `FIXTURES_DIR`. An error profile prints `error` (lines `error_lines`,
    1-based and inclusive, when the fixture is a transcript) and exits with `rc` for every invocation.
    """

    name: str
    description: str
    kind: ProfileKind
    captures: dict[str, str] = field(default_factory=dict)
    error: str | None = None
    error_lines: tuple[int, int] | None = None
    rc: int = 0
    proc_version: str | None = None


# Response kind -> where a machine's capture of it lies under FIXTURES_DIR/nvidia-smi, by the machine's file
# name stem (an idle machine's `__idle` captures first); a profile answers what is captured for it.
_CAPTURE_PATHS = {
    "table": ("table/{}__idle.txt", "table/{}.txt"),
    "query": ("query-q/{}__idle.txt", "query-q/{}.txt"),
    "list": ("list-L/{}.txt",),
    "version": ("version/{}.txt",),
    "query_gpu_csv": ("query-gpu-csv/{}__idle__allfields.csv",),
    "query_xml": ("query-xml/{}.xml",),
}


def _gpu(name: str, stem: str, description: str) -> Profile:
    """A machine known from the captures named after it (`stem`)."""
    captures = {}
    for kind, paths in _CAPTURE_PATHS.items():
        found = [p.format(stem) for p in paths if (FIXTURES_DIR / "nvidia-smi" / p.format(stem)).is_file()]
        if found:
            captures[kind] = f"nvidia-smi/{found[0]}"
    return Profile(name, description, "gpu", captures)


def _error(
    name: str,
    fixture: str,
    rc: int,
    description: str,
    lines: tuple[int, int] | None = None,
    proc: str | None = None,
) -> Profile:
    """A broken driver state: the captured error text and nvidia-smi's exit code, for every call."""
    return Profile(
        name,
        description,
        "error",
        error=f"nvidia-smi/errors/{fixture}",
        error_lines=lines,
        rc=rc,
        proc_version=proc,
    )


_ALL: list[Profile] = [
    _gpu("h100-590.48.01", "h100-80gb-hbm3__590.48.01", "1x H100 80GB HBM3, driver 590.48.01, CUDA 13.1"),
    _gpu(
        "h200-mig-590.48.01", "h200-mig__590.48.01", "1x H200 in MIG mode (5 MIG devices), driver 590.48.01"
    ),
    _gpu("l40s-595.80", "l40s__595.80", "1x L40S, driver 595.80, CUDA 13.2"),
    _gpu(
        "rtx2080super-610.57.04",
        "rtx-2080-super__610.57.04",
        "1x GeForce RTX 2080 SUPER, driver 610.57.04 (R610: KMD/CUDA UMD headers), CUDA 13.3",
    ),
    _gpu("l40s-550.127.05", "l40s__550.127.05", "1x L40S, driver 550.127.05, CUDA 12.4 (-a only)"),
    _gpu(
        "h100x8-565.57.01",
        "h100-80gb-hbm3-sxm-x8__565.57.01",
        "8x H100 80GB HBM3 SXM, driver 565.57.01 (-a only)",
    ),
    _gpu("a40x10-550.127.05", "a40-x10__550.127.05", "10x A40, driver 550.127.05 (-a only)"),
    _gpu(
        "rtx4090x8-550.127.05",
        "rtx-4090-x8__550.127.05",
        "8x GeForce RTX 4090, driver 550.127.05 (table, -a)",
    ),
    _gpu(
        "rtx4060tix2-550.54.14",
        "rtx-4060-ti-x2__550.54.14",
        "2x GeForce RTX 4060 Ti, driver 550.54.14 (table, -a)",
    ),
    _gpu("h100nvlx2-550.54.14", "h100-nvl-x2__550.54.14", "2x H100 NVL, driver 550.54.14 (table, -a)"),
    _gpu("rtx2000ada-550.54.15", "rtx-2000-ada__550.54.15", "1x RTX 2000 Ada, driver 550.54.15 (-a only)"),
    _gpu(
        "rtx6000adax8-550.127.05",
        "rtx-6000-ada-x8__550.127.05",
        "8x RTX 6000 Ada, driver 550.127.05 (table, -a)",
    ),
    _gpu(
        "gtx680-470.256.02",
        "gtx-680__470.256.02",
        "1x GeForce GTX 680, driver 470.256.02 (R470), CUDA 11.4 (-a only)",
    ),
    _gpu(
        "a100-mig-510.47.03",
        "a100-sxm4-40gb-mig__510.47.03",
        "1x A100-SXM4-40GB in MIG mode (2 MIG devices), driver 510.47.03, CUDA 11.6 (-q -x only)",
    ),
    _gpu(
        "rtx2070x2-590.44.01",
        "rtx-2070-x2__590.44.01",
        "2x GeForce RTX 2070, driver 590.44.01, CUDA 13.1 (-q -x only)",
    ),
    _error(
        "driver-broken",
        "failed-to-communicate-with-driver.txt",
        9,
        "driver not loaded: NVIDIA-SMI couldn't communicate with the NVIDIA driver (rc 9)",
    ),
    _error(
        "no-devices",
        "no-devices-were-found.txt",
        6,
        "driver loaded, no GPU initialised: No devices were found (rc 6)",
    ),
    _error(
        "gpu-lost",
        "unable-to-determine-device-handle__gpu-is-lost.txt",
        15,
        "GPU fell off the bus: Unable to determine the device handle ... GPU is lost (rc 15)",
    ),
    _error(
        "driver-mismatch",
        "nvml-mismatch-with-proc-version__nvml-580.178_kmod-580.173.02.txt",
        18,
        "driver upgraded, not rebooted: NVML 580.178 vs kernel module 580.173.02 (rc 18)",
        lines=(2, 3),
        proc="proc-driver-nvidia-version/proprietary__580.173.02.txt",
    ),
    Profile(name="none", description="no NVIDIA driver: nvidia-smi is not installed", kind="absent"),
]

PROFILES: dict[str, Profile] = {p.name: p for p in _ALL}


def _write(path: Path, data: bytes, mode: int = 0o644) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    path.chmod(mode)


def stage(dest_root: Path, profile: str) -> None:
    """Write the files of `profile` under `dest_root`, laid out as they must land under `/`."""
    if profile not in PROFILES:
        raise UnknownProfileError(profile)
    spec = PROFILES[profile]
    dest_root = Path(dest_root)
    _write(dest_root / PROFILE_FILE, f"{spec.name}\n".encode())
    # A root staged before for another profile must not keep that profile's command or /proc stand-in.
    (dest_root / PROC_VERSION_FILE).unlink(missing_ok=True)
    if spec.kind == "absent":
        (dest_root / BIN_FILE).unlink(missing_ok=True)
        return
    _write(dest_root / BIN_FILE, SCRIPT.read_bytes(), 0o755)
    data_dir = dest_root / DATA_DIR / spec.name
    if data_dir.exists():
        shutil.rmtree(data_dir)
    data_dir.mkdir(parents=True)
    responses: dict[str, str] = {}
    sources: dict[str, str] = {}
    for kind, fixture in sorted(spec.captures.items()):
        name = STAGED_NAMES[kind]
        _write(data_dir / name, (FIXTURES_DIR / fixture).read_bytes())
        responses[kind] = name
        sources[name] = fixture
    error: dict[str, object] | None = None
    if spec.error is not None:
        text = (FIXTURES_DIR / spec.error).read_bytes()
        if spec.error_lines:  # a transcript: the lines nvidia-smi printed (1-based, inclusive)
            text = b"".join(text.splitlines(keepends=True)[spec.error_lines[0] - 1 : spec.error_lines[1]])
        _write(data_dir / "error.txt", text)
        error = {"file": "error.txt", "rc": spec.rc}
        sources["error.txt"] = spec.error + (
            f" (lines {spec.error_lines[0]}-{spec.error_lines[1]})" if spec.error_lines else ""
        )
    if spec.proc_version is not None:
        _write(dest_root / PROC_VERSION_FILE, (FIXTURES_DIR / spec.proc_version).read_bytes())
        sources["/" + PROC_VERSION_FILE] = spec.proc_version
    manifest = {
        "profile": spec.name,
        "description": spec.description,
        "standin": "gpulab lab fake nvidia-smi: replays captures of real GPUs (see sources)",
        "responses": responses,
        "error": error,
        "sources": sources,
    }
    _write(data_dir / "manifest.json", (json.dumps(manifest, indent=2, sort_keys=True) + "\n").encode())
