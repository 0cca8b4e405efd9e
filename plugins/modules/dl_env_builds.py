#!/usr/bin/python
# Copyright: gpulab contributors
# Apache-2.0 (see the repository's license)
"""The one home of dl_env's build safety: which builds gpulab made, which are live or in use, what
they cost on disk, and whether root may run their python.

Everything that removes or executes a build goes through this module, so prune, `state: absent`,
the interrupted-run cleanup and the MLP check apply the same rules:
- a build is gpulab's only when its marker (``conda-meta/gpulab-build.json``) names THAT env; builds
  made before markers existed are adopted by the digest they recorded (``gpulab-spec.sha256``); a
  marker that is there but unreadable (truncated, garbage, wrong types) proves nothing: that build is
  never removed, prune and clean say so, and a live build with one is built again (``live``);
- the live build (the public name, resolved with realpath) is never removed;
- a build some process uses (``/proc/*/exe``, ``maps``, ``cwd``) is never removed;
- root runs a build's python only when every directory from ``/`` to it and the python itself are
  root-owned and not writable by group/others (sticky allowed above the build), by the real path.

The pure functions are unit-tested (tests/dl_env/test_builds_module.py); the AnsibleModule at the
end only maps ``state`` to them.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import stat
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

DOCUMENTATION = r"""
module: dl_env_builds
short_description: Inspect, mark, seal, prune and remove dl_env builds safely
description:
  - The build-safety rules of the dl_env role in one place (see the role README, "Builds and safety").
options:
  state:
    description: What to do.
    type: str
    required: true
    choices: [inspect, live, mark, seal, prune, absent, clean, trusted_python, record]
  name:
    description: Environment name (all states but inspect, clean, seal and record).
    type: str
  envs_dir:
    description: Directory of the public env names.
    type: path
  builds_dir:
    description: Directory of the versioned builds.
    type: path
  path:
    description: A build (mark, seal, record; trusted_python, default the public name).
    type: path
  digest:
    description: >-
      Spec digest (mark, seal; live: the spec about to be built, for C(new_prefix) and C(kept), with
      O(builds_dir)).
    type: str
  run_id:
    description: Run id recorded in the marker (mark, seal).
    type: str
    default: ""
  complete:
    description: >-
      Whether the build is finished and checked (mark). With O(spec_src), the spec and its digest are
      recorded in the build first.
    type: bool
    default: false
  spec_src:
    description: >-
      The spec file on the host the build was made from (mark): copied into the build with its mode and
      group, with its digest (0644), beside conda's history.
    type: path
  keep:
    description: Builds kept beside the live one (prune).
    type: int
    default: 1
  group:
    description: Group of the build (seal); empty keeps root.
    type: str
    default: ""
  data:
    description: The record to keep (record); the module adds the build's digest and the host's time.
    type: dict
author: gpulab contributors
"""

EXAMPLES = r"""
- name: Read which build the public name points at, and its last MLP check
  gpulab.gpulab.dl_env_builds:
    state: live
    name: gpulab
    envs_dir: /opt/miniconda3/envs
    builds_dir: /opt/miniconda3/envs/.gpulab
  register: live

- name: Remove old builds, keeping one beside the live one (never one in use)
  gpulab.gpulab.dl_env_builds:
    state: prune
    name: gpulab
    envs_dir: /opt/miniconda3/envs
    builds_dir: /opt/miniconda3/envs/.gpulab
    keep: 1
"""

RETURN = r"""
exists:
  description: Whether the public name exists (live; a dangling link counts).
  returned: state is live
  type: bool
link:
  description: Whether the public name is a symlink (gpulab's builds are).
  returned: state is live
  type: bool
target:
  description: The real path of the live build when the public name is a link, else "".
  returned: state is live
  type: str
python:
  description: >-
    live: whether the live environment has a bin/python (a bool); seal and trusted_python: the real path of
    the build's python, checked as only root can change it (a str).
  returned: state is live, seal or trusted_python
  type: raw
digest:
  description: The spec digest the live build recorded ("" when none).
  returned: state is live
  type: str
check:
  description: The live build's last MLP check record ({} when none).
  returned: state is live
  type: dict
check_age_s:
  description: Seconds since that check, by the host's clock (null when there is none).
  returned: state is live
  type: float
untrusted:
  description: Why root must not run the live build's python ("" when it may).
  returned: state is live
  type: str
marker:
  description: Why the live build is not provably gpulab's build of this env ("" when it is, or the name is no link).
  returned: state is live
  type: str
new_prefix:
  description: >-
    Where the build of O(digest) goes: C(<builds_dir>/<name>-<digest12>), or C(...-rebuild) when the live
    build has that name (its record did not match, so it stays as it is).
  returned: state is live, with builds_dir and digest
  type: str
kept:
  description: Whether a build of O(digest) that recorded that digest is already at C(new_prefix) (reused).
  returned: state is live, with builds_dir and digest
  type: bool
record:
  description: The check record as written, with the build's digest and the host's time (when, epoch).
  returned: state is record
  type: dict
"""

MARKER = "conda-meta/gpulab-build.json"
DIGEST_FILE = "conda-meta/gpulab-spec.sha256"
SPEC_COPY = "conda-meta/gpulab-environment.yml"  # the spec the build was made from (its mode and group)
CHECK_RECORD = "conda-meta/gpulab-check.json"
NEXT_SUFFIX = ".gpulab-next"
ADOPTED_SUFFIX = "-adopted"
_HEX12 = "[0-9a-f]{12}"
# What write_marker writes, by type; a marker without these is not one gpulab wrote.
MARKER_FIELDS: dict[str, type | tuple[type, ...]] = {"env": str, "digest": str, "complete": bool}
MARKER_OPTIONAL: dict[str, type | tuple[type, ...]] = {"run_id": str, "created": str, "created_epoch": (int, float)}


class BuildError(Exception):
    """A refusal: the message says what and why, for the user."""


# -- reading builds ------------------------------------------------------------------------------
def read_json(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def read_marker(build: Path) -> tuple[dict[str, Any] | None, str]:
    """`build`'s marker and, when the file is there but is not one gpulab wrote, why: (marker, ""),
    (None, "") when there is none, (None, "not JSON (truncated or garbage)") and the like."""
    path = build / MARKER
    if not os.path.lexists(path):
        return None, ""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        return None, f"unreadable ({exc.strerror or exc})"
    except ValueError:
        return None, "not JSON (truncated or garbage)"
    if not isinstance(data, dict):
        return None, f"a JSON {type(data).__name__}, not an object"
    for key, types in [*MARKER_FIELDS.items(), *MARKER_OPTIONAL.items()]:
        value = data.get(key)
        # bool is an int to Python, not to a marker: `complete` is a bool, `created_epoch` a number
        wrong = not isinstance(value, types) or isinstance(value, bool) != (types is bool)
        if (key in MARKER_FIELDS or key in data) and wrong:
            return None, f"wrong: its {key!r} is {json.dumps(value)[:40]}"
    if not data["env"]:
        return None, "wrong: its 'env' is empty"
    return data, ""


def marker_problem(build: Path) -> str:
    """Why `build`'s marker proves nothing ("" when it is fine or absent), with the file's path."""
    _, problem = read_marker(build)
    return f"its gpulab marker {build / MARKER} is {problem}" if problem else ""


def build_pattern(name: str) -> re.Pattern[str]:
    """`<name>-<digest12>`: `dl` never matches `dl-cpu-<digest12>`."""
    return re.compile(rf"^{re.escape(name)}-{_HEX12}$")


def recorded_digest(build: Path) -> str:
    try:
        return build.joinpath(DIGEST_FILE).read_text(encoding="utf-8").strip()
    except OSError:
        return ""


def owner_of(build: Path, name: str) -> str:
    """Why `build` is env `name`'s gpulab build: "marker", "digest" (made before markers: its name
    carries the digest it recorded), or "" (not gpulab's build of this env, or its marker is unreadable:
    never touched)."""
    marker, problem = read_marker(build)
    if problem:
        return ""
    if marker is not None:
        return "marker" if marker.get("env") == name else ""
    if not build_pattern(name).match(build.name):
        return ""
    digest = recorded_digest(build)
    return "digest" if digest and digest.startswith(build.name[-12:]) else ""


def live_build(envs_dir: Path, name: str) -> Path | None:
    """The real path the public name points at (trailing slashes and symlinked prefixes resolved)."""
    public = envs_dir / name
    if not os.path.lexists(public):
        return None
    return Path(os.path.realpath(public))


def builds_of(builds_dir: Path, name: str) -> list[Path]:
    """Directories in `builds_dir` that are env `name`'s gpulab builds (marker or recorded digest)."""
    if not builds_dir.is_dir():
        return []
    return sorted(p for p in builds_dir.iterdir() if p.is_dir() and not p.is_symlink() and owner_of(p, name))


def unreadable_builds(builds_dir: Path, name: str) -> list[tuple[Path, str]]:
    """Builds named like env `name`'s (`<name>-<digest12>[-rebuild]`) whose marker is there but
    unreadable, with why: not provably gpulab's, so kept, and reported."""
    if not builds_dir.is_dir():
        return []
    pattern = re.compile(rf"^{re.escape(name)}-{_HEX12}(-rebuild)?$")
    found = []
    for build in sorted(builds_dir.iterdir()):
        if build.is_dir() and not build.is_symlink() and pattern.match(build.name):
            problem = marker_problem(build)
            if problem:
                found.append((build, problem))
    return found


def is_complete(build: Path) -> bool:
    marker, _ = read_marker(build)
    if marker is not None:
        return bool(marker.get("complete"))
    return bool(recorded_digest(build))


def created_at(build: Path) -> float:
    marker = read_marker(build)[0] or {}
    value = marker.get("created_epoch")
    if isinstance(value, int | float):
        return float(value)
    try:
        return build.stat().st_mtime
    except OSError:
        return 0.0


# -- in use ----------------------------------------------------------------------------------------
def _under(path: str, roots: Iterable[str]) -> str | None:
    for root in roots:
        if path == root or path.startswith(root.rstrip("/") + "/"):
            return root
    return None


def processes_using(paths: Iterable[Path], proc: Path = Path("/proc")) -> list[dict[str, Any]]:
    """Processes whose executable, mapped files or working directory lie under one of `paths`
    (real paths): [{pid, command, path}]. Processes that vanish or cannot be read are skipped."""
    roots = [os.path.realpath(p) for p in paths]
    found: list[dict[str, Any]] = []
    try:
        pids = [p for p in proc.iterdir() if p.name.isdigit()]
    except OSError:
        return found
    for pid_dir in pids:
        hit: str | None = None
        for link in ("exe", "cwd"):
            try:
                target = os.readlink(pid_dir / link)
            except OSError:
                continue
            hit = hit or _under(target.removesuffix(" (deleted)"), roots)
        if hit is None:
            try:
                with (pid_dir / "maps").open(encoding="utf-8", errors="replace") as fh:
                    for line in fh:
                        parts = line.split(None, 5)
                        if len(parts) == 6 and parts[5].startswith("/"):
                            hit = _under(parts[5].strip().removesuffix(" (deleted)"), roots)
                            if hit:
                                break
            except OSError:
                pass
        if hit is None:
            continue
        try:
            raw = (pid_dir / "cmdline").read_bytes()
            command = " ".join(a.decode("utf-8", "replace") for a in raw.split(b"\0") if a)
        except OSError:
            command = ""
        if not command:
            try:
                command = (pid_dir / "comm").read_text(encoding="utf-8").strip()
            except OSError:
                command = "?"
        found.append({"pid": int(pid_dir.name), "command": command[:200], "path": hit})
    return sorted(found, key=lambda p: p["pid"])


def in_use_message(name: str, users: list[dict[str, Any]]) -> str:
    who = "; ".join(f"pid {u['pid']} ({u['command']})" for u in users[:5])
    more = f" and {len(users) - 5} more" if len(users) > 5 else ""
    return f"environment {name} is in use by {who}{more}: stop them first"


# -- disk usage ------------------------------------------------------------------------------------
def _inodes(root: Path) -> dict[tuple[int, int], tuple[int, int]]:
    """(dev, ino) -> (bytes on disk, hard-link count; 0 for a directory, which has no other names)
    for every entry under `root`, symlinks not followed, each inode once."""
    seen: dict[tuple[int, int], tuple[int, int]] = {}
    stack = [root]
    while stack:
        current = stack.pop()
        try:
            st = os.lstat(current)
        except OSError:
            continue
        nlink = 0 if stat.S_ISDIR(st.st_mode) else st.st_nlink
        seen.setdefault((st.st_dev, st.st_ino), (st.st_blocks * 512, nlink))
        if stat.S_ISDIR(st.st_mode):
            try:
                stack.extend(current / child for child in os.listdir(current))
            except OSError:
                continue
    return seen


def disk_usage(trees: dict[str, list[Path]]) -> dict[str, Any]:
    """Disk used per group of trees (an env's builds) and in total, each hard-linked inode counted
    once: `bytes` is what the env uses, `exclusive_bytes` what removing it would free (inodes with
    no link outside it), `total_bytes` all envs together."""
    per: dict[str, dict[tuple[int, int], tuple[int, int]]] = {}
    for key, roots in trees.items():
        inodes: dict[tuple[int, int], tuple[int, int]] = {}
        for root in roots:
            for ino, value in _inodes(root).items():
                inodes.setdefault(ino, value)
        per[key] = inodes
    everything: dict[tuple[int, int], int] = {}
    for inodes in per.values():
        for ino, (size, _) in inodes.items():
            everything[ino] = size
    out: dict[str, Any] = {"envs": {}, "total_bytes": sum(everything.values())}
    for key, inodes in per.items():
        in_env = _link_counts(trees[key])
        out["envs"][key] = {
            "bytes": sum(size for size, _ in inodes.values()),
            "exclusive_bytes": sum(
                size for ino, (size, nlink) in inodes.items() if in_env.get(ino, 0) >= nlink
            ),
        }
    return out


def _link_counts(roots: list[Path]) -> dict[tuple[int, int], int]:
    """How many names each non-directory inode has under `roots` (to tell inodes linked from elsewhere)."""
    counts: dict[tuple[int, int], int] = {}
    for root in roots:
        if not root.is_dir() or root.is_symlink():
            try:
                st = os.lstat(root)
            except OSError:
                continue
            counts[(st.st_dev, st.st_ino)] = counts.get((st.st_dev, st.st_ino), 0) + 1
            continue
        for dirpath, dirnames, filenames in os.walk(root):
            for entry in [*dirnames, *filenames]:
                try:
                    st = os.lstat(os.path.join(dirpath, entry))
                except OSError:
                    continue
                if not stat.S_ISDIR(st.st_mode):
                    counts[(st.st_dev, st.st_ino)] = counts.get((st.st_dev, st.st_ino), 0) + 1
    return counts


# -- trust -----------------------------------------------------------------------------------------
def _unsafe(path: Path, st: os.stat_result, dir_ok_if_sticky: bool, owners: set[int]) -> str:
    if st.st_uid not in owners:
        also = " or the user running the check" if os.geteuid() else ""
        return f"{path} is owned by uid {st.st_uid}, not by root{also}"
    writable = st.st_mode & (stat.S_IWGRP | stat.S_IWOTH)
    if writable and not (dir_ok_if_sticky and stat.S_ISDIR(st.st_mode) and st.st_mode & stat.S_ISVTX):
        return f"{path} is writable by group/others (mode {stat.S_IMODE(st.st_mode):04o})"
    return ""


def _chain(path: Path) -> list[Path]:
    """`path` and every directory above it, from / down."""
    return [*reversed(path.parents), path]


def trusted_python(prefix: Path) -> Path:
    """The real path of the python of the environment at `prefix` (a public name or a build), after
    checking that nobody but root (or the user who runs the check, who could change it anyway) could
    have changed what it runs: the build `prefix` resolves to and every directory above it, every entry
    inside the build (what python imports from it), and the python binary with every directory above
    it (a venv-style build links to a system python) are owned by them and not writable by
    group/others. Sticky directories are allowed above the build (others cannot rename what they do
    not own there). All on real paths, so a symlink someone swapped into envs/ leads to their files
    and is refused."""
    if not os.path.lexists(prefix) or not (prefix / "bin" / "python").exists():
        raise BuildError(
            f"There is no environment {prefix.name} at {prefix}: build it first (playbooks/site.yml)"
        )
    build = Path(os.path.realpath(prefix))
    python = Path(os.path.realpath(build / "bin" / "python"))
    owners = {0, os.geteuid()}
    seen: set[Path] = set()
    for path in [*_chain(build.parent), *_chain(python.parent)]:
        if path in seen:
            continue
        seen.add(path)
        problem = _unsafe(
            path, os.lstat(path), dir_ok_if_sticky=build not in (path, *path.parents), owners=owners
        )
        if problem:
            raise BuildError(f"{problem}, so someone else could change what {prefix} runs")
    for entry in [build, *_walk(build), python]:
        st = os.lstat(entry)
        if stat.S_ISLNK(st.st_mode):
            continue  # a link's own mode means nothing; what it points at inside the build is checked
        problem = _unsafe(entry, st, dir_ok_if_sticky=False, owners=owners)
        if problem:
            raise BuildError(f"{problem}, so someone else could change what {prefix} runs")
    return python


def _walk(root: Path) -> Iterable[Path]:
    for dirpath, dirnames, filenames in os.walk(root):
        for name in [*dirnames, *filenames]:
            yield Path(dirpath) / name


def seal(build: Path, group: str = "") -> bool:
    """Make `build` root-owned (group `group` or root) and not writable by group/others; symlinks are
    never followed. True when anything changed."""
    import grp

    gid = grp.getgrnam(group).gr_gid if group else 0
    changed = False
    for dirpath, dirnames, filenames in os.walk(build):
        for entry in [dirpath, *(os.path.join(dirpath, n) for n in [*dirnames, *filenames])]:
            st = os.lstat(entry)
            if st.st_uid != 0 or st.st_gid != gid:
                os.lchown(entry, 0, gid)
                changed = True
            if stat.S_ISLNK(st.st_mode):
                continue
            mode = stat.S_IMODE(st.st_mode)
            new = mode & ~(stat.S_IWGRP | stat.S_IWOTH)
            if group:  # the lab group reads (and enters) what the owner may
                new |= stat.S_IRGRP | (stat.S_IXGRP if mode & stat.S_IXUSR else 0)
            if new != mode:
                os.chmod(entry, new)
                changed = True
    return changed


def seal_new(build: Path, name: str, digest: str, run_id: str, group: str = "") -> tuple[bool, Path]:
    """A new build before its MLP check, in one round trip: marked as env `name`'s (unfinished), made
    root-owned and not writable by group/others (`seal`), and its python found and checked as only root
    can change it (`trusted_python`). Returns (changed, that python)."""
    marked = write_marker(build, name, digest, run_id, complete=False)
    sealed = seal(build, group)
    return marked or sealed, trusted_python(build)


def new_build(builds_dir: Path, name: str, digest: str, live_target: str) -> tuple[Path, bool]:
    """Where the build of spec `digest` goes, and whether one that recorded that digest is already there
    (kept from an earlier run: reused, not built again). It is `<name>-<digest12>`, or
    `<name>-<digest12>-rebuild` when that is the live build (its recorded digest did not match: it stays)."""
    build = builds_dir / f"{name}-{digest[:12]}"
    if live_target and Path(live_target).name == build.name:
        build = build.with_name(build.name + "-rebuild")
    return build, recorded_digest(build) == digest


# -- changing builds -------------------------------------------------------------------------------
def _write_file(path: Path, data: bytes, mode: int, owner: tuple[int, int] | None = None) -> bool:
    """`data` in `path` with `mode` (and `owner`, uid and gid, when given), replaced atomically through a
    new temporary file, never written through a symlink: a reader never sees half a file. False when it
    already was exactly that."""
    try:
        st = os.lstat(path)
        same = stat.S_IMODE(st.st_mode) == mode and owner in (None, (st.st_uid, st.st_gid))
        if stat.S_ISREG(st.st_mode) and same and path.read_bytes() == data:
            return False
    except OSError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
    if owner is not None:
        os.chown(tmp, *owner)
    os.chmod(tmp, mode)
    os.replace(tmp, path)
    return True


def record_spec(build: Path, spec_src: Path, digest: str) -> bool:
    """Keep the spec `build` was made from and its digest (0644, root) in the build's conda-meta/. The copy
    gets the source's mode and group (the role writes it 0640 root:<dl_env_group>: it may carry pip index
    tokens). True when anything changed."""
    st = os.stat(spec_src)
    mode = stat.S_IMODE(st.st_mode) & 0o777
    spec = _write_file(build / SPEC_COPY, spec_src.read_bytes(), mode, (0, st.st_gid))
    return _write_file(build / DIGEST_FILE, f"{digest}\n".encode(), 0o644, (0, 0)) or spec


def _write_json(path: Path, data: dict) -> None:
    """Write `data` as JSON, 0644 (`_write_file`)."""
    _write_file(path, (json.dumps(data, sort_keys=True) + "\n").encode(), 0o644)


def write_marker(build: Path, name: str, digest: str, run_id: str, complete: bool) -> bool:
    marker = build / MARKER
    old = read_marker(build)[0] or {}  # an unreadable marker is replaced, not merged
    keep = {k: old.get(k) for k in ("created", "created_epoch")} if old.get("env") == name else {}
    now = time.time()
    data = {
        "env": name,
        "digest": digest,
        "created": keep.get("created") or time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now)),
        "created_epoch": keep.get("created_epoch") or now,
        "run_id": run_id or str(old.get("run_id") or ""),
        "complete": complete,
    }
    if old == data:
        return False
    _write_json(marker, data)
    return True


def _remove_tree(path: Path) -> None:
    """Rename away first (atomic: a half-removed build never keeps its name), then delete."""
    doomed = path.with_name(f".{path.name}.removing")
    os.replace(path, doomed)
    shutil.rmtree(doomed)


def plan_prune(envs_dir: Path, builds_dir: Path, name: str, keep: int) -> dict[str, Any]:
    """Which builds of `name` prune would remove, adopt (marker written from the recorded digest) and
    keep. Never the live build, never an unfinished or unmarked one, never `-adopted`."""
    live = live_build(envs_dir, name)
    ours = [b for b in builds_of(builds_dir, name) if Path(os.path.realpath(b)) != live]
    adopt = [b for b in ours if owner_of(b, name) == "digest"]
    finished = sorted((b for b in ours if is_complete(b)), key=created_at, reverse=True)
    return {
        "remove": finished[max(keep, 0) :],
        "adopt": adopt,
        "live": live,
        "unreadable": [(b, p) for b, p in unreadable_builds(builds_dir, name) if Path(os.path.realpath(b)) != live],
    }


def prune(envs_dir: Path, builds_dir: Path, name: str, keep: int, check: bool = False) -> dict[str, Any]:
    plan = plan_prune(envs_dir, builds_dir, name, keep)
    removed: list[str] = []
    skipped = [f"{build} ({unproven_message(problem)})" for build, problem in plan["unreadable"]]
    adopted = [str(b) for b in plan["adopt"]]
    if not check:
        for build in plan["adopt"]:
            write_marker(build, name, recorded_digest(build), "adopted", True)
    for build in plan["remove"]:
        users = processes_using([build])
        if users:
            skipped.append(f"{build} ({in_use_message(name, users)})")
            continue
        if not check:
            _remove_tree(build)
        removed.append(str(build))
    return {"removed": removed, "adopted": adopted, "skipped": skipped, "changed": bool(removed or adopted)}


def unproven_message(problem: str) -> str:
    return (
        f"{problem}, so it is not provably a gpulab build: not removing it "
        "(remove it by hand once you know whose it is)"
    )


def remove_env(envs_dir: Path, builds_dir: Path, name: str, check: bool = False) -> dict[str, Any]:
    """`state: absent`: refuse while in use or when the public name is not gpulab's; else remove the
    public name, then every build marked for `name`. `-adopted` (a user's env moved aside) stays."""
    public = envs_dir / name
    live = live_build(envs_dir, name)
    real_builds = Path(os.path.realpath(builds_dir))
    if live is not None:
        if not public.is_symlink():
            raise BuildError(
                f"{public} is a directory gpulab did not create (no gpulab marker): not removing it; "
                "remove it with conda yourself if it should go"
            )
        if os.path.exists(public) and (live.parent != real_builds or not owner_of(live, name)):
            raise BuildError(
                f"{public} points at {live}, which is not a gpulab build of {name}: not removing it"
            )
    builds = builds_of(builds_dir, name)
    users = processes_using([*builds, *([live] if live else [])])
    if users:
        raise BuildError(in_use_message(name, users))
    adopted = builds_dir / f"{name}{ADOPTED_SUFFIX}"
    removed = [str(public)] * bool(live is not None or public.is_symlink()) + [str(b) for b in builds]
    result: dict[str, Any] = {"removed": removed, "kept": [str(adopted)] if adopted.exists() else []}
    if not check:
        if public.is_symlink():
            public.unlink()
        for build in builds:
            _remove_tree(build)
    result["changed"] = bool(result["removed"])
    return result


def clean(envs_dir: Path, builds_dir: Path, check: bool = False) -> dict[str, Any]:
    """Remove what an interrupted run left: temporary `.<name>.gpulab-next` links and half-made
    builds (marker says incomplete, or no marker and no recorded digest under a `<name>-<digest12>`
    name), unless live or in use; `.<build>.removing` leftovers of an interrupted removal."""
    removed: list[str] = []
    skipped: list[str] = []
    if envs_dir.is_dir():
        for link in envs_dir.iterdir():
            if link.name.startswith(".") and link.name.endswith(NEXT_SUFFIX) and link.is_symlink():
                removed.append(str(link))
                if not check:
                    link.unlink()
    lives = {live_build(envs_dir, p.name) for p in envs_dir.iterdir()} if envs_dir.is_dir() else set()
    if builds_dir.is_dir():
        for build in sorted(builds_dir.iterdir()):
            if not build.is_dir() or build.is_symlink() or Path(os.path.realpath(build)) in lives:
                continue
            marker, problem = read_marker(build)
            if problem:
                skipped.append(f"{build} ({unproven_message(marker_problem(build))})")
                continue
            leftover = build.name.startswith(".") and build.name.endswith(".removing")
            half = (marker is not None and not marker.get("complete")) or (
                marker is None
                and re.match(rf"^.+-{_HEX12}$", build.name) is not None
                and not recorded_digest(build)
            )
            if not (half or leftover):
                continue
            users = processes_using([build])
            if users:
                skipped.append(f"{build} (in use: {in_use_message(build.name, users)})")
                continue
            removed.append(str(build))
            if not check:
                shutil.rmtree(build)
    return {"removed": removed, "skipped": skipped, "changed": bool(removed)}


def inspect(envs_dir: Path, builds_dir: Path) -> dict[str, Any]:
    """Every env gpulab made here (from the markers and recorded digests): its live build, builds,
    last MLP check record and disk use. Read-only."""
    names: set[str] = set()
    if builds_dir.is_dir():
        for build in builds_dir.iterdir():
            if not build.is_dir() or build.is_symlink():
                continue
            marker, _ = read_marker(build)
            if marker:
                names.add(marker["env"])
            elif re.match(rf"^.+-{_HEX12}$", build.name) and recorded_digest(build):
                names.add(build.name[:-13])
    envs: dict[str, Any] = {}
    trees: dict[str, list[Path]] = {}
    for name in sorted(names):
        live = live_build(envs_dir, name)
        builds = builds_of(builds_dir, name)
        trees[name] = builds
        live_marker = read_marker(live)[0] if live else None
        envs[name] = {
            "public": str(envs_dir / name),
            "live": str(live) if live and live in [Path(os.path.realpath(b)) for b in builds] else "",
            "digest": (live_marker or {}).get("digest") or (recorded_digest(live) if live else ""),
            "builds": [
                {
                    "path": str(b),
                    "complete": is_complete(b),
                    "digest": (read_marker(b)[0] or {}).get("digest") or recorded_digest(b),
                }
                for b in builds
            ],
            "check": (read_json(live / CHECK_RECORD) if live else None) or {},
            "versions": package_versions(live) if live else {},
        }
    usage = disk_usage(trees)
    for name, info in envs.items():
        info.update(usage["envs"][name])
    return {"envs": envs, "disk": usage["envs"], "total_bytes": usage["total_bytes"]}


VERSION_PACKAGES = {
    "python": ("python",),
    "framework": ("pytorch", "pytorch-gpu", "pytorch-cpu", "tensorflow", "tensorflow-gpu", "tensorflow-cpu"),
    "cuda": ("cuda-version",),
}


def package_versions(build: Path) -> dict[str, str]:
    """python / framework / CUDA versions from the build's conda-meta records (conda's own files)."""
    found: dict[str, str] = {}
    for path in sorted((build / "conda-meta").glob("*.json")):
        data = read_json(path)
        if not data or not isinstance(data.get("name"), str):
            continue
        for key, names in VERSION_PACKAGES.items():
            if data["name"] in names and key not in found:
                version = str(data.get("version", ""))
                found[key] = f"{data['name']} {version}" if key == "framework" else version
    return found


def record(build: Path, data: dict[str, Any], now: float | None = None) -> dict[str, Any]:
    """The last MLP check of a build (a log for `gpulab envs`, not configuration: reported unchanged),
    stamped with the digest of the build it checked and the host's time, so a later run can tell
    whether it still holds (`live`)."""
    now = time.time() if now is None else now
    data = {
        **data,
        "digest": recorded_digest(build),
        "epoch": now,
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now)),
    }
    _write_json(build / CHECK_RECORD, data)
    return data


def live_marker_problem(build: Path, name: str) -> str:
    """Why the build the public name points at is not provably gpulab's build of `name`: its marker
    unreadable, naming another env, or missing on a build that recorded no matching digest."""
    if not build.is_dir():
        return ""
    marker, problem = read_marker(build)
    if problem:
        return marker_problem(build)
    if marker is not None and marker.get("env") != name:
        return f"its gpulab marker {build / MARKER} names environment {marker.get('env')}, not {name}"
    if marker is None and owner_of(build, name) != "digest":
        return f"{build} has no gpulab marker"
    return ""


def live(
    envs_dir: Path, name: str, now: float | None = None, builds_dir: Path | None = None, digest: str = ""
) -> dict[str, Any]:
    """Everything a run needs to know about env `name`'s live build, read in one go: whether the public
    name exists and is a link, where it points, its python, the spec digest it recorded, its last MLP
    check and that check's age by this host's clock, and whether root may run its python. With
    `builds_dir` and the `digest` of the spec about to be built: where its build goes and whether one is
    kept there (`new_build`)."""
    public = envs_dir / name
    out: dict[str, Any] = {
        "exists": os.path.lexists(public),
        "link": public.is_symlink(),
        "target": "",
        "python": (public / "bin" / "python").exists(),
        "digest": "",
        "check": {},
        "check_age_s": None,
        "untrusted": "",
        "marker": "",
    }
    if out["link"]:
        out["target"] = os.path.realpath(public)
        out["marker"] = live_marker_problem(Path(out["target"]), name)
    if builds_dir is not None and digest:
        new_prefix, out["kept"] = new_build(builds_dir, name, digest, out["target"])
        out["new_prefix"] = str(new_prefix)
    if not out["python"]:
        return out
    out["digest"] = recorded_digest(public)
    check = read_json(public / CHECK_RECORD) or {}
    out["check"] = check
    if isinstance(check.get("epoch"), int | float):
        out["check_age_s"] = round((time.time() if now is None else now) - check["epoch"], 1)
    try:
        trusted_python(public)
    except BuildError as exc:
        out["untrusted"] = str(exc)
    return out


# -- Ansible glue ----------------------------------------------------------------------------------
def main() -> None:
    from ansible.module_utils.basic import AnsibleModule

    module = AnsibleModule(
        argument_spec={
            "state": {
                "type": "str",
                "required": True,
                "choices": [
                    "inspect",
                    "live",
                    "mark",
                    "seal",
                    "prune",
                    "absent",
                    "clean",
                    "trusted_python",
                    "record",
                ],
            },
            "name": {"type": "str"},
            "envs_dir": {"type": "path"},
            "builds_dir": {"type": "path"},
            "path": {"type": "path"},
            "digest": {"type": "str"},
            "run_id": {"type": "str", "default": ""},
            "complete": {"type": "bool", "default": False},
            "keep": {"type": "int", "default": 1},
            "group": {"type": "str", "default": ""},
            "data": {"type": "dict"},
            "spec_src": {"type": "path"},
        },
        required_if=[
            ("state", "inspect", ["envs_dir", "builds_dir"]),
            ("state", "live", ["envs_dir", "name"]),
            ("state", "clean", ["envs_dir", "builds_dir"]),
            ("state", "prune", ["envs_dir", "builds_dir", "name"]),
            ("state", "absent", ["envs_dir", "builds_dir", "name"]),
            ("state", "trusted_python", ["name"]),
            ("state", "trusted_python", ["envs_dir", "path"], True),
            ("state", "mark", ["path", "name", "digest"]),
            ("state", "seal", ["path", "name", "digest"]),
            ("state", "record", ["path", "data"]),
        ],
        supports_check_mode=True,
    )
    p = module.params
    state = p["state"]
    envs_dir = Path(p["envs_dir"]) if p["envs_dir"] else Path("/")
    builds_dir = Path(p["builds_dir"]) if p["builds_dir"] else Path("/")
    check = module.check_mode
    try:
        if state == "inspect":
            module.exit_json(changed=False, **inspect(envs_dir, builds_dir))
        elif state == "live":
            live_state = live(
                envs_dir, p["name"], builds_dir=builds_dir if p["builds_dir"] else None, digest=p["digest"] or ""
            )
            module.exit_json(changed=False, **live_state)
        elif state == "trusted_python":
            prefix = Path(p["path"]) if p["path"] else envs_dir / p["name"]
            python = trusted_python(prefix)
            build = Path(os.path.realpath(prefix))
            ours = bool(owner_of(build, p["name"]))
            module.exit_json(changed=False, python=str(python), build=str(build), gpulab_build=ours)
        elif state == "mark":
            build = Path(p["path"])
            spec = bool(p["spec_src"]) and p["complete"]
            recorded = spec and not check and record_spec(build, Path(p["spec_src"]), p["digest"])
            changed = check or write_marker(build, p["name"], p["digest"], p["run_id"], p["complete"])
            module.exit_json(changed=changed or recorded)
        elif state == "seal":
            if check:
                module.exit_json(changed=True, python="")
            changed, python = seal_new(Path(p["path"]), p["name"], p["digest"], p["run_id"], p["group"])
            module.exit_json(changed=changed, python=str(python))
        elif state == "record":
            written = p["data"] if check else record(Path(p["path"]), p["data"])
            module.exit_json(changed=False, record=written)
        elif state == "prune":
            module.exit_json(**prune(envs_dir, builds_dir, p["name"], p["keep"], check))
        elif state == "absent":
            module.exit_json(**remove_env(envs_dir, builds_dir, p["name"], check))
        else:
            module.exit_json(**clean(envs_dir, builds_dir, check))
    except BuildError as exc:
        module.fail_json(msg=str(exc))
    except (OSError, KeyError) as exc:
        module.fail_json(msg=f"dl_env_builds {state}: {exc}")


if __name__ == "__main__":
    main()
