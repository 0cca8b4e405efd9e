"""The Anaconda Terms of Service gate and `conda tos accept` of the `conda-anaconda-tos` plugin (conda-facts
§5), Miniconda flavour only. Offline there is no `terms.json`: the stand-in knows the channels with a ToS
(repo.anaconda.com pkgs/main, pkgs/r, pkgs/msys2) and writes acceptance records in the plugin's layout."""

from __future__ import annotations

import hashlib
import json
import os
import time
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlparse

from . import CondaError
from .context import Context, home

TOS_CHANNELS = tuple(f"https://repo.anaconda.com/pkgs/{c}" for c in ("main", "r", "msys2"))
TOS_VERSION = 1744131660.0  # the version timestamp recorded in acceptance files (stand-in constant)


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
    for root in (Path("/etc/conda/tos"), Path("/var/lib/conda/tos"), system_root(ctx), home() / ".conda/tos"):
        for rec in sorted((root / _key(url)).glob("*.json"), reverse=True):
            try:
                return bool(json.loads(rec.read_text(encoding="utf-8")).get("tos_accepted"))
            except (OSError, ValueError):
                continue
    return False


def _iso(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, tz=UTC).isoformat().replace("+00:00", "Z")


def gate(ctx: Context) -> None:
    """The plugin's pre-command check for `env create` (conda-facts §5.4): every configured channel with a
    ToS accepted, or auto-accepted by `CONDA_PLUGINS_AUTO_ACCEPT_TOS`; else `CondaToSNonInteractiveError`."""
    pending = [u for u in ctx.channel_urls() if u in TOS_CHANNELS and not accepted(ctx, u)]
    if ctx.flavor != "miniconda" or not pending:
        return
    if os.environ.get("CONDA_PLUGINS_AUTO_ACCEPT_TOS", "").strip().lower() in ("1", "true", "yes", "y", "on"):
        for url in pending:
            print(
                f"By accessing {url} with auto acceptance enabled (auto_accept_tos=True) "
                "for this repository you acknowledge and agree to the Terms of Service:"
            )
        return
    raise CondaError(
        "Terms of Service have not been accepted for the following channels. "
        "Please accept or remove them before proceeding:\n"
        + "".join(f"    - {u}\n" for u in pending)
        + "\nTo accept these channels' Terms of Service, run the following commands:\n"
        + "".join(f"    conda tos accept --override-channels --channel {u}\n" for u in pending)
        + "\nFor information on safely removing channels from your conda configuration,\n"
        "please see the official documentation:\n\n"
        "    https://www.anaconda.com/docs/tools/working-with-conda/channels",
        "CondaToSNonInteractiveError",
    )


def accept(ctx: Context, channels: list[str]) -> int:
    """`conda tos accept --override-channels --channel URL... --system` (conda-facts §5.1-§5.3): one record
    `<key>/<version.timestamp()>.json` of compact JSON per channel with a ToS."""
    for url in ctx.channel_urls(channels):
        if url not in TOS_CHANNELS:
            print(f"Terms of Service not found for {url}")
            continue
        record = {
            "version": _iso(TOS_VERSION),
            "text": "(stand-in: the Terms of Service text is not available offline)",
            "support": "gpulab stand-in",
            "base_url": url,
            "tos_accepted": True,
            "acceptance_timestamp": _iso(time.time()),
        }
        folder = system_root(ctx) / _key(url)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"{TOS_VERSION}.json").write_text(
            json.dumps(record, separators=(",", ":")), encoding="utf-8"
        )
        print(f"accepted Terms of Service for {url}")
    return 0
