"""Turn ansible-runner events into per-host progress and results.

Pure and cheap: :func:`apply_event` folds one event (the dict ansible-runner hands to its
``event_handler``) into a :class:`RunState` and returns a one-line description of what changed, or
None. Nothing here does I/O; the runner's event handler keeps returning True so ``job_events/`` and
``Runner.stats`` stay complete.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass, field
from typing import Any

# Facts a role publishes with set_fact that the report shows (architecture.md, "Roles").
FACT_PREFIXES = ("cuda_check_", "dl_env_", "miniconda_")
# set_stats keys (per_host: false) holding {host: {...}}; "gpulab" is the contract, "gpulab_hosts" an alias.
STATS_KEYS = ("gpulab", "gpulab_hosts")

# The phases a person follows a host through (docs/cli.md "While it runs"): the roles in site.yml's order,
# with dl_env's MLP check ("verify | ..." tasks) as its own last phase; tasks outside a role are "setup".
PHASES = ("setup", "cuda_check", "miniconda", "dl_env", "verify")

_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
# Ansible's (2.19) frame around a plugin's own error in a templated argument: "Task failed: Finalization of
# task args for 'set_fact' failed: Error while resolving value for 'x': The filter plugin 'f' failed: <msg>".
# The collection's filters say what is wrong and what to do (plugins/plugin_utils/filter_errors.py), so the
# summary shows their words, which the frame would push past _MAX_MESSAGE.
_PLUGIN_FAILED = re.compile(
    r"^Task failed: (?:.*?: )?The (?:filter|test|lookup) plugin '[^']+' failed: ", re.S
)
_MAX_MESSAGE = 400
_MAX_EARLY_LINES = 20


@dataclass
class HostState:
    name: str
    role: str = ""
    task: str = ""
    ok: int = 0
    changed: int = 0
    failed: int = 0
    unreachable: int = 0
    skipped: int = 0
    ignored: int = 0
    rescued: int = 0
    failed_task: str = ""
    message: str = ""
    facts: dict[str, Any] = field(default_factory=dict)
    stats_data: dict[str, Any] = field(default_factory=dict)
    done: bool = False
    phase: str = ""
    tasks_started: int = 0  # tasks this host began (runner_on_start), for "task i of n"
    changed_tasks: list[str] = field(default_factory=list)  # tasks that changed something, in order
    in_task: bool = False  # a task started on this host and has not reported back yet

    @property
    def status(self) -> str:
        if self.unreachable:
            return "unreachable"
        if self.failed:
            return "failed"
        return "ok"


@dataclass
class Batch:
    """One run of a play over a batch of its hosts (ansible's `serial` sends a play start per batch)."""

    play: str
    hosts: list[str] = field(default_factory=list)  # hosts that began a task in it, in order
    stopped: bool = False  # ansible stopped it ("no hosts remaining": max_fail_percentage or all failed)


@dataclass
class RunState:
    hosts: dict[str, HostState] = field(default_factory=dict)
    batches: list[Batch] = field(default_factory=list)
    playbook: str = ""
    play: str = ""
    started: bool = False  # playbook_on_start seen: ansible parsed its input and began
    finished: bool = False  # playbook_on_stats seen: ansible ran to the end
    artifact_data: dict[str, Any] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)  # ansible's own [ERROR] lines (verbose events)
    warnings: list[str] = field(default_factory=list)
    early_output: list[str] = field(default_factory=list)  # other output before the playbook started
    events: int = 0

    def host(self, name: str) -> HostState:
        if name not in self.hosts:
            self.hosts[name] = HostState(name=name)
        return self.hosts[name]


def _clean(text: str) -> str:
    return _ANSI.sub("", text).strip()


# Tasks that do not start a phase of their own: the host lock taken/released around the roles, and the
# argument-spec validation ansible runs on entering a role (the role's first real task starts its phase).
_NO_PHASE = ("lock |", "unlock |", "validating arguments against arg spec")


def phase_of(role: str, task: str, current: str = "") -> str:
    """The phase (one of PHASES) a task belongs to, from its role and its ``<phase> | ...`` name prefix."""
    name = task.lower()
    if current and name.startswith(_NO_PHASE):
        return current
    if role == "dl_env" and name.startswith("verify |"):
        return "verify"
    return role if role in PHASES else current or "setup"


def _shorten(text: str) -> str:
    text = " ".join(_clean(text).split())
    return text if len(text) <= _MAX_MESSAGE else text[: _MAX_MESSAGE - 1] + "…"


def failure_message(res: dict[str, Any]) -> str:
    """The most useful one-line message in a failed or unreachable task result."""
    for key in ("msg", "stderr", "stdout", "module_stderr", "module_stdout", "reason"):
        value = res.get(key)
        if isinstance(value, str) and value.strip():
            text = value
            break
    else:
        text = ""
    items = res.get("results")
    if isinstance(items, list):
        for item in items:
            if isinstance(item, dict) and item.get("failed"):
                detail = failure_message(item)
                if detail:
                    label = item.get("item")
                    prefix = f"item {label}: " if isinstance(label, str | int | float) else ""
                    text = f"{text} ({prefix}{detail})" if text else f"{prefix}{detail}"
                break
    if not text and res.get("rc") not in (None, 0):
        text = f"rc={res['rc']}"
    return _shorten(_PLUGIN_FAILED.sub("", text, count=1))


def _published_facts(res: dict[str, Any]) -> dict[str, Any]:
    facts = res.get("ansible_facts")
    if not isinstance(facts, dict):
        return {}
    return {k: v for k, v in facts.items() if isinstance(k, str) and k.startswith(FACT_PREFIXES)}


def _stats_hosts(data: Any) -> dict[str, dict[str, Any]]:
    """``{host: {...}}`` from set_stats data (either the artifact_data or one task's ansible_stats.data)."""
    out: dict[str, dict[str, Any]] = {}
    if not isinstance(data, dict):
        return out
    for key in STATS_KEYS:
        block = data.get(key)
        if isinstance(block, dict):
            for host, values in block.items():
                if isinstance(values, dict):
                    out.setdefault(str(host), {}).update(values)
    return out


def _record_stats(state: RunState, data: Any) -> None:
    for host, values in _stats_hosts(data).items():
        state.host(host).stats_data.update(values)


_TASK_ENDS = ("runner_on_ok", "runner_on_failed", "runner_on_unreachable", "runner_on_skipped")

# OpenSSH's words when the key a host presents is not the one in known_hosts (sshconnect.c), and ssh's own
# suggestion of the command that removes the old key.
HOST_KEY_CHANGED = ("REMOTE HOST IDENTIFICATION HAS CHANGED", "Host key verification failed")
HOST_KEY_ADVICE = "the SSH host key of"  # how host_key_advice's message begins (the summary repeats it whole)
_QUOTED = r"""(?:'([^']*)'|"([^"]*)"|(\S+))"""  # ssh quotes with '' (OpenSSH >= 8.x) or "" (older)
_SSH_KEYGEN_HINT = re.compile(rf"ssh-keygen -f {_QUOTED} -R {_QUOTED}")
_OFFENDING = re.compile(r"Offending \S* ?key in (\S+):\d+")
_DEFAULT_KNOWN_HOSTS = "~/.ssh/known_hosts"


def _first(groups: tuple[str | None, ...]) -> str:
    return next((g for g in groups if g), "")


def host_key_advice(host: str, res: dict[str, Any]) -> str:
    """For an unreachable result caused by a changed SSH host key: what happened and what to do, else "".

    The command is the one ssh itself suggests ("remove with: ssh-keygen -f FILE -R TARGET"): the known_hosts
    file that holds the old key (a lab's or a UserKnownHostsFile, not always ~/.ssh/known_hosts) and the
    target as ssh knows it (``[address]:port``), which is not the inventory name.
    """
    text = " ".join(str(res.get(key) or "") for key in ("msg", "stderr", "module_stderr"))
    if not any(marker in text for marker in HOST_KEY_CHANGED):
        return ""
    hint = _SSH_KEYGEN_HINT.search(text)
    offending = _OFFENDING.search(text)
    if hint:
        known_hosts, target = _first(hint.groups()[:3]), _first(hint.groups()[3:])
    else:
        known_hosts, target = (offending.group(1) if offending else ""), host
    remove = f"ssh-keygen -R {shlex.quote(target)}"
    if known_hosts and known_hosts != _DEFAULT_KNOWN_HOSTS:
        remove = f"ssh-keygen -f {shlex.quote(known_hosts)} -R {shlex.quote(target)}"
    return (
        f"{HOST_KEY_ADVICE} {host} changed (or is not the one in known_hosts): if {host} was reinstalled,"
        f" check its new key fingerprint with the node's console, then run `{remove}` and"
        " retry; if it was not reinstalled, do not connect (the key change may be an attack)"
    )


# ansible's connection plugins raise these when become's password is wrong or was not given (ssh.py).
_BECOME_PASSWORD = re.compile(r"\b(Incorrect|Missing) (\w+) password\b")


def become_advice(message: str) -> str:
    """A failed become password gets the options that give it: one clear line per host, never a hang."""
    match = _BECOME_PASSWORD.search(message)
    if not match:
        return message
    what = "was rejected" if match.group(1) == "Incorrect" else "is needed"
    return _shorten(
        f"{message} (the {match.group(2)} password {what}: give it with -K/--ask-become-pass or"
        " --become-password-file, or set ansible_become_password in a vaulted inventory file)"
    )


def apply_event(state: RunState, event: dict[str, Any]) -> str | None:
    """Fold ``event`` into ``state``; return a plain progress line for it, or None if it is not news."""
    state.events += 1
    kind = event.get("event", "")
    data = event.get("event_data") or {}
    if not isinstance(data, dict):
        data = {}
    host_name = data.get("host")
    task = str(data.get("task") or "")
    role = str(data.get("role") or "")

    if kind == "verbose":
        line = _clean(str(event.get("stdout") or ""))
        if line.startswith("[ERROR]:") or line.startswith("ERROR!"):
            state.errors.append(
                line.split(":", 1)[1].strip() if line.startswith("[ERROR]") else line[6:].strip()
            )
        elif line.startswith("Origin:") and state.errors and "Origin:" not in state.errors[-1]:
            state.errors[-1] += f" ({line})"
        elif line.startswith("[WARNING]:"):
            state.warnings.append(line.split(":", 1)[1].strip())
        elif line and not state.started and len(state.early_output) < _MAX_EARLY_LINES:
            state.early_output.append(line)
        return None
    if kind == "playbook_on_start":
        state.started = True
        state.playbook = str(data.get("playbook") or "")
        return None
    if kind == "playbook_on_play_start":
        state.play = str(data.get("name") or data.get("play") or "")
        state.batches.append(Batch(state.play))
        number = sum(1 for b in state.batches if b.play == state.play)
        return f"PLAY {state.play}" + (f" (batch {number})" if number > 1 else "")
    if kind == "playbook_on_no_hosts_remaining":
        if state.batches:
            state.batches[-1].stopped = True
        return None
    if kind == "playbook_on_stats":
        state.finished = True
        artifact = data.get("artifact_data")
        if isinstance(artifact, dict):
            state.artifact_data = artifact
            _record_stats(state, artifact)
        apply_stats(state, data)
        return None
    if not isinstance(host_name, str) or not host_name:
        return None

    host = state.host(host_name)
    label = f"{role} : {task}" if role else task
    raw_res = data.get("res")
    res: dict[str, Any] = raw_res if isinstance(raw_res, dict) else {}
    if kind in _TASK_ENDS:
        host.in_task = False
    if kind == "runner_on_start":
        if state.batches and host_name not in state.batches[-1].hosts:
            state.batches[-1].hosts.append(host_name)
        host.role, host.task = role, task
        host.in_task = True
        host.tasks_started += 1
        host.phase = phase_of(role, task, host.phase)
        return None
    if kind == "runner_on_ok":
        host.ok += 1
        if res.get("changed"):
            host.changed += 1
            host.changed_tasks.append(label)
        host.facts.update(_published_facts(res))
        stats = res.get("ansible_stats")
        if isinstance(stats, dict):
            _record_stats(state, stats.get("data"))
        return f"{'changed' if res.get('changed') else 'ok'}: [{host_name}] {label}"
    if kind == "runner_on_failed":
        if data.get("ignore_errors"):
            host.ignored += 1
            return f"failed (ignored): [{host_name}] {label}"
        host.failed += 1
        host.failed_task = label
        host.message = become_advice(failure_message(res))
        return f"FAILED: [{host_name}] {label}: {host.message}"
    if kind == "runner_on_unreachable":
        host.unreachable += 1
        host.failed_task = label
        host.message = host_key_advice(host_name, res) or failure_message(res)
        return f"UNREACHABLE: [{host_name}] {label}: {host.message}"
    if kind == "runner_on_skipped":
        host.skipped += 1
        return None
    if kind == "runner_item_on_failed" and not data.get("ignore_errors"):
        return f"failed item: [{host_name}] {label}: {failure_message(res)}"
    return None


def apply_stats(state: RunState, stats: dict[str, Any]) -> None:
    """Replace the live counters with ansible's final ones (``playbook_on_stats`` / ``Runner.stats``)."""
    names: set[str] = set()
    for key in ("processed", "ok", "changed", "failures", "dark", "skipped", "ignored", "rescued"):
        block = stats.get(key)
        if isinstance(block, dict):
            names.update(str(h) for h in block)
    for name in names:
        host = state.host(name)

        def count(key: str, host_name: str = name) -> int:
            block = stats.get(key)
            value = block.get(host_name, 0) if isinstance(block, dict) else 0
            return int(value) if isinstance(value, int) else 0

        host.ok = count("ok")
        host.changed = count("changed")
        host.failed = count("failures")
        host.unreachable = count("dark")
        host.skipped = count("skipped")
        host.ignored = count("ignored")
        host.rescued = count("rescued")
        host.done = True
        host.role = host.task = ""
