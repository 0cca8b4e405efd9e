"""Each targeted host's variables as ansible computes them (inventory, group_vars, host_vars files), read
in process and without a vault password: what :mod:`gpulab.redact` masks and :mod:`gpulab.ee_run` mounts."""

from __future__ import annotations

import contextlib
import io
from collections.abc import Sequence
from pathlib import Path
from typing import Any


def host_vars(inventories: Sequence[Path], limit: str | None = None) -> list[dict[str, Any]]:
    """One mapping per host the run targets. A host whose group_vars/host_vars need a vault password gets
    its inline inventory variables only. Raises what ansible raises for an inventory that does not parse."""
    from ansible.inventory.manager import InventoryManager  # type: ignore[import-untyped]
    from ansible.parsing.dataloader import DataLoader  # type: ignore[import-untyped]
    from ansible.vars.manager import VariableManager  # type: ignore[import-untyped]

    found: list[dict[str, Any]] = []
    with contextlib.redirect_stderr(io.StringIO()), contextlib.redirect_stdout(io.StringIO()):
        loader = DataLoader()
        inventory = InventoryManager(loader=loader, sources=[str(p) for p in inventories])
        if limit:
            inventory.subset(limit)
        manager = VariableManager(loader=loader, inventory=inventory)
        for host in inventory.list_hosts("all"):
            try:
                found.append(dict(manager.get_vars(host=host, include_hostvars=False)))
            except Exception:  # a vaulted vars file without its password
                found.append({**_group_vars(host), **host.get_vars()})
    return found


def _group_vars(host: Any) -> dict[str, Any]:
    merged: dict[str, Any] = {}
    for group in host.get_groups():
        merged.update(group.get_vars())
    return merged
