"""Run one playbook through ansible-runner's Python API and keep its artifacts.

Layout of the state directory (``GPULAB_STATE_DIR``, default ``<project>/runs`` in a checkout,
``~/.local/state/gpulab/runs`` for an installed gpulab, see :func:`gpulab.collection.work_dir`)::

    runs/<ident>/            one per run: ansible-runner's private data dir *and* artifact dir
        job_events/*.json    every event (the event handler returns True)
        stdout, stderr, command, rc, status     written by ansible-runner
        fact_cache/          the run's jsonfile fact cache (runs/fact_cache with GPULAB_FACT_CACHE=shared)
        env/                 gpulab's 0600 extravars files, removed when the run ends (gpulab.extravars)
        stop-requested       while a graceful stop is pending (gpulab.stop)
        cleanup/             the cleanup.yml run after a killed run (same layout)
        report.json          written by gpulab (docs/report-schema.md)
    runs/last                symlink to the newest run that wrote a report

Retention: ``prune_runs`` keeps the newest N run directories. ansible-runner's own ``rotate_artifacts``
is not used because it removes *every* entry in the artifacts parent (here: ``last`` too, and
``shutil.rmtree`` on a symlink raises), see ``ansible_runner.utils.cleanup_artifact_dir``.
"""

from __future__ import annotations

import os
import re
import secrets
import shlex
import shutil
import sys
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from gpulab import collection, ee_run, strategy
from gpulab import extravars as xvars
from gpulab.connection import ConnectionOptions
from gpulab.errors import ExitCode, GpulabError, ParseError, UsageError
from gpulab.redact import Redactor
from gpulab.stop import kill_run

IDENT_RE = re.compile(r"^\d{8}T\d{6}Z-[0-9a-f]{6}$")
LAST = "last"
REPORT_NAME = "report.json"
DEFAULT_KEEP_RUNS = 20
# How often (s) ansible-runner's pexpect loop wakes up to ask the cancel callback.
_PEXPECT_TIMEOUT = 0.5

# ansible-core's default collections_path, kept after gpulab's own when the user sets none.
_DEFAULT_COLLECTIONS = os.pathsep.join(["~/.ansible/collections", "/usr/share/ansible/collections"])

EventHandler = Callable[[dict[str, Any]], bool]


def project_dir() -> Path:
    """Where the playbooks are: ``GPULAB_PROJECT_DIR``, else the gpulab.gpulab collection (the checkout's
    root, or the copy an installed wheel carries: :func:`gpulab.collection.root`)."""
    override = os.environ.get("GPULAB_PROJECT_DIR")
    if override:
        path = Path(override).expanduser().resolve()
        if not path.is_dir():
            raise UsageError(f"GPULAB_PROJECT_DIR={override} is not a directory")
        return path
    return collection.root()


def state_dir(project: Path) -> Path:
    override = os.environ.get("GPULAB_STATE_DIR")
    return Path(override).expanduser().resolve() if override else collection.work_dir(project) / "runs"


def new_ident(now: datetime | None = None) -> str:
    stamp = (now or datetime.now(UTC)).strftime("%Y%m%dT%H%M%SZ")
    return f"{stamp}-{secrets.token_hex(3)}"


@dataclass(frozen=True)
class RunRequest:
    playbook: Path
    inventories: tuple[Path, ...]
    limit: str | None = None
    tags: tuple[str, ...] = ()
    skip_tags: tuple[str, ...] = ()
    extravars: xvars.ExtraVars = field(default_factory=xvars.ExtraVars)  # the user's -e, in order
    internal_vars: Mapping[str, Any] = field(default_factory=dict)  # gpulab's own, win over -e
    connection: ConnectionOptions = field(default_factory=ConnectionOptions)
    check: bool = False
    diff: bool = False
    forks: int | None = None
    verbosity: int = 0
    targets: tuple[str, ...] = ()  # the hosts the run targets (inventory + limit), in inventory order
    ee_image: str | None = None  # run inside this execution environment image (gpulab.ee_run)
    writable_dirs: tuple[Path, ...] = ()  # with ee_image: directories the run writes on this machine


@dataclass
class RunOutcome:
    ident: str
    run_dir: Path
    status: str  # ansible-runner's: successful | failed | canceled | timeout
    rc: int | None
    stats: dict[str, Any] | None


def _ansible_bin_dir() -> str | None:
    """The directory holding ansible-playbook next to this interpreter (a venv not on PATH)."""
    candidate = Path(sys.executable).parent
    return str(candidate) if (candidate / "ansible-playbook").exists() else None


def build_envvars(project: Path, environ: Mapping[str, str]) -> dict[str, str]:
    env: dict[str, str] = {
        # ansible-runner sets "False" unless the variable is already there: say what we mean.
        "ANSIBLE_HOST_KEY_CHECKING": environ.get("ANSIBLE_HOST_KEY_CHECKING", "True"),
        "ANSIBLE_ROLES_PATH": str(project / "roles"),
        # gpulab.gpulab first (the project's own collection, whatever the cwd), then the user's paths.
        "ANSIBLE_COLLECTIONS_PATH": os.pathsep.join(
            [
                str(collection.collections_dir(project)),
                environ.get("ANSIBLE_COLLECTIONS_PATH", _DEFAULT_COLLECTIONS),
            ]
        ),
        "ANSIBLE_NOCOLOR": "1",
        # Fact cache: ansible-runner sets ANSIBLE_CACHE_PLUGIN=jsonfile and its connection from fact_cache.
        "ANSIBLE_CACHE_PLUGIN_TIMEOUT": environ.get("ANSIBLE_CACHE_PLUGIN_TIMEOUT", "86400"),
    }
    cfg = project / "ansible.cfg"
    if "ANSIBLE_CONFIG" in environ:
        env["ANSIBLE_CONFIG"] = environ["ANSIBLE_CONFIG"]
    elif cfg.is_file():
        env["ANSIBLE_CONFIG"] = str(cfg)
    bin_dir = _ansible_bin_dir()
    path = environ.get("PATH", os.defpath)
    if bin_dir and bin_dir not in path.split(os.pathsep):
        env["PATH"] = os.pathsep.join([bin_dir, path])
    return env


def build_cmdline(request: RunRequest, extravar_args: Sequence[str] = ()) -> str | None:
    """ansible-playbook arguments the runner has no keyword for: switches, paths, never a secret value."""
    args: list[str] = []
    if request.check:
        args.append("--check")
    if request.diff:
        args.append("--diff")
    args += request.connection.cmdline()
    args += extravar_args
    return shlex.join(args) if args else None


def fact_cache(run_dir: Path, environ: Mapping[str, str]) -> dict[str, str]:
    """ansible-runner's fact cache settings.

    Default: a jsonfile cache per run (``<run>/fact_cache``), so no run trusts facts another run read.
    ``GPULAB_FACT_CACHE=shared``: one jsonfile cache for every run, ``<state dir>/fact_cache`` (0700; facts
    hold the remote environment), so plays that gather with ``gathering = smart`` (render.yml) reuse
    facts younger than ``ANSIBLE_CACHE_PLUGIN_TIMEOUT``; site.yml and verify.yml still read the host
    under the lock. ``ANSIBLE_CACHE_PLUGIN`` set to another plugin (``community.general.redis``...):
    the runner is told not to override it, and ansible reads it and its ``_CONNECTION`` from the
    environment."""
    plugin = environ.get("ANSIBLE_CACHE_PLUGIN", "jsonfile")
    if plugin not in ("jsonfile", "ansible.builtin.jsonfile"):
        return {"fact_cache_type": plugin}
    mode = environ.get("GPULAB_FACT_CACHE", "run")
    if mode == "run":
        return {"fact_cache": str(run_dir / "fact_cache"), "fact_cache_type": "jsonfile"}
    if mode == "shared":
        shared = run_dir.parent / "fact_cache"
        shared.mkdir(mode=0o700, parents=True, exist_ok=True)
        shared.chmod(0o700)
        return {"fact_cache": str(shared), "fact_cache_type": "jsonfile"}
    raise UsageError(f"GPULAB_FACT_CACHE is {mode!r}: use 'run' (the default) or 'shared'")


def build_kwargs(
    request: RunRequest,
    project: Path,
    run_dir: Path,
    ident: str,
    environ: Mapping[str, str],
    extravar_args: Sequence[str] = (),
) -> dict[str, Any]:
    """Keyword arguments for ``ansible_runner.run_async`` (callbacks added by :func:`start`).

    No ``extravars`` keyword: ansible-runner would put them on the command line (``-e {json}``); they
    travel in files (:mod:`gpulab.extravars`), whose ``-e @file`` arguments are ``extravar_args``.
    """
    kwargs: dict[str, Any] = {
        "private_data_dir": str(run_dir),
        "artifact_dir": str(run_dir.parent),
        "ident": ident,
        "project_dir": str(project),
        "playbook": str(request.playbook),
        "inventory": [str(p) for p in request.inventories],
        "envvars": build_envvars(project, environ),
        **fact_cache(run_dir, environ),
        "rotate_artifacts": 0,
        "suppress_env_files": True,
        "quiet": True,
        "settings": {"pexpect_timeout": _PEXPECT_TIMEOUT},
    }
    if request.limit:
        kwargs["limit"] = request.limit
    if request.tags:
        kwargs["tags"] = ",".join(request.tags)
    if request.skip_tags:
        kwargs["skip_tags"] = ",".join(request.skip_tags)
    if request.forks:
        kwargs["forks"] = request.forks
    if request.verbosity:
        kwargs["verbosity"] = request.verbosity
    if request.ee_image:
        # The runner mounts the run directory at /runner and ignores project_dir and inventory there.
        del kwargs["project_dir"], kwargs["inventory"]
        kwargs.update(ee_run.runner_kwargs(request, request.ee_image, run_dir, ident, kwargs["envvars"]))
        inventory_args = [f"--inventory={path}" for path in request.inventories]
        extravar_args = [*inventory_args, *ee_run.extravar_args(extravar_args, run_dir)]
    cmdline = build_cmdline(request, extravar_args)
    if cmdline:
        kwargs["cmdline"] = cmdline
    return kwargs


def prune_runs(states: Path, keep: int, protect: str | None = None) -> list[Path]:
    """Remove the oldest run directories so at most ``keep`` remain; return what was removed."""
    if keep < 1 or not states.is_dir():
        return []
    runs = sorted(p for p in states.iterdir() if p.is_dir() and not p.is_symlink() and IDENT_RE.match(p.name))
    removed = []
    for path in runs[: max(0, len(runs) - keep)]:
        if path.name == protect:
            continue
        shutil.rmtree(path, ignore_errors=True)
        removed.append(path)
    return removed


def point_last(states: Path, ident: str) -> None:
    link = states / LAST
    tmp = states / f".{LAST}.{ident}"
    tmp.unlink(missing_ok=True)
    tmp.symlink_to(ident)
    tmp.replace(link)


def resolve_run(states: Path, name: str | None) -> Path:
    """The run directory for ``gpulab report [RUN]``: an ident, a unique ident prefix, a path or 'last'."""
    if name and ("/" in name or name.endswith(".json")) and Path(name).exists():
        path = Path(name)
        return path.parent if path.is_file() else path
    wanted = name or LAST
    if wanted == LAST:
        link = states / LAST
        if not link.exists():
            raise UsageError(f"no finished run in {states} (run `gpulab provision` first)")
        return link.resolve()
    exact = states / wanted
    if exact.is_dir():
        return exact
    matches = sorted(p for p in states.glob(f"{wanted}*") if p.is_dir() and IDENT_RE.match(p.name))
    if len(matches) == 1:
        return matches[0]
    if not matches:
        raise UsageError(f"no run {wanted!r} in {states}")
    raise UsageError(f"run {wanted!r} is ambiguous: {', '.join(p.name for p in matches)}")


class Run:
    """One ansible-runner run in a background thread, cancellable from the main thread."""

    def __init__(
        self,
        request: RunRequest,
        project: Path,
        states: Path,
        on_event: EventHandler,
        environ: Mapping[str, str] | None = None,
        ident: str | None = None,
        passwords: Mapping[str, str] | None = None,
        redactor: Redactor | None = None,
    ) -> None:
        self.request = request
        self.project = project
        self.states = states
        self.ident = ident or new_ident()
        self.run_dir = states / self.ident
        self._on_event = on_event
        self._environ = dict(os.environ if environ is None else environ)
        self._cancel = threading.Event()
        self._killed = False
        self._finished = threading.Event()
        self.status = "unstarted"
        self._thread: threading.Thread | None = None
        self._runner: Any = None
        # {prompt regex: answer} for ansible-runner's pexpect loop; kept in memory only
        self._passwords = dict(passwords or {})
        self.redactor = redactor or Redactor()
        # What the driver gave site.yml's provision play (gpulab.strategy); None: the configured strategy.
        self.provision_strategy: str | None = None

    # ansible-runner callbacks -------------------------------------------------------------------
    def _event_handler(self, event: dict[str, Any]) -> bool:
        self.redactor.event(event)  # in place: ansible-runner writes this dict to job_events/
        self._on_event(event)
        return True  # keep the event in job_events/ and Runner.stats

    def _status_handler(self, data: dict[str, Any], runner_config: Any = None) -> None:
        self.status = str(data.get("status", self.status))

    def _cancel_callback(self) -> bool:
        if self._cancel.is_set() and not self._killed:
            self._killed = True
            kill_run(self.run_dir)  # then ansible-runner kills what is left of ansible-playbook's group
        return self._cancel.is_set()

    def _finished_callback(self, runner: Any) -> None:
        self._finished.set()

    # control ------------------------------------------------------------------------------------
    def start(self) -> None:
        import ansible_runner  # imported here: keeps `gpulab --help` fast

        self.states.mkdir(parents=True, exist_ok=True)
        self.run_dir.mkdir(mode=0o700, exist_ok=True)  # a stop request may have made it
        plan = strategy.plan(self.request, self._environ)
        self.provision_strategy = plan.extravars.get(strategy.VAR)
        internal = {**plan.extravars, **self.request.internal_vars}
        if self.request.ee_image:
            internal = ee_run.internal_vars(internal, self.run_dir)
            ee_run.prepare_run_dir(self.run_dir)
        extravar_args = xvars.write(self.request.extravars, internal, self.run_dir)
        kwargs = build_kwargs(
            self.request, self.project, self.run_dir, self.ident, self._environ, extravar_args
        )
        kwargs["envvars"].update(plan.envvars)
        if self._passwords:
            kwargs["passwords"] = self._passwords
        kwargs.update(
            event_handler=self._event_handler,
            status_handler=self._status_handler,
            cancel_callback=self._cancel_callback,
            finished_callback=self._finished_callback,
        )
        try:
            self._thread, self._runner = ansible_runner.run_async(**kwargs)
        except Exception as exc:  # ansible-runner's ConfigurationError and friends
            self.finish()
            raise GpulabError(f"ansible-runner could not start: {exc}", ExitCode.ERROR) from exc

    def finish(self) -> None:
        """After the run: remove the extravars files and mask secrets in every artifact it left."""
        xvars.remove_files(self.run_dir)
        if self.run_dir.is_dir():
            self.redactor.tree(self.run_dir)

    def cancel(self) -> None:
        self._cancel.set()

    @property
    def cancelled(self) -> bool:
        return self._cancel.is_set()

    def wait(self, timeout: float | None = None) -> bool:
        """Wait up to ``timeout`` seconds; True once the run has finished."""
        if self._thread is None:
            return True
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def outcome(self) -> RunOutcome:
        runner = self._runner
        stats = None
        rc = None
        status = self.status
        if runner is not None:
            rc = runner.rc
            status = str(runner.status)
            try:
                stats = runner.stats
            except Exception:  # no job_events/ at all (ansible never started)
                stats = None
        return RunOutcome(ident=self.ident, run_dir=self.run_dir, status=status, rc=rc, stats=stats)


# Forks are controller processes that mostly wait on the network: several per core are fine, but each
# holds a Python interpreter (~60-100 MiB), so memory bounds them too.
FORKS_PER_CPU = 10
FORKS_MEMORY_MIB = 100
FORKS_MAX = 200


def sized_forks(hosts: int, environ: Mapping[str, str]) -> int | None:
    """Forks for a run over ``hosts`` hosts when --forks is not given: one per host, at most
    FORKS_PER_CPU per CPU, one per FORKS_MEMORY_MIB of the controller's memory and FORKS_MAX.

    None when ``ANSIBLE_FORKS`` is set: the user's own setting wins over the sizing."""
    if environ.get("ANSIBLE_FORKS"):
        return None
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    memory_mib = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") // 2**20
    return max(1, min(hosts, FORKS_PER_CPU * cpus, memory_mib // FORKS_MEMORY_MIB, FORKS_MAX))


def check_inventories(paths: Sequence[Path]) -> None:
    for path in paths:
        if not path.exists():
            raise UsageError(f"inventory {path} does not exist")


def inventory_hosts(
    inventories: Sequence[Path], pattern: str | None = None, config: Path | None = None
) -> list[str]:
    """Hosts the run will target, with ansible's own InventoryManager (in process, output captured).

    Raises ParseError when an inventory source does not parse (ansible-playbook would only warn and
    run against no host) and UsageError when no host is selected. The process environment is left
    alone (ansible reads its configuration once, at import): inventory plugins enabled only in the
    project's ansible.cfg are not seen here, the default ones (yaml, ini, script, host_list...) are.
    """
    import contextlib
    import io

    from ansible.inventory.manager import InventoryManager  # type: ignore[import-untyped]
    from ansible.parsing.dataloader import DataLoader  # type: ignore[import-untyped]

    names = ", ".join(str(p) for p in inventories)
    sink = io.StringIO()
    try:
        with contextlib.redirect_stderr(sink), contextlib.redirect_stdout(sink):
            loader = DataLoader()
            for path in inventories:
                if not InventoryManager(loader=loader, sources=[]).parse_source(str(path)):
                    raise ParseError(
                        f"inventory {path} does not parse (see `ansible-inventory -i {path} --list`)"
                    )
            inventory = InventoryManager(loader=loader, sources=[str(p) for p in inventories])
            if pattern:
                inventory.subset(pattern)
            hosts = [host.name for host in inventory.list_hosts("all")]
    except GpulabError:
        raise
    except Exception as exc:  # AnsibleError and friends: the inventory itself is broken
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ParseError(f"inventory {names}: {first}") from exc
    if not hosts:
        if pattern:
            raise UsageError(f"--limit {pattern!r} matches no host in {names}")
        raise UsageError(f"inventory {names} has no hosts")
    return hosts
