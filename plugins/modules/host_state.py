#!/usr/bin/python
# Copyright: gpulab contributors
# Apache-2.0 (see the repository's license)
"""Ansible module: the record of a host's last full gpulab run, for the re-run fast path (playbooks/site.yml)."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: host_state
short_description: Record a host's state after a full gpulab run; tell whether the host still matches it
description:
  - The re-run fast path of C(playbooks/site.yml) (docs/performance.md). After a full run that changed the host
    into what its inputs ask for, O(state=present) records, in one root-only file, the run's O(inputs) digest,
    a fingerprint of the driver and GPUs (nvidia-smi, read as M(gpulab.gpulab.nvidia_gpu_facts) reads it), a
    fingerprint of every file the roles manage (O(paths) - type, mode, owner, group, size, modification and
    change times, link target), and what the roles published (O(outputs)).
  - O(state=query) reads the record and the host again in one round trip and returns C(current=true) only when
    nothing differs (same inputs, same driver and GPUs, every fingerprinted file as recorded, no host lock
    present, and the oldest recorded MLP check younger than the recorded max age). Otherwise C(reasons) says
    what differs, and the playbook runs the roles in full.
  - The action plugin of the same name computes O(inputs) on the controller (every role variable as resolved
    for the host, the controller files they name, and gpulab's own roles and plugins).
  - Reading never changes anything; check mode writes nothing.
options:
  state:
    description: query compares the host with its record; present writes the record.
    type: str
    choices: [present, query]
    default: query
  path:
    description: The record file (root-only, written atomically).
    type: path
    default: /var/lib/gpulab/state.json
  inputs:
    description: Digest of the run's inputs (set by the action plugin).
    type: str
    required: true
  paths:
    description: Files, directories and links to fingerprint (glob patterns allowed); O(state=present) only.
    type: list
    elements: str
    default: []
  lock_dir:
    description: Directory of the host lock (a C(lock) inside means another run holds the host or left it).
    type: path
    default: /run/gpulab
  check_max_age:
    description: Seconds a recorded MLP check holds (dl_env_check_max_age; 0 = every run checks).
    type: int
    default: 0
  outputs:
    description: What the roles published (facts, stats), as a re-run that changes nothing publishes it.
    type: dict
    default: {}
  nvidia_smi_path:
    description: nvidia-smi to run ("" = search PATH and the usual directories, as nvidia_gpu_facts does).
    type: path
    default: ""
  proc_version_path:
    description: The NVIDIA kernel module's version file.
    type: path
    default: /proc/driver/nvidia/version
  timeout:
    description: Seconds nvidia-smi may take.
    type: int
    default: 60
"""

EXAMPLES = r"""
- name: Compare the host with the record of its last full run
  gpulab.gpulab.host_state:
  register: state

- name: Record the state this full run left
  gpulab.gpulab.host_state:
    state: present
    inputs: "{{ state.inputs }}"
    paths: [/opt/miniconda3/.condarc, "/opt/miniconda3/envs/*"]
"""

RETURN = r"""
current:
  description: The host matches its record (query).
  type: bool
  returned: always
reasons:
  description: What differs from the record (query; empty when current).
  type: list
  elements: str
  returned: always
outputs:
  description: The recorded outputs, each MLP check's C(check_age_s) brought to now (query, when current).
  type: dict
  returned: always
recorded_at:
  description: When the record was written (epoch seconds; null without a record).
  type: float
  returned: always
"""

import glob
import hashlib
import json
import os
import stat
import tempfile
import time
from typing import Any

RECORD_VERSION = 1
# Reasons listed by name before "... and N more".
MAX_LISTED = 5


def describe(path: str) -> str:
    """A path's fingerprint from lstat, never following links and never reading content (a package cache may
    hold gigabytes): type, mode, owner, group, size, and the modification and change times. Any write, chmod,
    chown or rename moves the change time, which nobody can set back; a directory's times move when an entry
    is added, removed or renamed in it."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return "missing"
    kind = "link" if stat.S_ISLNK(st.st_mode) else "dir" if stat.S_ISDIR(st.st_mode) else "file"
    target = f" -> {os.readlink(path)}" if kind == "link" else ""
    return (
        f"{kind} {stat.S_IMODE(st.st_mode):o} {st.st_uid}:{st.st_gid} {st.st_size} "
        f"{st.st_mtime_ns} {st.st_ctime_ns}{target}"
    )


def is_glob(pattern: str) -> bool:
    return any(char in pattern for char in "*?[")


def fingerprint(patterns: list[str]) -> dict[str, str]:
    """Each pattern's matches described; a glob that matches nothing is recorded as such."""
    found: dict[str, str] = {}
    for pattern in patterns:
        if not is_glob(pattern):
            found[pattern] = describe(pattern)
            continue
        matches = sorted(glob.glob(pattern))
        found[pattern] = f"glob {len(matches)}"
        for match in matches:
            found[match] = describe(match)
    return found


def driver_fingerprint(facts: dict[str, Any]) -> str:
    """Digest of what nvidia-smi says about the driver and GPUs (warnings and sources left out)."""
    kept = {k: v for k, v in facts.items() if k not in ("nvidia_smi_warnings", "nvidia_smi_sources")}
    return hashlib.sha256(json.dumps(kept, sort_keys=True).encode()).hexdigest()


def with_ages(value: Any, now: float) -> Any:
    """The outputs with every MLP check's check_age_s counted from its checked_at to now."""
    if isinstance(value, dict):
        aged = {k: with_ages(v, now) for k, v in value.items()}
        if isinstance(value.get("checked_at"), (int, float)):
            aged["check_age_s"] = max(0, int(now - value["checked_at"]))
        return aged
    if isinstance(value, list):
        return [with_ages(v, now) for v in value]
    return value


def oldest_check(value: Any) -> float | None:
    """The oldest checked_at in the outputs (None when no check was recorded)."""
    if isinstance(value, dict):
        own = [value["checked_at"]] if isinstance(value.get("checked_at"), (int, float)) else []
        found = own + [t for t in (oldest_check(v) for v in value.values()) if t is not None]
        return min(found) if found else None
    if isinstance(value, list):
        times = [t for t in (oldest_check(v) for v in value) if t is not None]
        return min(times) if times else None
    return None


def drifted(recorded: dict[str, str], patterns: list[str]) -> str:
    """What changed since the record, grouped (gone, new, changed), a path under a listed one left out (a
    glob's own entry, its match count, changes only with its matches, which are listed)."""
    seen = fingerprint(patterns)
    groups: dict[str, list[str]] = {"gone": [], "new": [], "changed": []}
    for path in sorted((set(recorded) | set(seen)) - {p for p in patterns if is_glob(p)}):
        old, new = recorded.get(path, "missing"), seen.get(path, "missing")
        if old == new:
            continue
        kind = "gone" if new == "missing" else "new" if old == "missing" else "changed"
        if not any(path.startswith(listed + "/") for listed in groups[kind]):
            groups[kind].append(path)
    parts = []
    for kind, paths in groups.items():
        more = f" and {len(paths) - MAX_LISTED} more" if len(paths) > MAX_LISTED else ""
        if paths:
            parts.append(f"{kind} {', '.join(paths[:MAX_LISTED])}{more}")
    return "; ".join(parts)


def differences(record: dict[str, Any], inputs: str, driver: str, now: float) -> list[str]:
    """Why the host no longer matches its record ([] when it does)."""
    if record.get("version") != RECORD_VERSION:
        return ["the record was written by another gpulab version"]
    reasons = []
    if record.get("inputs") != inputs:
        reasons.append("the inputs changed (role variables, the controller files they name, or gpulab itself)")
    if record.get("driver") != driver:
        reasons.append("nvidia-smi reports another driver or other GPUs")
    lock = os.path.join(record.get("lock_dir", ""), "lock")
    if os.path.lexists(lock):
        reasons.append(f"the host lock {lock} is held (another run) or was left by one")
    drift = drifted(record.get("paths", {}), record.get("patterns", []))
    if drift:
        reasons.append(f"changed since the last full run: {drift}")
    max_age = record.get("check_max_age", 0)
    oldest = oldest_check(record.get("outputs", {}))
    # As dl_env_check_max_age means it: 0 checks on every run.
    if oldest is not None and now - oldest > max_age:
        reasons.append(f"the MLP check is older than dl_env_check_max_age ({max_age} s)")
    return reasons


def read_record(path: str) -> tuple[dict[str, Any] | None, str]:
    """(record, "") or (None, why there is none)."""
    try:
        with open(path, encoding="utf-8") as handle:
            record = json.load(handle)
    except FileNotFoundError:
        return None, "no record of a full run yet"
    except (OSError, ValueError) as exc:
        return None, f"the record {path} cannot be read ({exc}): a full run rewrites it"
    if not isinstance(record, dict):
        return None, f"the record {path} is not a JSON object: a full run rewrites it"
    return record, ""


def write_record(path: str, record: dict[str, Any], check_mode: bool) -> bool:
    """Write the record atomically (0600 in a 0700 directory); False when the same record is there."""
    old, _ = read_record(path)
    if old is not None and {**old, "recorded_at": None} == {**record, "recorded_at": None}:
        return False
    if check_mode:
        return True
    directory = os.path.dirname(path)
    os.makedirs(directory, mode=0o700, exist_ok=True)
    fd, temporary = tempfile.mkstemp(dir=directory, prefix=".state.")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(record, handle, sort_keys=True)
        os.replace(temporary, path)
    except BaseException:
        os.unlink(temporary)
        raise
    return True


def main() -> None:
    from ansible.module_utils.basic import AnsibleModule

    from ansible_collections.gpulab.gpulab.plugins.module_utils.nvidia_smi import (
        OPTIONS,
        NvidiaSmiError,
        read_host,
    )

    module = AnsibleModule(
        argument_spec=OPTIONS
        | {
            "state": {"type": "str", "choices": ["present", "query"], "default": "query"},
            "path": {"type": "path", "default": "/var/lib/gpulab/state.json"},
            "inputs": {"type": "str", "required": True},
            "paths": {"type": "list", "elements": "str", "default": []},
            "lock_dir": {"type": "path", "default": "/run/gpulab"},
            "check_max_age": {"type": "int", "default": 0},
            "outputs": {"type": "dict", "default": {}},
        },
        supports_check_mode=True,
    )
    params = module.params

    def driver_now(nvidia: dict[str, Any]) -> str:
        try:
            facts = read_host(nvidia["nvidia_smi_path"], nvidia["proc_version_path"], nvidia["timeout"])
        except NvidiaSmiError as exc:
            return f"error {exc.state}"
        return driver_fingerprint(facts)

    now = time.time()
    if params["state"] == "query":
        record, missing = read_record(params["path"])
        if record is None:
            module.exit_json(changed=False, current=False, reasons=[missing], outputs={}, recorded_at=None)
        reasons = differences(record, params["inputs"], driver_now(record.get("nvidia", params)), now)
        outputs = {} if reasons else with_ages(record.get("outputs", {}), now)
        module.exit_json(
            changed=False,
            current=not reasons,
            reasons=reasons,
            outputs=outputs,
            recorded_at=record.get("recorded_at"),
            # A matching host publishes what its last full run published, as the roles would again.
            ansible_facts=outputs.get("facts", {}),
        )
    nvidia = {key: params[key] for key in OPTIONS}
    record = {
        "version": RECORD_VERSION,
        "inputs": params["inputs"],
        "driver": driver_now(nvidia),
        "nvidia": nvidia,
        "lock_dir": params["lock_dir"],
        "check_max_age": params["check_max_age"],
        "patterns": params["paths"],
        "paths": fingerprint(params["paths"]),
        "outputs": params["outputs"],
        "recorded_at": now,
    }
    try:
        changed = write_record(params["path"], record, module.check_mode)
    except OSError as exc:
        module.fail_json(msg=f"host_state: cannot write {params['path']}: {exc}")
    module.exit_json(changed=changed, current=True, reasons=[], outputs={}, recorded_at=now)


if __name__ == "__main__":
    main()
