"""Which Ansible strategy site.yml's provision play runs with (docs/performance.md, "Mitogen").

Only hosts that differ from the record of their last full run reach the provision play, and each runs ~160
module tasks there: Mitogen's ``mitogen_linear`` (one Python interpreter per host and become user, modules
sent once) runs a full run in 0.6-0.85 of the linear strategy's time. The fast-path play stays linear: for its
one task per host, Mitogen's start-up per host costs more than it saves (measured 2.6x slower).

The play reads ``gpulab_provision_strategy`` and falls back to the configured strategy (plain
``ansible-playbook``, AWX). The driver sets it to Mitogen unless the user chose a strategy
(``ANSIBLE_STRATEGY``, or ``-e gpulab_provision_strategy=linear``), the run is in an execution environment
(the image carries no Mitogen), or Mitogen is not installed.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

VAR = "gpulab_provision_strategy"
MITOGEN = "mitogen_linear"


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


def plan(user_vars: Mapping[str, Any], in_ee: bool, environ: Mapping[str, str]) -> Plan:
    if in_ee or VAR in user_vars or environ.get("ANSIBLE_STRATEGY"):
        return Plan()
    plugins = mitogen_plugins()
    if plugins is None:
        return Plan()
    paths = [str(plugins), *filter(None, [environ.get("ANSIBLE_STRATEGY_PLUGINS")])]
    return Plan(envvars={"ANSIBLE_STRATEGY_PLUGINS": os.pathsep.join(paths)}, extravars={VAR: MITOGEN})
