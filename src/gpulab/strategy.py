"""Which Ansible strategy site.yml's provision play runs with (docs/performance.md, "Mitogen").

Only hosts that differ from the record of their last full run reach the provision play, and each runs ~160
module tasks there: Mitogen's ``mitogen_linear`` (one Python interpreter per host and become user, modules
sent once) runs a full run in 0.6-0.85 of the linear strategy's time. The fast-path play stays linear: for its
one task per host, Mitogen's start-up per host costs more than it saves (measured 2.6x slower).

The play reads ``gpulab_provision_strategy`` and falls back to the configured strategy (plain
``ansible-playbook``, AWX). The driver sets it to Mitogen unless the user chose a strategy
(``ANSIBLE_STRATEGY``, or ``-e gpulab_provision_strategy=linear``), the run is in an execution environment
(the image carries no Mitogen), Mitogen is not installed, or Mitogen would escalate where Ansible does not
(:func:`escalates_to_itself`).
"""

from __future__ import annotations

import getpass
import importlib.util
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gpulab import inventory_vars

if TYPE_CHECKING:
    from gpulab.runner import RunRequest

VAR = "gpulab_provision_strategy"
MITOGEN = "mitogen_linear"
_LOCAL = ("local", "ansible.builtin.local")
_FALSE = ("false", "no", "off", "0", "n", "f")


@dataclass(frozen=True)
class Plan:
    envvars: dict[str, str] = field(default_factory=dict)  # for ansible-playbook's environment
    extravars: dict[str, Any] = field(default_factory=dict)  # gpulab's own (internal) variables


def mitogen_plugins() -> Path | None:
    """The directory of Mitogen's strategy plugins, or None when Mitogen is not installed."""
    spec = importlib.util.find_spec("ansible_mitogen")
    if spec is None or not spec.submodule_search_locations:
        return None
    plugins = Path(next(iter(spec.submodule_search_locations))) / "plugins" / "strategy"
    return plugins if (plugins / f"{MITOGEN}.py").is_file() else None


def every_play_environ() -> dict[str, str] | None:
    """ansible-playbook's environment for Mitogen's strategy in every play (the test suite's direct role
    runs, benchmarks); None when Mitogen is not installed. gpulab gives it to site.yml's provision play only
    (:func:`plan`)."""
    plugins = mitogen_plugins()
    if plugins is None:
        return None
    return {"ANSIBLE_STRATEGY": MITOGEN, "ANSIBLE_STRATEGY_PLUGINS": str(plugins)}


def escalates_to_itself(
    hosts: Iterable[Mapping[str, Any]], user: str, connection: str, become_user: str
) -> bool:
    """A host on the local connection that escalates to the user gpulab runs as (root on a root shell):
    Ansible skips become there (the become user is the current user), Mitogen runs sudo for it, which fails
    where no sudo is installed. ``connection`` and ``become_user``: the command line's (``-c``,
    ``--become-user``), which host variables override."""
    for host in hosts:
        if str(host.get("ansible_connection") or connection) not in _LOCAL:
            continue
        if str(host.get("ansible_become", True)).lower() in _FALSE:
            continue
        if str(host.get("ansible_become_user") or become_user) == user:
            return True
    return False


def plan(request: RunRequest, environ: Mapping[str, str]) -> Plan:
    user_vars = request.extravars.known()
    chosen = VAR in user_vars or environ.get("ANSIBLE_STRATEGY")
    if request.playbook.name != "site.yml" or request.ee_image or chosen:
        return Plan()
    plugins = mitogen_plugins()
    if plugins is None:
        return Plan()
    hosts = [{**h, **user_vars} for h in inventory_vars.host_vars(request.inventories, request.limit)]
    options = request.connection
    user = getpass.getuser()  # as Ansible's local connection names the current user
    if escalates_to_itself(hosts, user, options.connection or "ssh", options.become_user or "root"):
        return Plan()
    paths = [str(plugins), *filter(None, [environ.get("ANSIBLE_STRATEGY_PLUGINS")])]
    return Plan(envvars={"ANSIBLE_STRATEGY_PLUGINS": os.pathsep.join(paths)}, extravars={VAR: MITOGEN})
