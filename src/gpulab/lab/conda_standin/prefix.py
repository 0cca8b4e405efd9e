"""What lives in a prefix: conda-meta records, pip dists, history, state, environments.txt."""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import sys
import time
from pathlib import Path
from typing import Any

from .context import SUBDIR, Context, all_user_homes, channel_display_name, home

STANDIN_NOTE = (
    "gpulab stand-in record: conda-only package, NOT installed (nothing was downloaded or linked); "
    "it does not work in this environment"
)


def is_environment(prefix: Path) -> bool:
    """conda's own test (`PrefixData.is_environment`): `<prefix>/conda-meta/history` exists (facts §6.1)."""
    return (prefix / "conda-meta" / "history").is_file()


def site_packages(prefix: Path) -> Path | None:
    libs = sorted((prefix / "lib").glob("python3*/site-packages"))
    return libs[0] if libs else None


def env_python_version(prefix: Path) -> str:
    cfg = prefix / "pyvenv.cfg"
    try:
        for line in cfg.read_text(encoding="utf-8").splitlines():
            key, _, value = line.partition("=")
            if key.strip() in ("version", "version_info"):
                return value.strip()
    except OSError:
        pass
    return ".".join(str(x) for x in sys.version_info[:3])


# -- conda-meta records ---------------------------------------------------------------------------
def make_record(
    name: str, version: str, channel_url: str, *, noarch: bool, note: str, spec: str
) -> dict[str, Any]:
    subdir = "noarch" if noarch else SUBDIR
    build = "standin_0"
    fn = f"{name}-{version}-{build}.conda"
    return {
        "build": build,
        "build_number": 0,
        "channel": f"{channel_url}/{subdir}",
        "depends": [],
        "files": [],
        "fn": fn,
        "license": "",
        "name": name,
        "requested_spec": spec,
        "subdir": subdir,
        "url": f"{channel_url}/{subdir}/{fn}",
        "version": version,
        "gpulab_standin": True,
        "gpulab_standin_note": note,
    }


def write_record(prefix: Path, record: dict[str, Any]) -> None:
    meta = prefix / "conda-meta"
    meta.mkdir(parents=True, exist_ok=True)
    for old in meta.glob(f"{record['name']}-*.json"):
        try:
            if json.loads(old.read_text(encoding="utf-8")).get("name") == record["name"]:
                old.unlink()
        except (OSError, ValueError):
            continue
    path = meta / f"{record['name']}-{record['version']}-{record['build']}.json"
    path.write_text(json.dumps(record, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def conda_records(prefix: Path) -> list[dict[str, Any]]:
    out = []
    for path in sorted((prefix / "conda-meta").glob("*.json")):
        try:
            rec = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if isinstance(rec, dict) and "name" in rec and "version" in rec:
            out.append(rec)
    return out


def record_base_url(rec: dict[str, Any]) -> str:
    chan = str(rec.get("channel", ""))
    return chan.rsplit("/", 1)[0] if chan.endswith(("/" + SUBDIR, "/noarch")) else chan


def dist_fields(rec: dict[str, Any]) -> dict[str, Any]:
    """`dist_fields_dump()` of a conda record (facts §2.7)."""
    base = record_base_url(rec)
    return {
        "base_url": base,
        "build_number": rec.get("build_number", 0),
        "build_string": rec["build"],
        "channel": channel_display_name(base),
        "dist_name": f"{rec['name']}-{rec['version']}-{rec['build']}",
        "name": rec["name"],
        "platform": rec.get("subdir", SUBDIR),
        "version": rec["version"],
    }


def norm_name(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def pip_dists(prefix: Path) -> list[tuple[str, str]]:
    """(name, version) of every pip-installed distribution in the env's site-packages."""
    sp = site_packages(prefix)
    if sp is None:
        return []
    out = []
    for info in sorted(sp.glob("*.dist-info")):
        name = version = ""
        try:
            with (info / "METADATA").open(encoding="utf-8", errors="replace") as fh:
                for line in fh:
                    if not line.strip():
                        break
                    if line.startswith("Name:"):
                        name = line.split(":", 1)[1].strip()
                    elif line.startswith("Version:"):
                        version = line.split(":", 1)[1].strip()
        except OSError:
            continue
        if name and version:
            out.append((name, version))
    return out


def pypi_fields(name: str, version: str) -> dict[str, Any]:
    """A pip-installed package as `conda list --json` shows it (facts §2.7)."""
    n = norm_name(name)
    return {
        "base_url": "https://conda.anaconda.org/pypi",
        "build_number": 0,
        "build_string": "pypi_0",
        "channel": "pypi",
        "dist_name": f"{n}-{version}-pypi_0",
        "name": n,
        "platform": "pypi",
        "version": version,
    }


def list_packages(prefix: Path) -> list[dict[str, Any]]:
    recs = conda_records(prefix)
    conda_names = {norm_name(r["name"]) for r in recs}
    items = [dist_fields(r) for r in recs]
    items += [pypi_fields(n, v) for n, v in pip_dists(prefix) if norm_name(n) not in conda_names]
    return sorted(items, key=lambda d: d["name"])


# -- history and state ----------------------------------------------------------------------------
def history_block(
    ctx: Context, cmd: str, added: list[dict[str, Any]], removed: list[dict[str, Any]], specs: list[str]
) -> str:
    """One `conda-meta/history` revision (facts §7.4)."""
    lines = [
        f"==> {time.strftime('%Y-%m-%d %H:%M:%S')} <==",
        f"# cmd: {cmd}",
        f"# conda version: {ctx.conda_version}",
    ]
    for rec in removed:
        lines.append(f"-{_hist_dist(rec)}")
    for rec in added:
        lines.append(f"+{_hist_dist(rec)}")
    lines.append(f"# update specs: {json.dumps(specs)}")
    return "\n".join(lines) + "\n"


def _hist_dist(rec: dict[str, Any]) -> str:
    base = record_base_url(rec)
    dist = f"{rec['name']}-{rec['version']}-{rec['build']}"
    return f"{channel_display_name(base)}/{rec.get('subdir', SUBDIR)}::{dist}"


def append_history(prefix: Path, text: str) -> None:
    meta = prefix / "conda-meta"
    meta.mkdir(parents=True, exist_ok=True)
    with (meta / "history").open("a", encoding="utf-8") as fh:
        fh.write(text)


def write_state_vars(prefix: Path, variables: dict[str, Any], merge: bool) -> None:
    """`variables:` -> `conda-meta/state` as `{"env_vars": {...}}` (facts §2.1, §2.2: merged on update)."""
    path = prefix / "conda-meta" / "state"
    current: dict[str, Any] = {}
    if merge and path.is_file():
        try:
            current = json.loads(path.read_text(encoding="utf-8")).get("env_vars", {})
        except (OSError, ValueError):
            current = {}
    current.update({str(k): str(v) for k, v in variables.items()})
    path.write_text(json.dumps({"env_vars": current}, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def state_vars(prefix: Path) -> dict[str, str]:
    try:
        data = json.loads((prefix / "conda-meta" / "state").read_text(encoding="utf-8"))
        return {str(k): str(v) for k, v in (data.get("env_vars") or {}).items()}
    except (OSError, ValueError, AttributeError):
        return {}


# -- environments.txt and env listing -------------------------------------------------------------
def environments_txt(h: Path | None = None) -> Path:
    return (h or home()) / ".conda" / "environments.txt"


def register_env(prefix: Path) -> None:
    path = environments_txt()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        lines = path.read_text(encoding="utf-8").splitlines() if path.exists() else []
        if str(prefix) not in lines:
            with path.open("a", encoding="utf-8") as fh:
                fh.write(f"{prefix}\n")
    except OSError:
        pass


def unregister_env(prefix: Path) -> None:
    path = environments_txt()
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError:
        return
    kept = [ln for ln in lines if ln.strip() and ln.strip() != str(prefix)]
    path.write_text("".join(f"{ln}\n" for ln in kept), encoding="utf-8")


def known_prefixes(ctx: Context) -> list[str]:
    """`list_all_known_prefixes` (facts §2.5): environments.txt, envs dirs, root; sorted(set(...))."""
    found: set[str] = set()
    homes = all_user_homes() if os.geteuid() == 0 else [home()]
    if home() not in homes:
        homes.append(home())
    for h in homes:
        try:
            lines = environments_txt(h).read_text(encoding="utf-8").splitlines()
        except OSError:
            continue
        for line in lines:
            p = line.strip()
            if p and is_environment(Path(p)):
                found.add(p)
    for d in ctx.envs_dirs:
        if d.is_dir():
            for sub in d.iterdir():
                if is_environment(sub):
                    found.add(str(sub))
    found.add(str(ctx.root_prefix))
    return sorted(found)


def _iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    return dt.datetime.fromtimestamp(int(ts), tz=dt.UTC).isoformat()


def env_details(ctx: Context, prefix: str) -> dict[str, Any]:
    """One `envs_details` entry (25.11+, facts §2.5)."""
    p = Path(prefix)
    hist = p / "conda-meta" / "history"
    created: float | None = None
    modified: float | None = None
    try:
        with hist.open(encoding="utf-8") as fh:
            m = re.match(r"==> (\d{4}-\d\d-\d\d \d\d:\d\d:\d\d) <==", fh.readline())
        if m:
            created = time.mktime(time.strptime(m.group(1), "%Y-%m-%d %H:%M:%S"))
        modified = hist.stat().st_mtime
    except OSError:
        pass
    is_base = p == ctx.root_prefix
    name = ""
    if is_base:
        name = "base"
    elif any(p.parent == d for d in ctx.envs_dirs):
        name = p.name
    return {
        "name": name,
        "created": _iso(created),
        "last_modified": _iso(modified),
        "active": os.environ.get("CONDA_PREFIX") == prefix,
        "base": is_base,
        "frozen": (p / "conda-meta" / "frozen").exists(),
        "writable": os.access(p, os.W_OK) if is_environment(p) else None,
    }
