"""Configuration (the `.condarc` search path, facts §4), envs dirs, channels and fault injection."""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import release

FAULTS_FILE = "/etc/gpulab-lab/conda-faults"
DEFAULT_CHANNELS_URLS = ("https://repo.anaconda.com/pkgs/main", "https://repo.anaconda.com/pkgs/r")
CHANNEL_ALIAS = "https://conda.anaconda.org"
SUBDIR = "linux-64"
ALIASES = {"auto_activate_base": "auto_activate", "channel": "channels", "envs_path": "envs_dirs"}


def truthy(value: Any) -> bool:
    return value if isinstance(value, bool) else str(value).strip().lower() in {"1", "true", "yes", "y", "on"}


def home() -> Path:
    return Path(os.path.expanduser("~"))


def faults() -> set[str]:
    """Lines like `env-create=solve` from the fault file (GPULAB_STANDIN_FAULTS overrides its path)."""
    try:
        text = Path(os.environ.get("GPULAB_STANDIN_FAULTS") or FAULTS_FILE).read_text(encoding="utf-8")
    except OSError:
        return set()
    return {line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#")}


def _rc_files(root: Path) -> list[Path]:
    """The `.condarc` search path of facts §4.1, lowest precedence first."""
    dirs = [Path("/etc/conda"), Path("/var/lib/conda"), root]
    if os.environ.get("XDG_CONFIG_HOME"):
        dirs.append(Path(os.environ["XDG_CONFIG_HOME"]) / "conda")
    dirs += [home() / ".config" / "conda", home() / ".conda"]
    out: list[Path] = []
    for d in dirs:
        out += [d / ".condarc", d / "condarc"]
        if (d / "condarc.d").is_dir():
            out += sorted(p for p in (d / "condarc.d").iterdir() if p.suffix in (".yml", ".yaml"))
    out.append(home() / ".condarc")
    if os.environ.get("CONDA_PREFIX"):
        out.append(Path(os.environ["CONDA_PREFIX"]) / ".condarc")
    if os.environ.get("CONDARC"):
        out.append(Path(os.environ["CONDARC"]))
    return out


def channel_url(chan: str) -> str:
    return chan.rstrip("/") if "://" in chan else f"{CHANNEL_ALIAS}/{chan}"


def channel_display_name(url: str) -> str:
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
    json: bool = False

    @property
    def v(self) -> tuple[int, ...]:
        return tuple(int(p) for p in self.conda_version.split(".")[:3])

    @property
    def channels(self) -> list[str]:
        chans = [str(c) for c in self.rc.get("channels") or []]
        return chans or (
            ["defaults"] if self.v < (25, 9) else []
        )  # implicit defaults up to 25.7 (facts §4.2)

    @property
    def default_channels(self) -> list[str]:
        return [str(c) for c in self.rc.get("default_channels") or DEFAULT_CHANNELS_URLS]

    @property
    def auto_activate(self) -> bool:
        for var in ("CONDA_AUTO_ACTIVATE", "CONDA_AUTO_ACTIVATE_BASE"):
            if os.environ.get(var):
                return truthy(os.environ[var])
        return truthy(self.rc.get("auto_activate", True))

    @property
    def auto_accept_tos(self) -> bool:
        if os.environ.get("CONDA_PLUGINS_AUTO_ACCEPT_TOS"):
            return truthy(os.environ["CONDA_PLUGINS_AUTO_ACCEPT_TOS"])
        plugins = self.rc.get("plugins")
        return isinstance(plugins, dict) and truthy(plugins.get("auto_accept_tos", False))

    def _dirs(self, key: str, sep: str, defaults: list[Path]) -> list[Path]:
        env = os.environ.get(f"CONDA_{key.upper()}")
        configured = env.split(sep) if env else [str(p) for p in self.rc.get(key) or []]
        out: list[Path] = []
        for p in [Path(os.path.expanduser(os.path.expandvars(c))) for c in configured if c] + defaults:
            if p not in out:
                out.append(p)
        return out

    @property
    def envs_dirs(self) -> list[Path]:
        """Configured dirs, then `<root>/envs` and `~/.conda/envs`, the root's first only when the user
        can write the base (conda's `root_writable`: `conda-meta/history`)."""
        user, root = home() / ".conda" / "envs", self.root_prefix / "envs"
        writable = os.access(self.root_prefix / "conda-meta" / "history", os.W_OK)
        return self._dirs("envs_dirs", ":", [root, user] if writable else [user, root])

    @property
    def pkgs_dirs(self) -> list[Path]:
        configured = self._dirs("pkgs_dirs", ",", [])
        return configured or [self.root_prefix / "pkgs", home() / ".conda" / "pkgs"]

    def first_writable_envs_dir(self) -> Path:
        for d in self.envs_dirs:
            probe = d
            while not probe.exists() and probe != probe.parent:
                probe = probe.parent
            if os.access(probe, os.W_OK):
                return d
        return self.envs_dirs[0]

    def channel_base_urls(self, channels: list[str] | None = None) -> list[str]:
        """Channel names expanded to base URLs (`defaults` -> default_channels)."""
        out: list[str] = []
        for chan in self.channels if channels is None else channels:
            for url in self.default_channels if chan == "defaults" else [channel_url(chan)]:
                if url not in out:
                    out.append(url)
        return out

    def channel_subdir_urls(self, channels: list[str] | None = None) -> list[str]:
        return [f"{u}/{s}" for u in self.channel_base_urls(channels) for s in (SUBDIR, "noarch")]


def load_context() -> Context:
    """Merge every `.condarc` found (lists: higher precedence first; maps: merged; scalars: last wins)."""
    import yaml  # vendored pure-Python PyYAML

    rel = release()
    root = Path(sys.prefix)
    merged: dict[str, Any] = {}
    for path in _rc_files(root):
        if not path.is_file():
            continue
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8"))
        except OSError:
            continue
        except yaml.YAMLError as exc:
            sys.stderr.write(f"Ignoring configuration file ({path}) due to error:\n{exc}\n")
            continue
        for raw_key, value in (data if isinstance(data, dict) else {}).items():
            key = ALIASES.get(str(raw_key), str(raw_key))
            if isinstance(value, list) and isinstance(merged.get(key), list):
                merged[key] = value + [v for v in merged[key] if v not in value]
            elif isinstance(value, dict) and isinstance(merged.get(key), dict):
                merged[key] = {**merged[key], **value}
            else:
                merged[key] = value
    return Context(
        root_prefix=root, conda_version=str(rel["conda_version"]), flavor=str(rel["flavor"]), rc=merged
    )
