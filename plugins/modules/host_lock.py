#!/usr/bin/python
# Copyright: gpulab contributors
# Apache-2.0 (see the repository's license)
"""Ansible module: the gpulab host lock (take, release, read) on the managed host."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: host_lock
short_description: Take, release or read the gpulab host lock
description:
  - The lock is the directory C(<dir>/lock) holding C(holder.json). It appears atomically with its holder
    inside (C(mkdir) of a private directory, C(holder.json) written, then C(rename) onto C(<dir>/lock), which
    fails when another run holds it), so a reader never sees a lock without a holder.
  - Only root can take it; O(dir) must be a root-owned directory that nobody else can enter (created 0700
    when missing; group/other bits are removed; another owner or a symlink is refused).
  - A held lock is broken (renamed to a private name, then removed) when it is stale; stale means the
    holder's boot id differs from the host's (O(boot_id_file)), the holder's run id is this run's or is in
    O(break_run_ids) (the caller found its controller process gone), O(force) is set, or C(holder.json)
    cannot be read. No clock is compared.
  - With O(state=present) it polls every O(poll) seconds up to O(wait) seconds, then returns
    C(acquired=false) with the C(holder); it does not fail, the caller writes the message.
  - O(state=absent) removes the lock only when O(run_id) holds it. O(state=query) only reads.
  - Check mode reads only.
options:
  dir:
    description: Root-only parent directory of the lock.
    type: path
    required: true
  state:
    description: present takes, absent releases, query reads.
    type: str
    choices: [present, absent, query]
    default: query
  run_id:
    description: This run's id (the holder to write, the holder to release).
    type: str
    default: ""
  holder:
    description: What to record besides run_id, boot_id and started (controller, controller_pid, user, play, ...).
    type: dict
    default: {}
  boot_id_file:
    description: File holding the host's current boot id.
    type: path
    default: /proc/sys/kernel/random/boot_id
  break_run_ids:
    description: Run ids whose lock may be broken (their controller process is gone).
    type: list
    elements: str
    default: []
  force:
    description: Break whatever lock is there (host_lock_break).
    type: bool
    default: false
  wait:
    description: Seconds to wait for a held lock.
    type: int
    default: 0
  poll:
    description: Seconds between two looks at a held lock.
    type: int
    default: 5
"""

EXAMPLES = r"""
- name: Take the host lock, waiting up to 10 minutes for another run to finish
  gpulab.gpulab.host_lock:
    dir: /run/gpulab
    state: present
    run_id: "{{ gpulab_run_id }}"
    holder:
      controller: "{{ lookup('gpulab.gpulab.host_lock_controller').controller }}"
    wait: 600
  register: lock

- name: Release it (only the holder's own run id releases)
  gpulab.gpulab.host_lock:
    dir: /run/gpulab
    state: absent
    run_id: "{{ gpulab_run_id }}"
"""

RETURN = r"""
acquired:
  description: Whether this run holds the lock now (state=present).
  type: bool
holder:
  description: The holder.json of the lock after the call (empty when there is none).
  type: dict
broken:
  description: Stale holders that were broken, each with the reason.
  type: list
released:
  description: Whether state=absent removed the lock.
  type: bool
waited:
  description: Seconds spent waiting for the lock.
  type: float
"""

import json
import os
import shutil
import stat
import time
import uuid
from datetime import datetime, timezone
from typing import Any

from ansible.module_utils.basic import AnsibleModule

LOCK_NAME = "lock"
HOLDER_NAME = "holder.json"


class LockError(Exception):
    """A condition the user must fix; the message says what."""


def _read_text(path: str) -> str:
    with open(path, encoding="utf-8") as fh:
        return fh.read().strip()


def _prepare_dir(path: str, check_mode: bool) -> bool:
    """Make sure the parent is a root-owned 0700 directory; returns whether it changed it."""
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        if check_mode:
            return True
        os.makedirs(os.path.dirname(path.rstrip("/")) or "/", mode=0o755, exist_ok=True)
        os.mkdir(path, 0o700)
        os.chmod(path, 0o700)
        return True
    if stat.S_ISLNK(info.st_mode) or not stat.S_ISDIR(info.st_mode):
        raise LockError(f"host_lock_dir {path} is not a directory (a symlink or a file); remove it")
    if info.st_uid != 0:
        raise LockError(
            f"host_lock_dir {path} is owned by uid {info.st_uid}, not root: someone else could take or fake "
            "the lock. Remove it (gpulab recreates it 0700 root) or set host_lock_dir to a root-only path."
        )
    if stat.S_IMODE(info.st_mode) & 0o077:
        if not check_mode:
            os.chmod(path, 0o700)
        return True
    return False


def _holder(lock: str) -> dict[str, Any] | None:
    """The holder of the lock; {} when there is no lock; None when the lock exists but has no readable holder."""
    if not os.path.lexists(lock):
        return {}
    try:
        data = json.loads(_read_text(os.path.join(lock, HOLDER_NAME)))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _stale_reason(holder: dict[str, Any] | None, params: dict[str, Any], boot_id: str) -> str:
    if holder is None:
        return "its holder.json is missing or unreadable"
    if params["force"]:
        return "host_lock_break is set"
    if holder.get("boot_id") != boot_id:
        return f"the host rebooted since (boot id {holder.get('boot_id')} -> {boot_id})"
    if params["run_id"] and holder.get("run_id") == params["run_id"]:
        return "it was left by this same run"
    if holder.get("run_id") in params["break_run_ids"]:
        return "its controller process is gone"
    return ""


def _break(parent: str, lock: str) -> None:
    """Rename the lock to a private name (atomic: exactly one breaker wins), then remove it."""
    aside = os.path.join(parent, f".broken-{uuid.uuid4().hex}")
    try:
        os.rename(lock, aside)
    except FileNotFoundError:
        return  # another run broke or released it first
    shutil.rmtree(aside, ignore_errors=True)


def _try_take(parent: str, lock: str, holder: dict[str, Any]) -> bool:
    private = os.path.join(parent, f".taking-{uuid.uuid4().hex}")
    os.mkdir(private, 0o700)
    try:
        fd = os.open(os.path.join(private, HOLDER_NAME), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(holder, fh, sort_keys=True)
            fh.flush()
            os.fsync(fh.fileno())
        try:
            os.rename(private, lock)  # fails (EEXIST/ENOTEMPTY) when another run holds it
        except OSError:
            return False
        return True
    finally:
        if os.path.lexists(private):
            shutil.rmtree(private, ignore_errors=True)


def run(params: dict[str, Any], check_mode: bool) -> dict[str, Any]:
    parent = params["dir"].rstrip("/") or "/"
    lock = os.path.join(parent, LOCK_NAME)
    result: dict[str, Any] = {"changed": False, "acquired": False, "broken": [], "released": False, "waited": 0.0}
    if params["state"] == "query":
        result["holder"] = (_holder(lock) or {}) if os.path.isdir(parent) else {}
        return result
    if os.geteuid() != 0:
        raise LockError(
            f"only root can take or release the gpulab host lock in {parent} (this task runs as uid "
            f"{os.geteuid()}); run with become: true (sudo) or connect as root"
        )
    if params["state"] == "absent":
        holder = _holder(lock)
        result["holder"] = holder or {}
        if holder and params["run_id"] and holder.get("run_id") == params["run_id"]:
            if not check_mode:
                _break(parent, lock)
            result.update(changed=True, released=True, holder={})
        return result

    result["changed"] = _prepare_dir(parent, check_mode)
    boot_id = _read_text(params["boot_id_file"])
    mine = dict(params["holder"], run_id=params["run_id"], boot_id=boot_id,
                started=datetime.now(timezone.utc).isoformat(timespec="seconds"))
    start = time.monotonic()
    while True:
        holder = _holder(lock)
        if holder == {}:
            if check_mode or _try_take(parent, lock, mine):
                result.update(acquired=not check_mode, holder={} if check_mode else mine)
                break
            continue  # lost the race to another run: look again
        reason = _stale_reason(holder, params, boot_id)
        if reason:
            result["broken"].append({"holder": holder or {}, "reason": reason})
            if check_mode:
                result["holder"] = holder or {}
                break
            _break(parent, lock)
            continue
        waited = time.monotonic() - start
        if waited >= params["wait"]:
            result["holder"] = holder
            break
        time.sleep(min(max(params["poll"], 1), max(params["wait"] - waited, 0.1)))
    result["waited"] = round(time.monotonic() - start, 1)
    return result


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "dir": {"type": "path", "required": True},
            "state": {"type": "str", "choices": ["present", "absent", "query"], "default": "query"},
            "run_id": {"type": "str", "default": ""},
            "holder": {"type": "dict", "default": {}},
            "boot_id_file": {"type": "path", "default": "/proc/sys/kernel/random/boot_id"},
            "break_run_ids": {"type": "list", "elements": "str", "default": []},
            "force": {"type": "bool", "default": False},
            "wait": {"type": "int", "default": 0},
            "poll": {"type": "int", "default": 5},
        },
        supports_check_mode=True,
    )
    if module.params["state"] != "query" and not module.params["run_id"]:
        module.fail_json(msg="host_lock: run_id is required to take or release the lock")
    try:
        module.exit_json(**run(module.params, module.check_mode))
    except (LockError, OSError) as exc:
        module.fail_json(msg=f"host lock: {exc}")


if __name__ == "__main__":
    main()
