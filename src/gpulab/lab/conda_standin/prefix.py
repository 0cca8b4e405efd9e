"""What lives in a prefix: conda-meta records, pip dists, history, state, environments.txt."""

from __future__ import annotations

import json
import os
import pwd
import re
import time
from pathlib import Path
from typing import Any

from .context import SUBDIR, Context, channel_display_name, home

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


def make_record(
    name: str, version: str, channel_url: str, *, noarch: bool, note: str, spec: str
) -> dict[str, Any]:
    """A `conda-meta/<name>-<version>-standin_0.json` record (marked as the stand-in's)."""
    subdir = "noarch" if noarch else SUBDIR
    fn = f"{name}-{version}-standin_0.conda"
    return {
        "build": "standin_0",
        "build_number": 0,
        "channel": f"{channel_url}/{subdir}",
        "fn": fn,
        "name": name,
        "requested_spec": spec,
        "subdir": subdir,
        "url": f"{channel_url}/{subdir}/{fn}",
        "version": version,
        "gpulab_standin_note": note,
    }


def write_record(prefix: Path, record: dict[str, Any]) -> None:
    meta = prefix / "conda-meta"
    meta.mkdir(parents=True, exist_ok=True)
    for old in conda_records(prefix):
        if old["name"] == record["name"]:
            (meta / f"{old['name']}-{old['version']}-{old['build']}.json").unlink(missing_ok=True)
    path = meta / f"{record['name']}-{record['version']}-{record['build']}.json"
    path.write_text(json.dumps(record, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def conda_records(prefix: Path) -> list[dict[str, Any]]:
    out = []
    for path in sorted((prefix / "conda-meta").glob("*.json")):
        try:
            rec = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if isinstance(rec, dict) and "name" in rec and "version" in rec and "build" in rec:
            out.append(rec)
    return out


def dist_fields(rec: dict[str, Any]) -> dict[str, Any]:
    """`dist_fields_dump()` of a conda record: the 8 keys of a `conda list --json` entry (facts §2.7)."""
    base = str(rec["channel"]).rsplit("/", 1)[0]
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
    out = []
    for info in sorted(sp.glob("*.dist-info")) if sp else []:
        try:
            head = (info / "METADATA").read_text(encoding="utf-8", errors="replace").split("\n\n", 1)[0]
        except OSError:
            continue
        fields = dict(line.split(":", 1) for line in head.splitlines() if ":" in line)
        if fields.get("Name") and fields.get("Version"):
            out.append((fields["Name"].strip(), fields["Version"].strip()))
    return out


def list_packages(prefix: Path) -> list[dict[str, Any]]:
    """`conda list --json`: conda records, then pip-only dists as `pypi`/`pypi_0` (facts §2.7), by name."""
    recs = conda_records(prefix)
    conda_names = {norm_name(r["name"]) for r in recs}
    items = [dist_fields(r) for r in recs]
    for name, version in pip_dists(prefix):
        n = norm_name(name)
        if n not in conda_names:
            items.append(
                {
                    "base_url": "https://conda.anaconda.org/pypi",
                    "build_number": 0,
                    "build_string": "pypi_0",
                    "channel": "pypi",
                    "dist_name": f"{n}-{version}-pypi_0",
                    "name": n,
                    "platform": "pypi",
                    "version": version,
                }
            )
    return sorted(items, key=lambda d: d["name"])


def append_history(
    ctx: Context, prefix: Path, cmd: str, added: list[dict[str, Any]], specs: list[str], channel: str = ""
) -> None:
    """One `conda-meta/history` revision (facts §7.4); `channel` names the channel of every added record
    (the installer's records show the configured name, `defaults`), else each record's own."""
    lines = [
        f"==> {time.strftime('%Y-%m-%d %H:%M:%S')} <==",
        f"# cmd: {cmd}",
        f"# conda version: {ctx.conda_version}",
    ]
    for r in added:
        name = channel or channel_display_name(dist_fields(r)["base_url"])
        lines.append(f"+{name}/{r['subdir']}::{r['name']}-{r['version']}-{r['build']}")
    lines.append(f"# update specs: {json.dumps(specs)}")
    (prefix / "conda-meta").mkdir(parents=True, exist_ok=True)
    with (prefix / "conda-meta" / "history").open("a", encoding="utf-8") as fh:
        fh.write("\n".join(lines) + "\n")


def write_state_vars(prefix: Path, variables: dict[str, Any]) -> None:
    """`variables:` -> `conda-meta/state` as `{"env_vars": {...}}` (facts §2.1)."""
    state = {"env_vars": {str(k): str(v) for k, v in variables.items()}}
    (prefix / "conda-meta" / "state").write_text(
        json.dumps(state, indent=2, sort_keys=True) + "\n", encoding="utf-8"
    )


def state_vars(prefix: Path) -> dict[str, str]:
    try:
        data = json.loads((prefix / "conda-meta" / "state").read_text(encoding="utf-8"))
        return {str(k): str(v) for k, v in (data.get("env_vars") or {}).items()}
    except (OSError, ValueError, AttributeError):
        return {}


def register_env(prefix: Path) -> None:
    """Add the prefix to `~/.conda/environments.txt` (best effort, as conda does)."""
    path = home() / ".conda" / "environments.txt"
    try:
        lines = path.read_text(encoding="utf-8").splitlines() if path.exists() else []
        if str(prefix) not in lines:
            path.parent.mkdir(parents=True, exist_ok=True)
            with path.open("a", encoding="utf-8") as fh:
                fh.write(f"{prefix}\n")
    except OSError:
        pass


def known_prefixes(ctx: Context) -> list[str]:
    """`list_all_known_prefixes` (facts §2.5): environments.txt (every user's when root), the envs dirs and
    the root, `sorted(set(...))`."""
    homes = {Path(e.pw_dir) for e in pwd.getpwall()} if os.geteuid() == 0 else set()
    found = {str(ctx.root_prefix)}
    for h in homes | {home()}:
        try:
            found.update(
                p.strip()
                for p in (h / ".conda" / "environments.txt").read_text(encoding="utf-8").splitlines()
            )
        except OSError:
            continue
    found.update(str(sub) for d in ctx.envs_dirs if d.is_dir() for sub in d.iterdir())
    return sorted(p for p in found if p and is_environment(Path(p)))
