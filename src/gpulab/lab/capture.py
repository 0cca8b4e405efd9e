"""Lab node profiles from a user's own `nvidia-smi` captures (`gpulab lab up --capture DIR`).

On each real node, capture `nvidia-smi`, `-q`, `-L`, `--version` and a `--query-gpu` CSV into
DIR/<node-name>/ (the exact commands are in docs/lab.md).
`query.txt` is required; the others make the simulated node answer more queries. Each DIR/<name>/
becomes profile `capture-<name>`, and lab nodes with that name (or new nodes) get it.
"""

from __future__ import annotations

import re
from pathlib import Path

from gpulab.lab import nvidia_smi
from gpulab.lab.cluster import LabError, Node

_NAME = re.compile(r"^[a-z0-9][a-z0-9-]{0,30}$")


def load_capture_profiles(directory: Path) -> list[nvidia_smi.Profile]:
    """Register one profile per DIR/<name>/ holding at least query.txt; return them."""
    if not directory.is_dir():
        raise LabError(f"--capture: {directory} is not a directory")
    profiles: list[nvidia_smi.Profile] = []
    for sub in sorted(p for p in directory.iterdir() if p.is_dir()):
        if not _NAME.match(sub.name):
            raise LabError(f"--capture: {sub.name!r} is not a usable node name (lowercase, digits, dashes)")
        if not (sub / "query.txt").is_file():
            raise LabError(f"--capture: {sub}/query.txt is missing (run `nvidia-smi -q > query.txt` there)")
        captures = {
            kind: str((sub / fname).resolve())
            for kind, fname in nvidia_smi.STAGED_NAMES.items()
            if (sub / fname).is_file()
        }
        profile = nvidia_smi.Profile(
            name=f"capture-{sub.name}",
            description=f"your capture from {sub}",
            kind="gpu",
            captures=captures,
        )
        nvidia_smi.PROFILES[profile.name] = profile
        profiles.append(profile)
    if not profiles:
        raise LabError(f"--capture: no DIR/<node>/query.txt found under {directory}")
    return profiles


def add_capture_profiles(nodes: list[Node], directory: Path) -> list[Node]:
    """Nodes named like a capture take its profile; captures without a node become new nodes."""
    profiles = {p.name.removeprefix("capture-"): p.name for p in load_capture_profiles(directory)}
    result = [Node(n.name, profiles.pop(n.name, n.profile), n.image) for n in nodes]
    result += [Node(name, profile) for name, profile in sorted(profiles.items())]
    return result
