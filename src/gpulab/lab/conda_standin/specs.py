"""A small MatchSpec: enough to split an environment file into conda-only records and pip requirements."""

from __future__ import annotations

import fnmatch
import re
from dataclasses import dataclass

# Packages that exist only as conda builds (CUDA runtime pieces, conda's PyTorch builds, MKL, ...).
# The stand-in RECORDS them in conda-meta and installs nothing: they never pretend to work.
# fmt: off
CONDA_ONLY_NAMES = frozenset({
    "cuda-version", "cudatoolkit", "cudnn", "nccl", "mkl", "mkl-service", "intel-openmp", "libtorch", "magma",
    "pytorch", "pytorch-gpu", "pytorch-cpu", "pytorch-cuda", "pytorch-mutex", "torchvision", "torchaudio",
    "cupy", "_openmp_mutex", "libgcc", "libgcc-ng", "libstdcxx", "libstdcxx-ng",
})
# fmt: on
CONDA_ONLY_PREFIXES = ("cuda-", "libcu", "libnv", "libnccl", "nvidia-")

# Versions recorded for a conda-only package whose spec names none (stand-in choice, documented).
# fmt: off
DEFAULT_VERSIONS = {
    "cuda-version": "12.6", "pytorch": "2.5.1", "pytorch-gpu": "2.5.1", "pytorch-cpu": "2.5.1",
    "libtorch": "2.5.1", "torchvision": "0.20.1", "torchaudio": "2.5.1", "cudatoolkit": "11.8.0",
    "pytorch-cuda": "12.4", "nccl": "2.23.4.1", "cudnn": "9.3.0.75", "mkl": "2024.2.2",
}
# fmt: on
NOARCH = frozenset({"cuda-version", "pytorch-cuda", "pytorch-mutex"})

_SPEC_RE = re.compile(r"^\s*(?:(?P<channel>[^\s:]+)::)?(?P<name>[A-Za-z0-9_.\-]+)\s*(?P<rest>.*?)\s*$")


@dataclass(frozen=True)
class Spec:
    text: str
    channel: str | None
    name: str
    version: str  # conda version constraint, "" for any
    build: str

    @property
    def conda_only(self) -> bool:
        n = self.name.lower()
        return n in CONDA_ONLY_NAMES or n.startswith(CONDA_ONLY_PREFIXES)

    def pip_requirement(self) -> str:
        """The pip requirement that asks for what this conda spec asks for."""
        return self.name + _pip_constraint(self.version)

    def record_version(self) -> str:
        v = self.version
        m = re.match(r"^(?:==|=|>=|~=)?\s*([0-9][0-9A-Za-z.]*)", v)
        if m:
            return m.group(1).rstrip(".*").rstrip(".")
        return DEFAULT_VERSIONS.get(self.name.lower(), "0")


class SpecError(ValueError):
    pass


def parse(text: str) -> Spec:
    m = _SPEC_RE.match(text)
    if not m:
        raise SpecError(text)
    rest = m.group("rest").strip()
    version = build = ""
    if rest.startswith("==") or rest.startswith(("<", ">", "!", "~")):
        version = rest.replace(" ", "")
    elif rest.startswith("="):
        parts = rest[1:].split("=", 1)
        version = "=" + parts[0]
        build = parts[1] if len(parts) > 1 else ""
    elif rest:
        parts = rest.split()
        version = parts[0]
        build = parts[1] if len(parts) > 1 else ""
    return Spec(
        text=text.strip(), channel=m.group("channel"), name=m.group("name"), version=version, build=build
    )


def _pip_constraint(version: str) -> str:
    if not version:
        return ""
    out: list[str] = []
    for part in version.split(","):
        part = part.strip()
        if not part:
            continue
        if part.startswith("=") and not part.startswith("=="):
            v = part[1:].rstrip("*").rstrip(".")
            out.append(f"=={v}.*" if v else "")
        elif part[0].isdigit():
            out.append(f"=={part}" if "*" in part else f"=={part}.*")
        else:
            out.append(part)
    return ",".join(o for o in out if o)


def _vt(text: str) -> tuple[int, ...]:
    return tuple(int(p) if p.isdigit() else 0 for p in text.split("."))


def version_matches(constraint: str, version: str) -> bool:
    """Does `version` (e.g. 3.11.7) satisfy a conda constraint (e.g. `=3.11`, `>=3.10,<3.13`)?"""
    if not constraint:
        return True
    for alt in constraint.split("|"):
        if all(_one(part.strip(), version) for part in alt.split(",") if part.strip()):
            return True
    return False


def _one(part: str, version: str) -> bool:
    for op in ("==", ">=", "<=", "!=", "~=", ">", "<", "="):
        if part.startswith(op):
            target = part[len(op) :].strip()
            break
    else:
        op, target = "=", part
    if op in ("=", "==") and "*" in target:
        return fnmatch.fnmatch(version, target)
    if op == "=":
        t = target.rstrip(".")
        return version == t or version.startswith(t + ".")
    if op == "==":
        return _vt(version) == _vt(target)
    vt, tt = _vt(version), _vt(target)
    if op == "~=":
        return vt >= tt and vt[: len(tt) - 1] == tt[: len(tt) - 1]
    return {">=": vt >= tt, "<=": vt <= tt, ">": vt > tt, "<": vt < tt, "!=": vt != tt}[op]
