"""The Anaconda Terms of Service gate and `conda tos accept` of the `conda-anaconda-tos` plugin (facts §5).

Only the Miniconda flavour ships the plugin. Offline there is no `terms.json` to fetch, so the stand-in knows
the channels that have a ToS (repo.anaconda.com pkgs/main, pkgs/r, pkgs/msys2) and writes acceptance records
in the plugin's layout. Not simulated: the interactive prompt, `tos reject|view`, locations other than
`--system` and the default user location.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlparse

from . import errors
from .context import Context, home

TOS_CHANNELS = tuple(f"https://repo.anaconda.com/pkgs/{c}" for c in ("main", "r", "msys2"))
TOS_VERSION = 1744131660.0  # the version timestamp recorded in acceptance files (stand-in constant)
CI_VARS = ("CI", "GITHUB_ACTIONS", "GITLAB_CI", "TRAVIS", "TF_BUILD", "CIRCLECI", "BUILDKITE", "JENKINS_URL")


def system_root(ctx: Context) -> Path:
    """`$CONDA_ROOT/conda-meta/tos`; conda sets CONDA_ROOT to its base only when unset (conda-facts §5.1)."""
    return Path(os.environ.get("CONDA_ROOT", str(ctx.root_prefix))) / "conda-meta" / "tos"


def _key(url: str) -> str:
    """sha256(channel_location + channel_name): host[:port] + path, outer slashes off (conda-facts §5.2)."""
    parsed = urlparse(url)
    location = (parsed.hostname or "") + (f":{parsed.port}" if parsed.port is not None else "")
    return hashlib.sha256((location + parsed.path.strip("/")).encode()).hexdigest()


def accepted(ctx: Context, url: str) -> bool:
    """The newest record in the lookup path says accepted (conda-facts §5.1/§5.2)."""
    for root in (
        Path("/etc/conda/tos"),
        Path("/var/lib/conda/tos"),
        system_root(ctx),
        home() / ".conda" / "tos",
    ):
        for rec in sorted((root / _key(url)).glob("*.json"), reverse=True):
            try:
                return bool(json.loads(rec.read_text(encoding="utf-8")).get("tos_accepted"))
            except (OSError, ValueError):
                continue
    return False


def _iso(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, tz=UTC).isoformat().replace("+00:00", "Z")


def write_record(root: Path, url: str) -> None:
    """`<root>/<key>/<version.timestamp()>.json`, compact JSON (`model_dump_json`, conda-facts §5.2)."""
    record = {
        "version": _iso(TOS_VERSION),
        "text": "(stand-in: the Terms of Service text is not available offline)",
        "support": "gpulab stand-in",
        "base_url": url,
        "tos_accepted": True,
        "acceptance_timestamp": _iso(time.time()),
    }
    (root / _key(url)).mkdir(parents=True, exist_ok=True)
    (root / _key(url) / f"{TOS_VERSION}.json").write_text(
        json.dumps(record, separators=(",", ":")), encoding="utf-8"
    )


def _is_ci() -> bool:
    """The plugin's CI detection: a CI variable set to a true word, unless one is set false (facts §5)."""
    values = [os.environ[v].strip().lower() for v in CI_VARS if v in os.environ]
    if any(v in ("0", "false", "no", "n", "off") for v in values):
        return False
    return any(v in ("1", "true", "yes", "y", "on") for v in values) or bool(os.environ.get("JENKINS_URL"))


def gate(ctx: Context) -> None:
    """The plugin's pre-command check for `env create` (facts §5.4): every channel with a ToS accepted, or
    auto-accepted (`CONDA_PLUGINS_AUTO_ACCEPT_TOS`, `plugins.auto_accept_tos`, CI); else, not interactive,
    `CondaToSNonInteractiveError`, rc 1."""
    if ctx.flavor != "miniconda":
        return
    pending = [u for u in ctx.channel_base_urls() if u in TOS_CHANNELS and not accepted(ctx, u)]
    if not pending or ctx.auto_accept_tos or _is_ci():
        how = "with auto acceptance enabled (auto_accept_tos=True)" if ctx.auto_accept_tos else "via CI"
        for url in pending if not ctx.json else []:
            print(
                f"By accessing {url} {how} "
                "for this repository you acknowledge and agree to the Terms of Service:"
            )
        return
    if ctx.v >= (25, 7):  # plugin 0.2.1+ wording
        raise errors.CondaToSNonInteractiveError(
            "Terms of Service have not been accepted for the following channels. "
            "Please accept or remove them before proceeding:\n"
            + "".join(f"    - {u}\n" for u in pending)
            + "\nTo accept these channels' Terms of Service, run the following commands:\n"
            + "".join(f"    conda tos accept --override-channels --channel {u}\n" for u in pending)
            + "\nFor information on safely removing channels from your conda configuration,\n"
            "please see the official documentation:\n\n"
            "    https://www.anaconda.com/docs/tools/working-with-conda/channels"
        )
    raise errors.CondaToSNonInteractiveError(
        "Terms of Service have not been accepted for the following channels. "
        "Please accept or remove them before proceeding:\n"
        + "".join(f"    \u2022 {u}\n" for u in pending)
        + "\nTo accept a channel's Terms of Service, run the following and replace `CHANNEL` with the "
        "channel name/URL:\n    \u2023 conda tos accept --override-channels --channel CHANNEL\n\n"
        "To remove channels with rejected Terms of Service, run the following and replace `CHANNEL` with the "
        "channel name/URL:\n    \u2023 conda config --remove channels CHANNEL"
    )


def accept(ctx: Context, channels: list[str], override: bool, system: bool) -> int:
    """`conda tos accept [--override-channels] [-c URL]... [--system]` (conda-facts §5.1, §5.3)."""
    urls = ctx.channel_base_urls(channels) if override else ctx.channel_base_urls([*channels, *ctx.channels])
    root = system_root(ctx) if system else home() / ".conda" / "tos"
    for url in urls:
        if url in TOS_CHANNELS:
            write_record(root, url)
            print(f"accepted Terms of Service for {url}")
        else:
            print(f"Terms of Service not found for {url}")
    return 0
