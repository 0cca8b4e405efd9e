"""The simulated lab's node specs, capture profiles and inventory (no containers needed)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from gpulab.lab import cluster, nvidia_smi
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
        ("99", "between 1 and 12"),
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
