"""Graceful stop: SIGINT/SIGTERM/SIGHUP ask the playbook to stop between steps, and only later kill it.

Ansible runs no ``rescue``/``always`` when its process is killed, so the first signal only writes a stop
file on the controller. Its path reaches the playbooks as ``gpulab_stop_file``; the ``host_lock`` role's
``checkpoint`` tasks, run between phases, fail a host with "stop requested" when it exists, so the play's
``always:`` releases the host lock. A second signal, or the run still going after the grace period
(``--stop-timeout``, ``GPULAB_STOP_TIMEOUT``, default 60 s), makes the driver kill ansible; it then runs
``playbooks/cleanup.yml`` (locks held by this run, temporary files). The kill takes every process of the
run (:func:`kill_run`), not only ansible-playbook's process group: Ansible's workers run in sessions of
their own, and one left alive would go on with its step (a ``conda env create``) while cleanup.yml runs.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import time
from dataclasses import dataclass
from pathlib import Path

import psutil

from gpulab.errors import UsageError

SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
DEFAULT_GRACE = 60.0
GRACE_ENV = "GPULAB_STOP_TIMEOUT"
STOP_FILE = "stop-requested"
CLEANUP_PLAYBOOK = "cleanup.yml"
STOPPING = "stopping after the current step… (Ctrl-C again to kill)"
KILLING = "killing ansible now; then cleaning up (locks of this run, temporary files)"


def grace_seconds(option: float | None, environ: dict[str, str] | None = None) -> float:
    """The grace period: the option, else ``GPULAB_STOP_TIMEOUT``, else 60 s."""
    env = os.environ if environ is None else environ
    raw: float | str | None = option if option is not None else env.get(GRACE_ENV)
    if raw is None or raw == "":
        return DEFAULT_GRACE
    try:
        value = float(raw)
    except ValueError as exc:
        raise UsageError(f"{GRACE_ENV}={raw!r}: expected seconds") from exc
    if value < 0:
        name = "--stop-timeout" if option is not None else GRACE_ENV
        raise UsageError(f"{name} must be 0 or more seconds")
    return value


def run_vars(ident: str, stop_file: Path) -> dict[str, object]:
    """The extravars every run passes (host_lock records the holder; checkpoints read the stop file)."""
    return {
        "gpulab_run_id": ident,
        "gpulab_controller": socket.gethostname(),
        "gpulab_controller_pid": os.getpid(),
        "gpulab_stop_file": str(stop_file),
    }


@dataclass
class StopRequest:
    """The state of a stop: requested by a signal, then escalated by a second one or the grace period."""

    path: Path
    grace: float = DEFAULT_GRACE
    requested_at: float | None = None
    signal_name: str | None = None
    escalated: bool = False
    escalated_by: str | None = None  # "signal" | "timeout"

    @property
    def requested(self) -> bool:
        return self.requested_at is not None

    def on_signal(self, signum: int) -> str:
        """Record a signal; return the line to print."""
        if not self.requested:
            self.requested_at = time.monotonic()
            self.signal_name = signal.Signals(signum).name
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.path.write_text(f"{self.signal_name}\n", encoding="utf-8")
            return STOPPING
        if not self.escalated:
            self.escalated, self.escalated_by = True, "signal"
        return KILLING

    def overdue(self, now: float | None = None) -> bool:
        """True once, when the grace period has passed without the run ending (escalates)."""
        if self.requested_at is None or self.escalated:
            return False
        if (now if now is not None else time.monotonic()) - self.requested_at < self.grace:
            return False
        self.escalated, self.escalated_by = True, "timeout"
        return True

    def clear(self) -> None:
        self.path.unlink(missing_ok=True)


def kill_run(run_dir: Path) -> list[int]:
    """SIGKILL every process of the run in ``run_dir``: this process's children whose command line names
    it (ansible-playbook; ``podman run`` with ``--ee``) and all their descendants (Ansible's workers, the
    commands they run). Returns the pids killed.

    The tree is frozen first (SIGSTOP, again until no new process appears): a process forked between
    reading the tree and the kill would otherwise escape, re-parented, and go on alone."""
    mark = str(run_dir)
    frozen: dict[int, psutil.Process] = {}
    while True:
        found = [p for p in _tree(mark) if p.pid not in frozen]
        if not found:
            break
        for proc in found:
            frozen[proc.pid] = proc
            with contextlib.suppress(psutil.Error):  # it ended meanwhile
                proc.suspend()
    for proc in frozen.values():
        with contextlib.suppress(psutil.Error):
            proc.kill()
    return list(frozen)


def _tree(mark: str) -> list[psutil.Process]:
    """This process's children whose command line contains ``mark``, and their descendants."""
    tree: list[psutil.Process] = []
    for child in psutil.Process().children():
        with contextlib.suppress(psutil.Error):  # it ended meanwhile
            if any(mark in arg for arg in child.cmdline()):
                tree += [child, *child.children(recursive=True)]
    return tree
