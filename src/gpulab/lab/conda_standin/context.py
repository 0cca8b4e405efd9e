"""Configuration: the `.condarc` files gpulab writes or points at, channels and envs dirs."""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import release

DEFAULT_CHANNELS = ("https://repo.anaconda.com/pkgs/main", "https://repo.anaconda.com/pkgs/r")
CHANNEL_ALIAS = "https://conda.anaconda.org"


def home() -> Path:
    return Path(os.path.expanduser("~"))


def channel_url(chan: str) -> str:
    return chan.rstrip("/") if "://" in chan else f"{CHANNEL_ALIAS}/{chan}"


def channel_name(url: str) -> str:
    """`https://conda.anaconda.org/conda-forge` -> `conda-forge`; repo.anaconda.com -> `pkgs/main`."""
    for prefix in (CHANNEL_ALIAS + "/", "https://repo.anaconda.com/"):
        if url.startswith(prefix):
            return url[len(prefix) :]
    return url


@dataclass
class Context:
    root_prefix: Path
    conda_version: str
    flavor: str
    rc: dict[str, Any] = field(default_factory=dict)

    @property
    def v(self) -> tuple[int, ...]:
        return tuple(int(p) for p in self.conda_version.split(".")[:3])

    @property
    def channels(self) -> list[str]:
        return [str(c) for c in self.rc.get("channels") or []]

    @property
    def envs_dirs(self) -> list[Path]:
        """Configured dirs, then `<root>/envs` and `~/.conda/envs`, the root's first only when the user
        can write the base (conda's `root_writable`: `conda-meta/history`)."""
        user, root = home() / ".conda" / "envs", self.root_prefix / "envs"
        dirs = [Path(os.path.expanduser(os.path.expandvars(str(c)))) for c in self.rc.get("envs_dirs") or []]
        writable = os.access(self.root_prefix / "conda-meta" / "history", os.W_OK)
        return list(dict.fromkeys(dirs + ([root, user] if writable else [user, root])))

    def channel_urls(self, channels: list[str] | None = None) -> list[str]:
        """Channel names expanded to base URLs (`defaults` -> default_channels)."""
        defaults = [str(c) for c in self.rc.get("default_channels") or DEFAULT_CHANNELS]
        chans = self.channels if channels is None else channels
        return list(
            dict.fromkeys(u for c in chans for u in (defaults if c == "defaults" else [channel_url(c)]))
        )


def load_context() -> Context:
    """Merge `<root>/.condarc`, `~/.condarc` and `$CONDARC` (lists: higher precedence first; maps: merged;
    scalars: last wins); a file that is not YAML is skipped with conda's warning."""
    import yaml  # vendored pure-Python PyYAML

    rel, root = release(), Path(sys.prefix)
    merged: dict[str, Any] = {}
    condarc = [Path(os.environ["CONDARC"])] if os.environ.get("CONDARC") else []
    for path in [root / ".condarc", home() / ".condarc", *condarc]:
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8"))
        except OSError:
            continue
        except yaml.YAMLError as exc:
            sys.stderr.write(f"Ignoring configuration file ({path}) due to error:\n{exc}\n")
            continue
        for key, value in (data if isinstance(data, dict) else {}).items():
            old = merged.get(key)
            if isinstance(value, list) and isinstance(old, list):
                value = value + [v for v in old if v not in value]
            elif isinstance(value, dict) and isinstance(old, dict):
                value = {**old, **value}
            merged[key] = value
    return Context(root, str(rel["conda_version"]), str(rel["flavor"]), merged)
