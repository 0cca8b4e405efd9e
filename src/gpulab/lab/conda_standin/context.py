"""Configuration (`.condarc` search path, facts §4), prefixes, channels and fault injection."""

from __future__ import annotations

import os
import pwd
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import release, version_tuple

FAULTS_FILE = "/etc/gpulab-lab/conda-faults"
DEFAULT_CHANNELS_URLS = ("https://repo.anaconda.com/pkgs/main", "https://repo.anaconda.com/pkgs/r")
CHANNEL_ALIAS = "https://conda.anaconda.org"
SUBDIR = "linux-64"
TRUE_WORDS = {"1", "true", "yes", "y", "on"}


def truthy(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    return str(value).strip().lower() in TRUE_WORDS


def home() -> Path:
    return Path(os.path.expanduser("~"))


def faults() -> set[str]:
    """Lines like `env-create=solve` from the fault file (GPULAB_STANDIN_FAULTS overrides its path)."""
    path = Path(os.environ.get("GPULAB_STANDIN_FAULTS") or FAULTS_FILE)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError:
        return set()
    return {line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#")}


def _load_yaml(path: Path) -> dict[str, Any] | None:
    import yaml  # vendored pure-Python PyYAML

    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError:
        return None
    except yaml.YAMLError as exc:
        sys.stderr.write(f"Ignoring configuration file ({path}) due to error:\n{exc}\n")
        return None
    return data if isinstance(data, dict) else {}


def _rc_candidates(root: Path) -> list[Path]:
    """The search path of facts §4.1, lowest precedence first."""
    out: list[Path] = []

    def add_dir(base: Path) -> None:
        out.append(base / ".condarc")
        out.append(base / "condarc")
        d = base / "condarc.d"
        if d.is_dir():
            out.extend(sorted(p for p in d.iterdir() if p.suffix in (".yml", ".yaml")))

    add_dir(Path("/etc/conda"))
    add_dir(Path("/var/lib/conda"))
    add_dir(root)
    xdg = os.environ.get("XDG_CONFIG_HOME")
    if xdg:
        add_dir(Path(xdg) / "conda")
    add_dir(home() / ".config" / "conda")
    add_dir(home() / ".conda")
    out.append(home() / ".condarc")
    if os.environ.get("CONDA_PREFIX"):
        add_dir(Path(os.environ["CONDA_PREFIX"]))
    if os.environ.get("CONDARC"):
        out.append(Path(os.environ["CONDARC"]))
    return out


ALIASES = {
    "auto_activate_base": "auto_activate",
    "channel": "channels",
    "envs_path": "envs_dirs",
    "yes": "always_yes",
}


@dataclass
class Context:
    root_prefix: Path
    conda_version: str
    flavor: str
    rc: dict[str, Any] = field(default_factory=dict)
    config_files: list[str] = field(default_factory=list)
    json: bool = False
    quiet: bool = False

    @property
    def v(self) -> tuple[int, ...]:
        return version_tuple(self.conda_version)

    # -- settings -----------------------------------------------------------------------------------
    @property
    def channels(self) -> list[str]:
        env = os.environ.get("CONDA_CHANNELS")
        if env:
            return [c for c in env.split(",") if c]
        chans = list(self.rc.get("channels") or [])
        if not chans and self.v < (25, 9):
            chans = ["defaults"]  # implicit defaults up to 25.7 (facts §4.2)
        return chans

    @property
    def default_channels(self) -> list[str]:
        return list(self.rc.get("default_channels") or DEFAULT_CHANNELS_URLS)

    @property
    def auto_activate(self) -> bool:
        for var in ("CONDA_AUTO_ACTIVATE", "CONDA_AUTO_ACTIVATE_BASE"):
            if os.environ.get(var):
                return truthy(os.environ[var])
        return truthy(self.rc.get("auto_activate", True))

    @property
    def always_yes(self) -> bool:
        if os.environ.get("CONDA_ALWAYS_YES"):
            return truthy(os.environ["CONDA_ALWAYS_YES"])
        return truthy(self.rc.get("always_yes", False))

    @property
    def auto_accept_tos(self) -> bool:
        if os.environ.get("CONDA_PLUGINS_AUTO_ACCEPT_TOS"):
            return truthy(os.environ["CONDA_PLUGINS_AUTO_ACCEPT_TOS"])
        plugins = self.rc.get("plugins") or {}
        return isinstance(plugins, dict) and truthy(plugins.get("auto_accept_tos", False))

    @property
    def root_writable(self) -> bool:
        history = self.root_prefix / "conda-meta" / "history"
        return os.access(history, os.W_OK) if history.exists() else os.access(self.root_prefix, os.W_OK)

    @property
    def envs_dirs(self) -> list[Path]:
        configured: list[str] = []
        env = os.environ.get("CONDA_ENVS_DIRS") or os.environ.get("CONDA_ENVS_PATH")
        if env:
            configured = [p for p in env.split(":") if p]
        else:
            configured = [str(p) for p in self.rc.get("envs_dirs") or []]
        user = home() / ".conda" / "envs"
        root = self.root_prefix / "envs"
        defaults = [root, user] if self.root_writable else [user, root]
        out: list[Path] = []
        for p in [Path(os.path.expanduser(os.path.expandvars(c))) for c in configured] + defaults:
            if p not in out:
                out.append(p)
        return out

    @property
    def pkgs_dirs(self) -> list[Path]:
        env = os.environ.get("CONDA_PKGS_DIRS")
        configured = env.split(",") if env else [str(p) for p in self.rc.get("pkgs_dirs") or []]
        if configured:
            return [Path(os.path.expanduser(os.path.expandvars(c))) for c in configured if c]
        return [self.root_prefix / "pkgs", home() / ".conda" / "pkgs"]

    def first_writable_envs_dir(self) -> Path:
        for d in self.envs_dirs:
            probe = d
            while not probe.exists() and probe != probe.parent:
                probe = probe.parent
            if os.access(probe, os.W_OK):
                return d
        return self.envs_dirs[0]

    # -- channels -----------------------------------------------------------------------------------
    def channel_base_urls(self, channels: list[str] | None = None) -> list[str]:
        """Channel names expanded to base URLs (`defaults` -> default_channels)."""
        out: list[str] = []
        for chan in self.channels if channels is None else channels:
            urls = self.default_channels if chan == "defaults" else [channel_url(chan)]
            for url in urls:
                if url not in out:
                    out.append(url)
        return out

    def channel_subdir_urls(self) -> list[str]:
        return [f"{u}/{s}" for u in self.channel_base_urls() for s in (SUBDIR, "noarch")]

    def sort_json(self) -> bool:
        """`--json` renderers sort keys up to 25.5; insertion order from 25.7 (facts §0)."""
        return self.v < (25, 7)


def channel_url(chan: str) -> str:
    if "://" in chan:
        return chan.rstrip("/")
    return f"{CHANNEL_ALIAS}/{chan}"


def channel_display_name(url: str) -> str:
    """`https://conda.anaconda.org/conda-forge` -> `conda-forge`; repo.anaconda.com -> `pkgs/main`."""
    for prefix in (CHANNEL_ALIAS + "/", "https://repo.anaconda.com/"):
        if url.startswith(prefix):
            return url[len(prefix) :]
    return url


def load_context() -> Context:
    rel = release()
    root = Path(sys.prefix)
    merged: dict[str, Any] = {}
    files: list[str] = []
    for path in _rc_candidates(root):
        if not path.is_file():
            continue
        data = _load_yaml(path)
        if data is None:
            continue
        files.append(str(path))
        for key, value in data.items():
            key = ALIASES.get(key, key)
            if isinstance(value, list) and isinstance(merged.get(key), list):
                merged[key] = value + [v for v in merged[key] if v not in value]
            elif isinstance(value, dict) and isinstance(merged.get(key), dict):
                merged[key] = {**merged[key], **value}
            else:
                merged[key] = value
    return Context(
        root_prefix=root,
        conda_version=str(rel["conda_version"]),
        flavor=str(rel["flavor"]),
        rc=merged,
        config_files=files,
    )


def all_user_homes() -> list[Path]:
    """Every user's home (root reads everyone's environments.txt, facts §2.5)."""
    homes: list[Path] = []
    for entry in pwd.getpwall():
        h = Path(entry.pw_dir)
        if h not in homes:
            homes.append(h)
    return homes
