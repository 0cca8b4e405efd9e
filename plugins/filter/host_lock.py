# Copyright: gpulab contributors
# Apache-2.0 (see the repository's license)
"""Filters of the host_lock role: how a lock holder is named in messages (one home for that wording)."""

from __future__ import annotations

from typing import Any

from ansible_collections.gpulab.gpulab.plugins.plugin_utils.filter_errors import filter_table


def host_lock_describe(holder: Any) -> str:
    """'run R by user@controller (pid P, play "X", started S)' from a holder.json dict."""
    if not isinstance(holder, dict) or not holder:
        return "an unknown holder (holder.json missing or unreadable)"
    return (
        f"run {holder.get('run_id', '?')} by {holder.get('user', '?')}@{holder.get('controller', '?')}"
        f' (controller pid {holder.get("controller_pid", "?")}, play "{holder.get("play", "")}",'
        f" started {holder.get('started', '?')} host time)"
    )


class FilterModule:
    def filters(self) -> dict[str, Any]:
        return filter_table({"host_lock_describe": host_lock_describe})
