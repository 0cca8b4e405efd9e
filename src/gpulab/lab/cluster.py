"""`gpulab lab`: a simulated GPU cluster of podman containers (STAND-IN nodes), and its inventory.

Each node is a Debian container on the host network with a non-root `admin` user (sudo), a fake
`nvidia-smi` replaying a real capture (its "driver"), and access to the lab mirror. The inventory written
for it is an ordinary Ansible inventory: the roles cannot tell a lab node from a real one.
Nodes are reached over SSH like real nodes (the default: each runs sshd on its own loopback port,
`gpulab.lab.ssh`) or, with `--connection podman`, through `podman exec`.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

import yaml

from gpulab.lab import nvidia_smi, ssh
from gpulab.lab.images import RECIPES, ensure_image
from gpulab.lab.installer import Flavor, installer_name
from gpulab.lab.services import PINS, LabServices, checksums, start_detached_mirror, stop_detached_mirror
from gpulab.podman import PodmanError, podman, require_podman

CONTAINER_PREFIX = "gpulab-lab-"
LAB_LABEL = "io.gpulab.lab=1"
# Every container also carries `io.gpulab.lab.id=<lab_id(state_dir)>`, so several labs (parallel tests, two
# checkouts) can share one machine and each `lab down` removes only its own.
LAB_ID_LABEL = "io.gpulab.lab.id"
DEFAULT_NODES = "gpu-l40s=l40s-550.127.05,gpu-h100=h100-590.48.01,cpu-node=none"
# The lab provisions with Miniforge (conda-forge; no Anaconda ToS step) from the lab mirror.
LAB_FLAVOR: Flavor = "miniforge"
LAB_RELEASE = PINS["miniforge"]  # the miniconda role's pinned Miniforge release
_NODE_NAME = re.compile(r"^[a-z][a-z0-9-]{0,30}$")
Connection = Literal["podman", "ssh"]
CONNECTIONS: tuple[Connection, ...] = ("podman", "ssh")
# SSH by default: it is how real nodes are reached, and with pipelining and ControlPersist (ansible.cfg) a
# task is one round trip over an open connection. containers.podman.podman starts about seven `podman exec`s
# per task: a cold provision of 3 nodes took 256 s with it and 86 s over SSH (benchmarks/bench_rerun.py,
# docs/performance.md).
DEFAULT_CONNECTION: Connection = "ssh"
MAX_NODES = 32  # the most nodes `--nodes N` starts (the re-run benchmark's scale test uses 24)


class LabError(RuntimeError):
    """A user-facing lab problem; the message says what is wrong and how to fix it."""


def lab_id(state_dir: Path) -> str:
    """A short, stable id of the lab whose state lives in `state_dir` (part of its container names)."""
    return hashlib.sha256(str(state_dir.resolve()).encode()).hexdigest()[:8]


@dataclass
class Node:
    name: str
    profile: str
    image: str = "debian12"
    lab: str = ""  # lab_id() of the lab it belongs to, set by `up`
    ssh_port: int = 0  # its sshd's port on 127.0.0.1 in an SSH lab, set by `up`

    @property
    def container(self) -> str:
        return f"{CONTAINER_PREFIX}{self.lab}-{self.name}" if self.lab else CONTAINER_PREFIX + self.name

    @property
    def group(self) -> str:
        return "cpu_nodes" if nvidia_smi.PROFILES[self.profile].kind == "absent" else "gpu_nodes"


def parse_nodes(spec: str) -> list[Node]:
    """`name=profile[@image],...` (`a=l40s-595.80,b=none@debian13`) or a count N (default mix, cycled)."""
    spec = spec.strip()
    if spec.isdigit():
        defaults = parse_nodes(DEFAULT_NODES)
        count = int(spec)
        if not 1 <= count <= MAX_NODES:
            raise LabError(f"--nodes N must be between 1 and {MAX_NODES}")
        return [
            Node(f"node{i + 1}", defaults[i % len(defaults)].profile, defaults[i % len(defaults)].image)
            for i in range(count)
        ]
    nodes: list[Node] = []
    for item in filter(None, (part.strip() for part in spec.split(","))):
        name, sep, rest = item.partition("=")
        if not sep:
            raise LabError(f"--nodes: {item!r} is not NAME=PROFILE[@IMAGE]")
        profile, _, image = rest.partition("@")
        image = image or "debian12"
        if not _NODE_NAME.match(name):
            raise LabError(f"--nodes: node name {name!r} must be lowercase letters, digits and dashes")
        if profile not in nvidia_smi.PROFILES:
            raise LabError(f"--nodes: unknown profile {profile!r} for {name}; see `gpulab lab profiles`")
        if image not in RECIPES:
            raise LabError(f"--nodes: unknown image {image!r}; known: {', '.join(sorted(RECIPES))}")
        nodes.append(Node(name, profile, image))
    if not nodes:
        raise LabError("--nodes: no nodes given")
    if len({n.name for n in nodes}) != len(nodes):
        raise LabError("--nodes: node names must be unique")
    return nodes


@dataclass
class LabState:
    """What `lab up` created, saved in `<state_dir>/lab.json` so `down`/`driver` can find it."""

    state_dir: Path
    nodes: list[Node]
    mirror_url: str
    mirror_pid: int
    connection: Connection = "podman"
    sudo_password: bool = False  # admin's sudo asks for the password in `ssh.files(state_dir).sudo_password`

    @property
    def inventory(self) -> Path:
        return self.state_dir / "inventory" / "hosts.yml"

    @property
    def ssh(self) -> ssh.SshFiles:
        return ssh.files(self.state_dir)

    def node(self, name: str) -> Node:
        for node in self.nodes:
            if node.name == name:
                return node
        raise LabError(f"no lab node {name!r}; nodes: {', '.join(n.name for n in self.nodes)}")

    def save(self) -> None:
        data = {k: v for k, v in asdict(self).items() if k != "state_dir"}
        (self.state_dir / "lab.json").write_text(json.dumps(data, indent=2) + "\n")

    @classmethod
    def load(cls, state_dir: Path) -> LabState | None:
        path = state_dir / "lab.json"
        if not path.is_file():
            return None
        data = json.loads(path.read_text())
        return cls(state_dir, **{**data, "nodes": [Node(**n) for n in data["nodes"]]})


def running_containers(lab: str | None = None) -> list[str]:
    """Names of lab containers: every lab's, or only those of the lab with id `lab`."""
    label = f"{LAB_ID_LABEL}={lab}" if lab else LAB_LABEL
    out = podman("ps", "-a", "--filter", f"label={label}", "--format", "{{.Names}}")
    return [line for line in out.splitlines() if line.strip()]


def check_runtime() -> None:
    """Fail with the fix when podman is missing or cannot run a container here."""
    try:
        require_podman()
        podman("info", "--format", "{{.Host.OCIRuntime.Name}}", timeout=60)
    except PodmanError as exc:
        raise LabError(
            f"{exc}\nfix: apt-get install -y podman runc (gpulab uses its own containers.conf with runc)"
        ) from exc


def set_profile(node: Node) -> None:
    """Install node.profile's fake nvidia-smi in the node (the lab's way of "changing the driver")."""
    if node.profile not in nvidia_smi.PROFILES:
        raise LabError(f"unknown profile {node.profile!r}; see `gpulab lab profiles`")
    with tempfile.TemporaryDirectory(prefix="gpulab-lab-stage-") as tmp:
        nvidia_smi.stage(Path(tmp), node.profile)
        stale = ("/usr/bin/nvidia-smi", "/etc/gpulab-lab", "/usr/local/share/gpulab-lab/nvidia-smi")
        podman("exec", node.container, "rm", "-rf", *stale)
        podman("cp", f"{tmp}/.", f"{node.container}:/")


def _connection_vars(state: LabState) -> dict[str, object]:
    if state.connection == "ssh":
        return {
            "ansible_connection": "ssh",
            "ansible_user": ssh.SSH_USER,
            "ansible_become": True,
            "ansible_ssh_private_key_file": str(state.ssh.private_key),
            "ansible_ssh_common_args": state.ssh.common_args(),
        }
    return {
        "ansible_connection": "containers.podman.podman",
        "ansible_user": ssh.SSH_USER,
        "ansible_become": True,
    }


def write_inventory(state: LabState, checksum: str) -> Path:
    """An ordinary inventory: GPU/CPU groups, podman or ssh connection as `admin` with sudo, mirror settings.

    A sudo password is never written here: `gpulab provision -K` asks for it.
    """
    inv_dir = state.state_dir / "inventory"
    (inv_dir / "group_vars" / "all").mkdir(parents=True, exist_ok=True)
    groups: dict[str, dict[str, dict[str, object]]] = {"gpu_nodes": {}, "cpu_nodes": {}}
    for node in state.nodes:
        address: dict[str, object] = (
            {"ansible_host": "127.0.0.1", "ansible_port": node.ssh_port}
            if state.connection == "ssh"
            else {"ansible_host": node.container}
        )
        groups[node.group][node.name] = {**address, "gpulab_lab_profile": node.profile}
    hosts = {
        "all": {
            "children": {name: {"hosts": members} for name, members in groups.items() if members},
            "vars": _connection_vars(state),
        }
    }
    reached = "over SSH on 127.0.0.1" if state.connection == "ssh" else "through podman"
    sudo = f"; admin's sudo password is in {state.ssh.sudo_password} (use -K)" if state.sudo_password else ""
    header = (
        "# Written by `gpulab lab up`: the simulated lab's nodes"
        f" (podman containers, reached {reached}{sudo}).\n"
    )
    state.inventory.write_text(header + yaml.safe_dump(hosts, sort_keys=False))
    lab_vars = {
        "miniconda_flavor": LAB_FLAVOR,
        "miniconda_version": LAB_RELEASE,
        "miniconda_mirror_url": f"{state.mirror_url}/miniforge",
        "miniconda_installer_sha256": checksum,
        "dl_env_pip_index_url": f"{state.mirror_url}/pypi/simple",
        "dl_env_python_version": "3.11",
        "dl_env_conda_packages": ["numpy"],
        "dl_env_check_device": "auto",
        "cuda_check_proc_version_path": "/etc/gpulab-lab/proc-driver-nvidia-version",
    }
    text = (
        "# The lab's settings. GPUs and conda are SIMULATED in the lab: nvidia-smi replays real\n"
        "# captures, and the Miniforge installer/conda from the lab mirror are gpulab's stand-ins\n"
        "# (real Python envs, pip packages from the mirror's wheelhouse; CUDA/PyTorch conda packages\n"
        "# are only recorded, so the MLP check trains with numpy on the CPU: dl_env_check_device=auto).\n"
        + yaml.safe_dump(lab_vars, sort_keys=False)
    )
    (inv_dir / "group_vars" / "all" / "lab.yml").write_text(text)
    return state.inventory


def up(
    state_dir: Path,
    nodes: list[Node],
    cache_dir: Path,
    port: int | None = None,
    connection: Connection = DEFAULT_CONNECTION,
    sudo_password: bool = False,
) -> LabState:
    if sudo_password and connection != "ssh":
        # containers.podman's connection runs sudo without answering its password prompt.
        raise LabError(
            "--sudo-password needs the ssh connection (the default): the podman connection cannot answer sudo"
        )
    check_runtime()
    if LabState.load(state_dir) is not None:
        raise LabError(f"a lab is already up (state in {state_dir}); run `gpulab lab down` first")
    ident = lab_id(state_dir)
    nodes = [Node(n.name, n.profile, n.image, ident) for n in nodes]
    taken = sorted(set(running_containers()) & {n.container for n in nodes})
    if taken:
        raise LabError(f"containers {', '.join(taken)} already exist; run `gpulab lab down` first")
    if port is not None and not ssh.free_port(port):
        raise LabError(f"port {port} on 127.0.0.1 is taken; choose another with --port")
    state_dir.mkdir(parents=True, exist_ok=True)
    services = LabServices(root=state_dir / "services", cache_dir=cache_dir)
    services.prepare()
    port = port or ssh.free_port()
    pid = start_detached_mirror(services.mirror_root, port, state_dir / "mirror.log")
    state = LabState(state_dir, nodes, f"http://127.0.0.1:{port}", pid, connection, sudo_password)
    state.save()
    try:
        for image in sorted({n.image for n in nodes}):
            ensure_image(image)
        password = ssh.make_sudo_password(state.ssh) if sudo_password else None
        for node in nodes:
            labels = ["--label", LAB_LABEL, "--label", f"{LAB_ID_LABEL}={ident}"]
            image = f"localhost/gpulab-test:{node.image}"
            podman(
                "run",
                "-d",
                "--name",
                node.container,
                *labels,
                "--network",
                "host",
                image,
                "sleep",
                "infinity",
            )
            set_profile(node)
            if password is not None:
                ssh.require_sudo_password(node.container, password)
        if connection == "ssh":
            ports = ssh.serve(state.ssh, [node.container for node in nodes])
            for node in nodes:
                node.ssh_port = ports[node.container]
            state.save()
        write_inventory(state, _installer_sha256(state_dir))
    except BaseException:  # also Ctrl-C: leave nothing behind
        down(state_dir)
        raise
    return state


def down(state_dir: Path) -> list[str]:
    """Remove this lab's containers (found by its id label when no state is left) and stop its mirror."""
    removed: list[str] = []
    state = LabState.load(state_dir)
    for name in running_containers(lab_id(state_dir)):
        podman("rm", "-f", "-t", "0", name)
        removed.append(name)
    if state is not None:
        stop_detached_mirror(state.mirror_pid)
        removed.append(f"mirror (pid {state.mirror_pid})")
        (state_dir / "lab.json").unlink()
    if ssh.files(state_dir).root.exists():  # the lab's key pair, known_hosts and sudo password
        shutil.rmtree(ssh.files(state_dir).root)
        removed.append("ssh keys and sudo password")
    return removed


def _installer_sha256(state_dir: Path) -> str:
    """The sha256 of the lab's Miniforge installer, as `LabServices.prepare` recorded it."""
    return checksums(state_dir / "services")[installer_name(LAB_RELEASE, LAB_FLAVOR)]


def trust_host_keys(state: LabState) -> None:
    """Write the lab's known_hosts from the nodes' current host keys (read through podman, not over SSH)."""
    ssh.write_known_hosts(state.ssh, {n.container: n.ssh_port for n in state.nodes})


SSHD_ACTIONS = ("stop", "start", "new-host-keys", "trust")


def sshd(state_dir: Path, node_name: str, action: str) -> Node:
    """Rehearse SSH trouble on a node: stop/start its sshd, give it new host keys (a reinstalled node),
    or trust its current host keys again (what an admin does after checking the new key)."""
    state = LabState.load(state_dir)
    if state is None:
        raise LabError("no lab is up; run `gpulab lab up` first")
    if state.connection != "ssh":
        raise LabError(
            "this lab's nodes are reached through podman; start it again without `--connection podman`"
        )
    node = state.node(node_name)
    try:
        if action == "stop":
            ssh.stop_sshd(node.container)
        elif action == "start":
            if not ssh.sshd_running(node.container):
                ssh.start_sshd(node.container, node.ssh_port)
        elif action == "new-host-keys":
            if ssh.sshd_running(node.container):
                ssh.stop_sshd(node.container)
            ssh.start_sshd(node.container, node.ssh_port, new_host_keys=True)
        else:  # "trust"
            trust_host_keys(state)
    except ssh.SshLabError as exc:
        raise LabError(str(exc)) from exc
    return node


def switch_driver(state_dir: Path, node_name: str, profile: str) -> Node:
    state = LabState.load(state_dir)
    if state is None:
        raise LabError("no lab is up; run `gpulab lab up` first")
    node = state.node(node_name)
    node.profile = profile
    set_profile(node)
    state.save()
    write_inventory(state, _installer_sha256(state_dir))
    return node
