"""The simulated lab's node specs, capture profiles and inventory (no containers needed)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from gpulab.lab import cluster, nvidia_smi, ssh
from gpulab.lab.capture import add_capture_profiles

FIXTURES = Path(nvidia_smi.FIXTURES_DIR)


def test_default_nodes_mix_two_drivers_and_a_cpu_node() -> None:
    nodes = cluster.parse_nodes(cluster.DEFAULT_NODES)
    assert [n.group for n in nodes] == ["gpu_nodes", "gpu_nodes", "cpu_nodes"]
    assert len({n.profile for n in nodes}) == 3


def test_node_spec_with_image_and_count() -> None:
    nodes = cluster.parse_nodes("a=l40s-595.80,b=none@debian13")
    assert (nodes[1].name, nodes[1].profile, nodes[1].image) == ("b", "none", "debian13")
    assert [n.name for n in cluster.parse_nodes("4")] == ["node1", "node2", "node3", "node4"]


@pytest.mark.parametrize(
    ("spec", "needle"),
    [
        ("a=no-such-gpu", "unknown profile 'no-such-gpu'"),
        ("a=none,a=none", "unique"),
        ("A=none", "node name"),
        ("a", "NAME=PROFILE"),
        ("a=none@ubuntu", "unknown image"),
        ("99", "between 1 and 32"),
    ],
)
def test_bad_node_specs_say_what_is_wrong(spec: str, needle: str) -> None:
    with pytest.raises(cluster.LabError, match=needle):
        cluster.parse_nodes(spec)


def test_inventory_is_ordinary_ansible_with_mirror_settings(tmp_path: Path) -> None:
    state = cluster.LabState(tmp_path, cluster.parse_nodes(cluster.DEFAULT_NODES), "http://127.0.0.1:8123", 1)
    path = cluster.write_inventory(state, "ab" * 32)
    inv = yaml.safe_load(path.read_text())
    assert set(inv["all"]["children"]) == {"gpu_nodes", "cpu_nodes"}
    assert inv["all"]["vars"]["ansible_user"] == "admin"
    assert inv["all"]["vars"]["ansible_become"] is True
    host = inv["all"]["children"]["cpu_nodes"]["hosts"]["cpu-node"]
    assert host["ansible_host"] == "gpulab-lab-cpu-node"
    lab_vars_text = (tmp_path / "inventory" / "group_vars" / "all" / "lab.yml").read_text()
    assert "SIMULATED" in lab_vars_text
    lab_vars = yaml.safe_load(lab_vars_text)
    assert lab_vars["miniconda_mirror_url"] == "http://127.0.0.1:8123/miniforge"
    assert lab_vars["miniconda_installer_sha256"] == "ab" * 32
    assert lab_vars["dl_env_pip_index_url"] == "http://127.0.0.1:8123/pypi/simple"


def test_state_round_trips(tmp_path: Path) -> None:
    state = cluster.LabState(tmp_path, cluster.parse_nodes("x=none"), "http://127.0.0.1:1", 42)
    state.save()
    loaded = cluster.LabState.load(tmp_path)
    assert loaded is not None
    assert (loaded.nodes[0].name, loaded.mirror_pid) == ("x", 42)
    assert cluster.LabState.load(tmp_path / "nothing") is None


def test_user_captures_become_profiles_and_nodes(tmp_path: Path) -> None:
    node_dir = tmp_path / "gpu07"
    node_dir.mkdir()
    query = FIXTURES / "nvidia-smi" / "query-q" / "l40s__595.80__idle.txt"
    (node_dir / "query.txt").write_bytes(query.read_bytes())
    nodes = add_capture_profiles(cluster.parse_nodes("gpu07=none,cpu=none"), tmp_path)
    assert [(n.name, n.profile) for n in nodes] == [("gpu07", "capture-gpu07"), ("cpu", "none")]
    staged = tmp_path / "root"
    nvidia_smi.stage(staged, "capture-gpu07")
    data = staged / nvidia_smi.DATA_DIR / "capture-gpu07"
    assert any(p.read_bytes() == query.read_bytes() for p in data.iterdir())


def test_capture_without_query_is_refused(tmp_path: Path) -> None:
    (tmp_path / "gpu01").mkdir()
    with pytest.raises(cluster.LabError, match=r"query\.txt is missing"):
        add_capture_profiles([], tmp_path)


def test_each_lab_has_its_own_container_names(tmp_path: Path) -> None:
    """Two labs (state dirs) on one machine never share a container name; a lab's id is stable."""
    first, second = cluster.lab_id(tmp_path / "a"), cluster.lab_id(tmp_path / "b")
    assert first != second and first == cluster.lab_id(tmp_path / "x" / ".." / "a")
    node = cluster.parse_nodes("gpu=none")[0]
    named = [cluster.Node(node.name, node.profile, node.image, lab) for lab in (first, second)]
    assert named[0].container == f"gpulab-lab-{first}-gpu" != named[1].container
    state = cluster.LabState(tmp_path, named[:1], "http://127.0.0.1:1", 1)
    state.save()
    loaded = cluster.LabState.load(tmp_path)
    assert loaded is not None and loaded.nodes[0].container == named[0].container


def test_ssh_inventory_uses_the_lab_key_and_known_hosts_and_never_the_password(tmp_path: Path) -> None:
    nodes = cluster.parse_nodes("a=l40s-595.80,b=none")
    nodes[0].ssh_port, nodes[1].ssh_port = 40001, 40002
    state = cluster.LabState(tmp_path, nodes, "http://127.0.0.1:8123", 1, "ssh", sudo_password=True)
    text = cluster.write_inventory(state, "ab" * 32).read_text()
    inv = yaml.safe_load(text)
    lab_vars = inv["all"]["vars"]
    assert lab_vars["ansible_connection"] == "ssh"
    assert lab_vars["ansible_ssh_private_key_file"] == str(tmp_path / "ssh" / "id_ed25519")
    args = lab_vars["ansible_ssh_common_args"].split()
    assert f"UserKnownHostsFile={tmp_path / 'ssh' / 'known_hosts'}" in args
    assert "StrictHostKeyChecking=accept-new" in args
    a = inv["all"]["children"]["gpu_nodes"]["hosts"]["a"]
    assert (a["ansible_host"], a["ansible_port"]) == ("127.0.0.1", 40001)
    assert "become_pass" not in text and "ansible_password" not in text
    assert str(tmp_path / "ssh" / "sudo-password") in text  # the header says where the password is


def test_lab_state_keeps_its_connection_and_ports(tmp_path: Path) -> None:
    nodes = cluster.parse_nodes("a=none")
    nodes[0].ssh_port = 40001
    cluster.LabState(tmp_path, nodes, "http://127.0.0.1:1", 7, "ssh", True).save()
    loaded = cluster.LabState.load(tmp_path)
    assert loaded is not None
    assert (loaded.connection, loaded.sudo_password, loaded.nodes[0].ssh_port) == ("ssh", True, 40001)
    # A lab.json written before SSH labs existed is a podman lab.
    (tmp_path / "lab.json").write_text(
        '{"nodes": [{"name": "a", "profile": "none"}], "mirror_url": "u", "mirror_pid": 1}'
    )
    old = cluster.LabState.load(tmp_path)
    assert old is not None and (old.connection, old.sudo_password) == ("podman", False)


def test_lab_key_pair_and_sudo_password_are_private(tmp_path: Path) -> None:
    files = ssh.files(tmp_path)
    password = ssh.make_sudo_password(files)  # first: a podman lab with --sudo-password has no key pair
    ssh.make_key_pair(files)
    assert files.root.stat().st_mode & 0o777 == 0o700
    assert files.private_key.stat().st_mode & 0o777 == 0o600
    assert files.sudo_password.stat().st_mode & 0o777 == 0o600
    assert files.sudo_password.read_text().strip() == password and len(password) >= 20
    assert files.public_key.read_text().startswith("ssh-ed25519 ")
    assert ssh.make_sudo_password(files) != password  # a new lab, a new password


def test_sshd_actions_need_an_ssh_lab(tmp_path: Path) -> None:
    with pytest.raises(cluster.LabError, match="no lab is up"):
        cluster.sshd(tmp_path, "a", "stop")
    cluster.LabState(tmp_path, cluster.parse_nodes("a=none"), "http://127.0.0.1:1", 1).save()
    with pytest.raises(cluster.LabError, match="without `--connection podman`"):
        cluster.sshd(tmp_path, "a", "stop")


def test_sudo_password_needs_the_ssh_connection(tmp_path: Path) -> None:
    nodes = cluster.parse_nodes("a=none")
    with pytest.raises(cluster.LabError, match="--sudo-password needs the ssh connection"):
        cluster.up(tmp_path, nodes, tmp_path / "cache", connection="podman", sudo_password=True)
    assert not (tmp_path / "lab.json").exists()
