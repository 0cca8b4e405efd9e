"""Run a playbook inside an execution environment image: ``gpulab provision|check|render --ee IMAGE``.

ansible-runner's container support does the run (``process_isolation`` with podman, docs/ee.md): the
playbooks are the image's gpulab.gpulab collection (``gpulab.gpulab.site``), so the controller needs only
podman and gpulab. What the run reads from this machine reaches the container as ansible-runner mounts it:

- the run directory (0700) is the runner's private data dir, mounted at ``/runner``: gpulab's 0600 extravars
  files (``/runner/env/``, never on a command line) and the stop file; it is also mounted at
  ``/runner/artifacts/<ident>``, where the runner's callback writes the events' data and the fact cache
  (gpulab keeps artifacts in the run directory itself, not in ``<run>/artifacts/<ident>``);
- the inventories, and every file the connection reads (``--private-key``, password and vault files,
  ``-e @FILE``, and the private keys and known_hosts files the inventory's hosts name), are mounted
  read-only at their own paths, so the paths inside the inventory stay true; nothing is copied.

The runner always adds ``-i /runner/inventory``; that directory holds one empty inventory (no hosts), and the
real inventories are passed by their own paths.
"""

from __future__ import annotations

import contextlib
import shlex
import subprocess
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gpulab import collection, inventory_vars
from gpulab.errors import UsageError
from gpulab.podman import PodmanError, podman_env, require_podman

if TYPE_CHECKING:
    from gpulab.runner import RunRequest

CONTAINER_ROOT = "/runner"  # where ansible-runner mounts the private data dir
# Where ansible-builder installs collections in the image (its galaxy stage's --collections-path).
IMAGE_COLLECTION = "/usr/share/ansible/collections/ansible_collections/gpulab/gpulab"
# --network=host: the container reaches the nodes (and a lab's mirror) as this machine does.
# --pid=host: the host lock records the controller's ansible-playbook pid and checks it is alive, so the
# container must see this machine's processes (plugins/lookup/host_lock_controller.py).
CONTAINER_OPTIONS = ("--network=host", "--pid=host")
_INVENTORY_PLACEHOLDER = "00-gpulab-empty.yml"
_KEY_VARS = ("ansible_ssh_private_key_file", "ansible_private_key_file")
_SSH_ARG_VARS = ("ansible_ssh_common_args", "ansible_ssh_extra_args", "ansible_ssh_args")
_SSH_FILE_OPTIONS = ("userknownhostsfile", "identityfile", "globalknownhostsfile")


def check_image(image: str) -> None:
    """podman is there and the image exists locally (a run never pulls); else one clear UsageError."""
    try:
        exe = require_podman()
    except PodmanError as exc:
        raise UsageError(f"--ee {image}: {exc}") from exc
    proc = subprocess.run(
        [exe, "image", "exists", image], capture_output=True, text=True, check=False, env=podman_env()
    )
    if proc.returncode != 0:
        raise UsageError(
            f"--ee {image}: no such image in podman's local storage"
            f" (build it with: python -m gpulab.ee build --tag {image})"
        )


def playbook_name(playbook: Path) -> str:
    """``playbooks/site.yml`` -> ``gpulab.gpulab.site``: the image's copy of the same playbook."""
    return f"{collection.FQCN}.{playbook.stem}"


def in_container(value: str, run_dir: Path) -> str:
    """A path under the run directory as the container sees it (under /runner); others unchanged."""
    prefix = str(run_dir)
    if value == prefix or value.startswith(prefix + "/"):
        return CONTAINER_ROOT + value[len(prefix) :]
    return value


def extravar_args(args: Sequence[str], run_dir: Path) -> list[str]:
    """gpulab's ``--extra-vars=@<run>/env/...`` arguments with the container's path."""
    out = []
    for arg in args:
        head, at, path = arg.partition("@")
        out.append(f"{head}@{in_container(path, run_dir)}" if at else arg)
    return out


def internal_vars(values: Mapping[str, Any], run_dir: Path) -> dict[str, Any]:
    """gpulab's own variables with run-directory paths (the stop file) as the container sees them."""
    return {k: in_container(v, run_dir) if isinstance(v, str) else v for k, v in values.items()}


def _ssh_arg_files(text: str) -> list[str]:
    """Files named in ssh arguments: ``-i FILE`` and ``-o UserKnownHostsFile=FILE`` (and the like)."""
    try:
        words = shlex.split(text)
    except ValueError:
        return []
    found = []
    for index, word in enumerate(words):
        following = words[index + 1] if index + 1 < len(words) else ""
        if word == "-i":
            found.append(following)
        option = following if word == "-o" else word.removeprefix("-o") if word.startswith("-o") else ""
        key, _, value = option.partition("=")
        if key.strip().lower() in _SSH_FILE_OPTIONS:
            found += value.split()
    return found


def connection_files(inventories: Sequence[Path], limit: str | None) -> set[Path]:
    """Absolute paths of existing files the targeted hosts' connection variables name (keys, known_hosts).

    Vaulted or templated values are skipped."""
    found: set[Path] = set()
    for host_vars in inventory_vars.host_vars(inventories, limit):
        names: list[str] = []
        for key in _KEY_VARS:
            with contextlib.suppress(Exception):  # a vaulted value
                names.append(str(host_vars.get(key) or ""))
        for key in _SSH_ARG_VARS:
            with contextlib.suppress(Exception):
                names += _ssh_arg_files(str(host_vars.get(key) or ""))
        for name in names:
            path = Path(name).expanduser()
            if "{" not in name and path.is_absolute() and path.exists():
                found.add(path)
    return found


def _dir_of(path: Path) -> Path:
    return path if path.is_dir() else path.parent


def read_only_dirs(request: RunRequest) -> list[Path]:
    """Directories to mount read-only at their own paths: what the run reads from this machine."""
    files: list[Path] = [*request.inventories]
    options = request.connection
    files += [
        p
        for p in (options.private_key, options.connection_password_file, options.become_password_file)
        if p is not None
    ]
    files += list(options.vault_password_files)
    files += [Path(v.rpartition("@")[2]) for v in options.vault_ids if not v.endswith("@prompt")]
    files += [Path(f) for f in request.extravars.files()]
    files += sorted(connection_files(request.inventories, request.limit))
    return _unique(_dir_of(p.absolute()) for p in files if p.exists())


def _unique(dirs: Iterable[Path]) -> list[Path]:
    """Sorted, without a directory already inside another one on the list."""
    kept: list[Path] = []
    for path in sorted(set(dirs)):
        if not any(path.is_relative_to(parent) for parent in kept):
            kept.append(path)
    return kept


def prepare_run_dir(run_dir: Path) -> None:
    """``<run>/inventory``: the runner's fixed ``-i /runner/inventory``, one inventory with no hosts."""
    inventory = run_dir / "inventory"
    inventory.mkdir(mode=0o700, exist_ok=True)
    (inventory / _INVENTORY_PLACEHOLDER).write_text(
        "# gpulab --ee: ansible-runner always passes -i /runner/inventory; the inventories are passed"
        " by their own paths.\nall: {}\n",
        encoding="utf-8",
    )


def runner_kwargs(
    request: RunRequest, image: str, run_dir: Path, ident: str, envvars: Mapping[str, str]
) -> dict[str, Any]:
    """ansible-runner's container settings for this run (they replace project_dir and inventory)."""
    mounts = [f"{run_dir}:{CONTAINER_ROOT}/artifacts/{ident}:Z"]
    mounts += [f"{path}:{path}:ro" for path in read_only_dirs(request) if not path.is_relative_to(run_dir)]
    mounts += [f"{path}:{path}:rw" for path in request.writable_dirs]
    # The host's paths (venv, checkout) mean nothing in the image: its own PATH and collection are used.
    env = {
        k: v
        for k, v in envvars.items()
        if k not in ("PATH", "ANSIBLE_ROLES_PATH", "ANSIBLE_COLLECTIONS_PATH")
    }
    env["ANSIBLE_CONFIG"] = f"{IMAGE_COLLECTION}/ansible.cfg"
    return {
        "process_isolation": True,
        "process_isolation_executable": "podman",
        "container_image": image,
        "container_options": list(CONTAINER_OPTIONS),
        "container_volume_mounts": mounts,
        "envvars": env,
        "playbook": playbook_name(request.playbook),
    }
