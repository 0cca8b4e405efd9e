# Copyright: gpulab contributors
# Apache-2.0 (see the repository's license)
"""Action plugin of gpulab.gpulab.host_state: the run's inputs digest, computed on the controller.

The digest covers what decides a host's state besides the host itself: every role variable
(cuda_check_*, miniconda_*, dl_env_*, host_lock_*) as resolved for the host, the content of the
controller files their values name (an environment.yml, a template), and gpulab's own roles, plugins,
templates and playbooks. It is computed in the fast-path play, where no role is loaded, so role defaults
count through gpulab's own files, not as variables; the playbook hands it on to the record
(state=present) as it was computed here. ``bypass`` (a reason) skips the comparison without a round trip.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

from ansible.errors import AnsibleError
from ansible.plugins.action import ActionBase

PREFIXES = ("cuda_check_", "miniconda_", "dl_env_", "host_lock_")
# Knobs of one run that leave the host's state as it is (the fast path is bypassed for those that matter).
RUN_KNOBS = frozenset(
    {"dl_env_reverify", "dl_env_render_only", "dl_env_render_dest_controller", "host_lock_break"}
)
# gpulab's own content that decides what a run does (molecule/ holds tests, not product).
CONTENT_DIRS = ("roles", "plugins", "templates", "playbooks")
COLLECTION_ROOT = Path(__file__).resolve().parents[2]
_content_digest: str | None = None


def content_digest() -> str:
    """Digest of gpulab's roles, plugins, templates and playbooks (once per process)."""
    global _content_digest
    if _content_digest is None:
        digest = hashlib.sha256()
        for top in CONTENT_DIRS:
            for path in sorted((COLLECTION_ROOT / top).rglob("*")):
                parts = path.relative_to(COLLECTION_ROOT).parts
                if path.is_file() and "molecule" not in parts and "__pycache__" not in parts:
                    digest.update(f"{'/'.join(parts)}\0".encode())
                    digest.update(path.read_bytes())
        _content_digest = digest.hexdigest()
    return _content_digest


def _strings(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for v in value.values() for s in _strings(v)]
    if isinstance(value, (list, tuple)):
        return [s for v in value for s in _strings(v)]
    return []


def named_files(values: dict[str, Any], search_dirs: list[str]) -> dict[str, str]:
    """sha256 of each controller file a value names (absolute, ~, or relative to the playbook/inventory)."""
    found: dict[str, str] = {}
    for text in _strings(values):
        if "\n" in text or len(text) > 4096 or not text.strip():
            continue
        expanded = os.path.expanduser(text)
        absolute = os.path.isabs(expanded)
        for candidate in [expanded] if absolute else [os.path.join(d, expanded) for d in search_dirs]:
            if os.path.isfile(candidate):
                found[candidate] = hashlib.sha256(Path(candidate).read_bytes()).hexdigest()
    return found


class ActionModule(ActionBase):  # type: ignore[misc]
    """Compute ``inputs`` (query) or pass the given one on (present), then run the module."""

    _VALID_ARGS = frozenset(
        {"state", "path", "inputs", "paths", "lock_dir", "check_max_age", "outputs", "bypass"}
        | {"nvidia_smi_path", "proc_version_path", "timeout"}
    )

    def inputs(self, task_vars: dict[str, Any]) -> tuple[str, list[str]]:
        """(digest, names of the variables that could not be resolved without the roles' facts)."""
        values: dict[str, Any] = {}
        unresolved = []
        for name in sorted(n for n in task_vars if n.startswith(PREFIXES) and n not in RUN_KNOBS):
            try:
                values[name] = self._templar.template(task_vars[name])
            except AnsibleError:
                unresolved.append(name)
        search = [task_vars.get("playbook_dir", ""), task_vars.get("inventory_dir") or ""]
        search = [os.path.join(d, sub) for d in search if d for sub in ("", "templates", "files")]
        payload = {
            "vars": values,
            "files": named_files(values, search),
            "gpulab": content_digest(),
        }
        text = json.dumps(payload, sort_keys=True, default=str)
        return hashlib.sha256(text.encode()).hexdigest(), unresolved

    def run(self, tmp: Any = None, task_vars: dict[str, Any] | None = None) -> dict[str, Any]:
        task_vars = task_vars or {}
        result: dict[str, Any] = super().run(tmp, task_vars)
        args = dict(self._task.args)
        bypass = str(args.pop("bypass", "") or "")
        if args.get("state", "query") == "query":
            args["inputs"], unresolved = self.inputs(task_vars)
            if unresolved and not bypass:
                bypass = f"{', '.join(unresolved)} cannot be resolved before the roles run"
            if bypass:
                result.update(changed=False, current=False, reasons=[bypass], outputs={}, recorded_at=None)
                result["inputs"] = args["inputs"]
                return result
        result.update(self._execute_module(module_args=args, task_vars=task_vars))
        result["inputs"] = args.get("inputs")
        return result
