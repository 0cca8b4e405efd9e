"""containers.podman.podman with pipelining: the test hosts' connection (.config/molecule/config.yml).

containers.podman.podman sets ``has_pipelining = False`` because its ``podman exec`` does not attach
stdin, so each task costs about seven podman calls (make a temp dir, ``podman cp``, chown, chmod, run,
clean up; with ``-vvv``, two tasks made 17 calls, against 5 with this plugin, the connection's mount and
Python discovery included). With ``--interactive`` when Ansible sends data, the module goes through stdin
as it does over SSH with ``pipelining = true`` (ansible.cfg): one ``podman exec`` per task. Only the
Molecule test hosts use it, so every scenario exercises it (become through sudo, become_user, copies,
scripts).
"""

from __future__ import annotations

import shlex
from typing import Any

from ansible.module_utils.common.text.converters import to_native
from ansible.plugins.connection import ConnectionBase, ensure_connect
from ansible_collections.containers.podman.plugins.connection.podman import Connection as PodmanConnection

DOCUMENTATION = """
    name: gpulab_podman
    short_description: containers.podman.podman, with pipelining
    description:
      - Runs commands in an existing podman container like containers.podman.podman; when Ansible pipes
        a module, C(podman exec --interactive) hands it to the container's stdin.
    options:
      remote_addr:
        description: The container's name or ID.
        default: inventory_hostname
        vars:
          - name: ansible_host
          - name: inventory_hostname
          - name: ansible_podman_host
      remote_user:
        description: The user that runs commands in the container.
        ini:
          - section: defaults
            key: remote_user
        env:
          - name: ANSIBLE_REMOTE_USER
        vars:
          - name: ansible_user
      podman_extra_args:
        description: Extra arguments for the podman command line.
        default: ''
        ini:
          - section: defaults
            key: podman_extra_args
        vars:
          - name: ansible_podman_extra_args
        env:
          - name: ANSIBLE_PODMAN_EXTRA_ARGS
      podman_executable:
        description: The podman executable.
        default: podman
        vars:
          - name: ansible_podman_executable
        env:
          - name: ANSIBLE_PODMAN_EXECUTABLE
      pipelining:
        description: Hand modules to the container's stdin instead of copying them in first.
        type: boolean
        default: true
        env:
          - name: ANSIBLE_PIPELINING
        vars:
          - name: ansible_pipelining
"""


class Connection(PodmanConnection):  # type: ignore[misc]
    transport = "gpulab_podman"
    has_pipelining = True

    @ensure_connect  # type: ignore[misc]
    def exec_command(self, cmd: str, in_data: bytes | None = None, sudoable: bool = False) -> Any:
        # ConnectionBase's, not PodmanConnection's: that one would run its own exec without stdin.
        ConnectionBase.exec_command(self, cmd, in_data=in_data, sudoable=sudoable)
        exec_args = ["exec", "--interactive"] if in_data is not None else ["exec"]
        if self.user:
            exec_args += ["--user", self.user]
        return self._podman(exec_args, shlex.split(to_native(cmd, errors="surrogate_or_strict")), in_data)
