"""The Anaconda Terms of Service gate of the `conda-anaconda-tos` plugin (facts §5).

Only the Miniconda flavour ships the plugin. Offline there is no `terms.json` to fetch, so the stand-in
knows the channels that have a ToS (repo.anaconda.com pkgs/main, pkgs/r, pkgs/msys2) and writes
acceptance records in the plugin's layout.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlparse

from . import errors
from .context import Context, home

TOS_CHANNELS = (
    "https://repo.anaconda.com/pkgs/main",
    "https://repo.anaconda.com/pkgs/r",
    "https://repo.anaconda.com/pkgs/msys2",
)
TOS_VERSION = "1744131660"  # version timestamp recorded in acceptance files (stand-in constant)
GUARDED_COMMANDS = {
    "create",
    "env_create",
    "env_remove",
    "env_update",
    "install",
    "remove",
    "rename",
    "search",
    "update",
}

CI_BOOL_VARS = (
    "CI",
    "GITHUB_ACTIONS",
    "GITLAB_CI",
    "TRAVIS",
    "TF_BUILD",
    "CIRCLECI",
    "BUILDKITE",
    "APPVEYOR",
    "DRONE",
    "SEMAPHORE",
    "CIRRUS_CI",
    "BITRISE_IO",
    "BUDDY",
    "CODEBUILD_CI",
    "HEROKU_TEST_RUN_ID",
)
CI_PRESENCE_VARS = (
    "JENKINS_URL",
    "TEAMCITY_VERSION",
    "CODEBUILD_BUILD_ID",
    "BITBUCKET_BUILD_NUMBER",
    "BUILD_BUILDID",
    "TASK_ID",
    "RUN_ID",
)
FALSE_WORDS = {"0", "false", "no", "n", "off"}


def has_tos(url: str) -> bool:
    return url.rstrip("/") in TOS_CHANNELS


def is_ci() -> bool:
    """api.py CI detection (facts §5): a CI variable set false means not CI."""
    for var in CI_BOOL_VARS:
        val = os.environ.get(var)
        if val is not None and val.strip().lower() in FALSE_WORDS:
            return False
    for var in CI_BOOL_VARS:
        val = os.environ.get(var)
        if val is not None and val.strip().lower() in {"1", "true", "yes", "y", "on"}:
            return True
    return any(os.environ.get(var) for var in CI_PRESENCE_VARS)


def tos_roots(ctx: Context) -> list[Path]:
    """Lookup order, highest priority first (facts §5)."""
    roots = [Path("/etc/conda/tos"), Path("/var/lib/conda/tos"), system_root(ctx)]
    if os.environ.get("XDG_CONFIG_HOME"):
        roots.append(Path(os.environ["XDG_CONFIG_HOME"]) / "conda" / "tos")
    roots += [home() / ".config" / "conda" / "tos", home() / ".conda" / "tos"]
    if os.environ.get("CONDA_PREFIX"):
        roots.append(Path(os.environ["CONDA_PREFIX"]) / "conda-meta" / "tos")
    if os.environ.get("CONDATOS"):
        roots.append(Path(os.environ["CONDATOS"]))
    return roots


def system_root(ctx: Context) -> Path:
    """`$CONDA_ROOT/conda-meta/tos`; conda sets CONDA_ROOT to its base only when unset (conda-facts §5.1)."""
    return Path(os.environ.get("CONDA_ROOT", str(ctx.root_prefix))) / "conda-meta" / "tos"


def _key(url: str) -> str:
    """sha256(channel_location + channel_name): host[:port] + path, outer slashes off (conda-facts §5.2)."""
    parsed = urlparse(url)
    location = parsed.hostname or ""
    if parsed.port is not None:
        location += f":{parsed.port}"
    return hashlib.sha256((location + parsed.path.strip("/")).encode()).hexdigest()


def _state(ctx: Context, url: str) -> bool | None:
    """True accepted, False rejected, None no record."""
    for root in tos_roots(ctx):
        d = root / _key(url)
        if not d.is_dir():
            continue
        for rec in sorted(d.glob("*.json"), reverse=True):
            try:
                return bool(json.loads(rec.read_text(encoding="utf-8")).get("tos_accepted"))
            except (OSError, ValueError):
                continue
    return None


def _iso(timestamp: float) -> str:
    """A UTC datetime as pydantic serialises it (`...Z`)."""
    text = datetime.fromtimestamp(timestamp, tz=UTC).isoformat()
    return text.replace("+00:00", "Z")


def write_record(root: Path, url: str, accepted: bool) -> Path:
    """`<root>/<key>/<version.timestamp()>.json`, compact JSON (`model_dump_json`, conda-facts §5.2)."""
    d = root / _key(url)
    d.mkdir(parents=True, exist_ok=True)
    path = d / f"{float(TOS_VERSION)}.json"
    record = {
        "version": _iso(float(TOS_VERSION)),
        "text": "(stand-in: the Terms of Service text is not available offline)",
        "support": "gpulab stand-in",
        "base_url": url,
        "tos_accepted": accepted,
        "acceptance_timestamp": _iso(time.time()),
    }
    path.write_text(json.dumps(record, separators=(",", ":"), ensure_ascii=False), encoding="utf-8")
    return path


def location_root(ctx: Context, where: str | None, tos_root: str | None) -> Path:
    if tos_root:
        return Path(tos_root)
    return {
        "system": system_root(ctx),
        "site": Path("/etc/conda/tos"),
        "env": Path(os.environ.get("CONDA_PREFIX") or str(ctx.root_prefix)) / "conda-meta" / "tos",
    }.get(where or "user", home() / ".conda" / "tos")


def _error_text(ctx: Context, urls: list[str]) -> str:
    if ctx.v >= (25, 7):  # plugin 0.2.1+ wording
        bullets = "\n".join(f"    - {u}" for u in urls)
        cmds = "\n".join(f"    conda tos accept --override-channels --channel {u}" for u in urls)
        return (
            "Terms of Service have not been accepted for the following channels. "
            "Please accept or remove them before proceeding:\n"
            f"{bullets}\n\n"
            "To accept these channels' Terms of Service, run the following commands:\n"
            f"{cmds}\n\n"
            "For information on safely removing channels from your conda configuration,\n"
            "please see the official documentation:\n\n"
            "    https://www.anaconda.com/docs/tools/working-with-conda/channels"
        )
    bullets = "\n".join(f"    \u2022 {u}" for u in urls)
    return (
        "Terms of Service have not been accepted for the following channels. "
        "Please accept or remove them before proceeding:\n"
        f"{bullets}\n\n"
        "To accept a channel's Terms of Service, run the following and replace `CHANNEL` with the "
        "channel name/URL:\n"
        "    \u2023 conda tos accept --override-channels --channel CHANNEL\n\n"
        "To remove channels with rejected Terms of Service, run the following and replace `CHANNEL` with the "
        "channel name/URL:\n"
        "    \u2023 conda config --remove channels CHANNEL"
    )


def gate(ctx: Context, command: str, yes: bool) -> None:
    """The plugin's pre-command check (facts §5, decision order)."""
    if ctx.flavor != "miniconda" or command not in GUARDED_COMMANDS:
        return
    pending: list[str] = []
    for url in ctx.channel_base_urls():
        if not has_tos(url):
            continue
        state = _state(ctx, url)
        if state is True:
            continue
        if state is False:
            raise errors.CondaToSRejectedError(
                f"Terms of Service rejected for the following channels:\n    - {url}"
            )
        pending.append(url)
    if not pending:
        return
    if ctx.auto_accept_tos:
        if not ctx.json and not ctx.quiet:
            for url in pending:
                print(
                    f"By accessing {url} with auto acceptance enabled (auto_accept_tos=True) for this "
                    "repository you acknowledge and agree to the Terms of Service:"
                )
        return
    if is_ci():
        if not ctx.json and not ctx.quiet:
            for url in pending:
                print(
                    f"By accessing {url} via CI for this repository you acknowledge and agree to the "
                    "Terms of Service:"
                )
        return
    interactive = sys.stdout.isatty() and not (
        os.environ.get("JPY_SESSION_NAME") and os.environ.get("JPY_PARENT_PID")
    )
    if ctx.json or yes or ctx.always_yes or not interactive:
        raise errors.CondaToSNonInteractiveError(_error_text(ctx, pending))
    for url in pending:
        while True:
            sys.stdout.write(
                f"Do you accept the Terms of Service (ToS) for {url}? [(a)ccept/(r)eject/(v)iew]: "
            )
            sys.stdout.flush()
            answer = sys.stdin.readline().strip().lower()
            if answer in ("a", "accept"):
                write_record(location_root(ctx, None, None), url, True)
                break
            if answer in ("r", "reject", ""):
                write_record(location_root(ctx, None, None), url, False)
                raise errors.CondaToSRejectedError(
                    f"Terms of Service rejected for the following channels:\n    - {url}"
                )


def accept(
    ctx: Context,
    channels: list[str] | None,
    override: bool,
    where: str | None,
    tos_root: str | None,
    reject: bool = False,
) -> int:
    """`conda tos accept|reject` (facts §5, render.py 184-211)."""
    if channels and override:
        urls = ctx.channel_base_urls(channels)
    elif channels:
        urls = ctx.channel_base_urls(channels) + [u for u in ctx.channel_base_urls() if u not in channels]
    else:
        urls = ctx.channel_base_urls()
    root = location_root(ctx, where, tos_root)
    for url in urls:
        if has_tos(url):
            write_record(root, url, not reject)
            print(f"{'rejected' if reject else 'accepted'} Terms of Service for {url}")
        else:
            print(f"Terms of Service not found for {url}")
    return 0
