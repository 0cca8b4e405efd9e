# Copyright: gpulab contributors
# Apache-2.0 (see the repository's license)
"""Lookup plugin: who this controller is (host, process, user, default run id), read on the controller."""

# Ansible reads DOCUMENTATION before the imports (its plugin layout), hence E402.
# ruff: noqa: E402

from __future__ import annotations

DOCUMENTATION = r"""
name: host_lock_controller
short_description: The controller's identity for the gpulab host lock
description:
  - Returns one dict with C(controller) (host name), C(pid) (the ansible-playbook process, or O(pid)),
    C(pid_start) (that process's start time in clock ticks since boot, C("") when it is not running),
    C(user) and C(run_id) (a default run id from the process's start time and pid, the same in every
    worker of one run).
  - C(pid_start) with C(pid) tells a live process from a reused pid without comparing clocks.
options:
  pid:
    description: Process to describe instead of this ansible-playbook process.
    type: int
"""

import getpass
import multiprocessing
import os
import socket
from datetime import UTC, datetime
from typing import Any

from ansible.plugins.lookup import LookupBase


def _start_ticks(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as fh:
            # Field 22 (starttime) counts after the ")" that ends the command name, which may hold spaces.
            return fh.read().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return ""


def _boot_time() -> int:
    with open("/proc/stat", encoding="ascii") as fh:
        for line in fh:
            if line.startswith("btime "):
                return int(line.split()[1])
    return 0


def playbook_pid() -> int:
    """The ansible-playbook process: workers are its multiprocessing children."""
    parent = multiprocessing.parent_process()
    return parent.pid if parent is not None and parent.pid is not None else os.getpid()


def identity(pid: int | None = None) -> dict[str, Any]:
    own = playbook_pid()
    pid = own if pid is None else int(pid)
    start = _start_ticks(pid)
    run_start = _start_ticks(own)
    started = _boot_time() + (int(run_start) // os.sysconf("SC_CLK_TCK") if run_start else 0)
    stamp = datetime.fromtimestamp(started, UTC).strftime("%Y%m%dT%H%M%SZ")
    return {
        "controller": socket.gethostname(),
        "pid": pid,
        "pid_start": start,
        "user": getpass.getuser(),
        "run_id": f"{stamp}-{socket.gethostname()}-{own}",
    }


class LookupModule(LookupBase):
    def run(self, terms: list[Any], variables: dict[str, Any] | None = None, **kwargs: Any) -> list[Any]:
        self.set_options(var_options=variables, direct=kwargs)
        return [identity(self.get_option("pid"))]
