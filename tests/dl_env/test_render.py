"""Render the spec with the real role (tasks_from: render, dl_env_render_only) for a table of hosts:
driver/CUDA/no-GPU x groups x base files, through ansible-playbook, then check every rendered file.

Two bring-your-own files go through the role (one on a GPU host, one on a CPU host): they prove the role
hands the file to the rewrite filter and writes what it returns. Every other base file is checked against
conda's schema in-process, through the same filter (the role adds nothing per file)."""

from __future__ import annotations

import re
from typing import Any

import pytest

from ._load import FIXTURES, dl_env_filters, local_render_vars, run_role_entry

F = dl_env_filters()
pytestmark = pytest.mark.slow

H100 = {
    "cuda_check_cuda_version": "12.9",
    "cuda_check_gpu_present": True,
    "cuda_check_driver_version": "575.57.08",
    "cuda_check_gpus": [{"name": "NVIDIA H100 80GB HBM3"}, {"name": "NVIDIA H100 80GB HBM3"}],
}
L40S = {
    "cuda_check_cuda_version": "13.0",
    "cuda_check_gpu_present": True,
    "cuda_check_driver_version": "595.80",
    "cuda_check_gpus": [{"name": "NVIDIA L40S"}],
}
CPU = {
    "cuda_check_cuda_version": "",
    "cuda_check_gpu_present": False,
    "cuda_check_driver_version": "",
    "cuda_check_gpus": [],
}
BYO = sorted(p.name for p in FIXTURES.glob("*.yml") if not p.name.startswith("not-"))
MATCHSPEC = re.compile(
    r"^([A-Za-z0-9_.\-]+::)?[A-Za-z0-9_.\-]+(\[[^\]]+\])?(\s*[=<>!~ ][^\s]*(\s+[^\s]+)?)?$"
)


# The bring-your-own files rendered through the role, each on one kind of host: (fixture, host suffix).
BYO_HOST_FACTS = {"gpu": H100, "cpu": CPU}
BYO_THROUGH_ANSIBLE = [("pip-cuda-index.yml", "gpu"), ("cudatoolkit-legacy.yml", "cpu")]
EXTRA_CONDA, EXTRA_PIP = ["numpy", "scipy"], ["einops"]  # the inventory's dl_env_*_packages


def byo_host(fixture: str) -> str:
    return "byo-" + fixture.removesuffix(".yml")


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    tmp = tmp_path_factory.mktemp("dl_env_render")
    out = tmp / "out"
    byo_hosts: dict[str, Any] = {}
    for fixture, suffix in BYO_THROUGH_ANSIBLE:
        byo_hosts[f"{byo_host(fixture)}-{suffix}"] = {
            **BYO_HOST_FACTS[suffix],
            "dl_env_base_file": str(FIXTURES / fixture),
        }
    inventory = {
        "all": {
            "vars": {
                **local_render_vars(out),
                "dl_env_conda_packages": EXTRA_CONDA,
                "dl_env_pip_packages": EXTRA_PIP,
            },
            "children": {
                "gpu_train": {
                    "vars": {
                        "dl_env_group_conda_packages": ["numpy=2.1", "!scipy"],
                        "dl_env_group_pip_packages": [
                            "--extra-index-url https://mirror.example/simple",
                            "timm",
                        ],
                    },
                    "hosts": {
                        "h100-node": H100,
                        "l40s-node": {**L40S, "dl_env_host_conda_packages": ["scipy=1.14"]},
                    },
                },
                "cpu_nodes": {
                    "hosts": {
                        "cpu-node": {**CPU, "dl_env_python_version": "3.11"},
                        "no-framework": {
                            **CPU,
                            "dl_env_framework": "none",
                            "dl_env_variables": {"OMP_NUM_THREADS": 4},
                        },
                    }
                },
                "byo": {
                    "hosts": {
                        **byo_hosts,
                        "bad-file": {**H100, "dl_env_base_file": str(FIXTURES / "not-an-env-workflow.yml")},
                        "missing-file": {**H100, "dl_env_base_file": str(tmp / "nope.yml")},
                        "bad-cuda": {**H100, "cuda_check_cuda_version": "12"},  # not "X.Y"
                    }
                },
            },
        }
    }
    first = run_role_entry(tmp, inventory, "render", ANSIBLE_FORKS="8")
    second = run_role_entry(tmp, inventory, "render", ANSIBLE_FORKS="8")
    return {"out": out, "first": first, "second": second}


def spec_of(rendered: dict[str, Any], host: str) -> tuple[str, dict[str, Any]]:
    path = rendered["out"] / host / "environment.yml"
    assert path.is_file(), rendered["first"].stdout[-4000:]
    text = path.read_text(encoding="utf-8")
    return text, F.check_spec(text, str(path))


def deps(data: dict[str, Any]) -> list[str]:
    return [d for d in data["dependencies"] if isinstance(d, str)]


def pip(data: dict[str, Any]) -> list[str]:
    return [p for d in data["dependencies"] if isinstance(d, dict) for p in d["pip"]]


def test_run_fails_only_the_bad_hosts(rendered: dict[str, Any]) -> None:
    first = rendered["first"]
    assert first.returncode == 2, first.stdout[-4000:]
    recap = dict(
        re.findall(r"^(\S+)\s+:\s+ok=\d+\s+changed=\d+\s+unreachable=\d+\s+failed=(\d+)", first.stdout, re.M)
    )
    assert {h for h, failed in recap.items() if failed != "0"} == {"bad-file", "missing-file", "bad-cuda"}
    assert (
        "not-an-env-workflow.yml is not a conda environment spec: the required key 'dependencies' is missing"
        in first.stdout
    )
    missing = r"missing-file: dl_env_base_file \S+/nope\.yml is not a file on the controller"
    said = " ".join(first.stdout.split())  # the YAML output wraps long messages
    assert re.search(missing, said), first.stdout[-4000:]
    assert "bad-cuda: dl_env needs cuda_check_cuda_version" in said, first.stdout[-4000:]
    assert "Traceback" not in first.stdout + first.stderr


def test_second_render_changes_nothing(rendered: dict[str, Any]) -> None:
    changed = re.findall(r"^(\S+)\s+:\s+ok=\d+\s+changed=(\d+)", rendered["second"].stdout, re.M)
    assert changed and all(n == "0" for _, n in changed), rendered["second"].stdout[-3000:]


@pytest.mark.parametrize(("host", "facts"), [("h100-node", H100), ("l40s-node", L40S), ("cpu-node", CPU)])
def test_header_names_the_host_facts_without_a_timestamp(
    rendered: dict[str, Any], host: str, facts: dict[str, Any]
) -> None:
    text, _ = spec_of(rendered, host)
    head = text.split("name:", 1)[0]
    assert "Ansible managed" in head
    assert f"# gpulab dl_env spec for host {host}, environment gpulab" in head
    assert f"# NVIDIA driver: {facts['cuda_check_driver_version'] or 'none'}" in head
    assert f"# CUDA chosen: {facts['cuda_check_cuda_version'] or 'none (CPU build)'}" in head
    gpus = ", ".join(g["name"] for g in facts["cuda_check_gpus"]) or "none"
    assert f"# GPUs: {gpus}" in head
    assert "# Template: environment.yml.j2" in head
    assert not re.search(r"\d{4}-\d{2}-\d{2}|\d{2}:\d{2}:\d{2}", text)


def test_gpu_host_gets_conda_forge_cuda_build_and_group_layer(rendered: dict[str, Any]) -> None:
    _, data = spec_of(rendered, "h100-node")
    assert data["channels"] == ["conda-forge", "nodefaults"]
    assert deps(data) == ["python=3.12", "pip", "pytorch-gpu", "cuda-version=12.9", "numpy=2.1"]
    assert pip(data) == ["einops", "--extra-index-url https://mirror.example/simple", "timm"]


def test_host_layer_wins_over_group_layer(rendered: dict[str, Any]) -> None:
    _, data = spec_of(rendered, "l40s-node")
    assert deps(data) == ["python=3.12", "pip", "pytorch-gpu", "cuda-version=13.0", "numpy=2.1", "scipy=1.14"]


def test_cpu_host_gets_pytorch_cpu_and_no_cuda(rendered: dict[str, Any]) -> None:
    text, data = spec_of(rendered, "cpu-node")
    assert deps(data) == ["python=3.11", "pip", "pytorch-cpu", "numpy", "scipy"]
    assert "cuda-version" not in text.split("dependencies:", 1)[1]
    _, bare = spec_of(rendered, "no-framework")
    assert deps(bare) == ["python=3.12", "pip", "numpy", "scipy"]
    assert bare["variables"] == {"OMP_NUM_THREADS": "4"}


def byo_rewrite(fixture: str, suffix: str) -> dict[str, Any]:
    """What the role's filter makes of a bring-your-own file for that kind of host (in-process)."""
    cuda = BYO_HOST_FACTS[suffix]["cuda_check_cuda_version"]
    text = F._filter_rewrite((FIXTURES / fixture).read_text(), fixture, cuda, EXTRA_CONDA, EXTRA_PIP)
    data: dict[str, Any] = F.check_spec(text, fixture)
    return data


def assert_conda_schema(data: dict[str, Any]) -> None:
    assert set(data) <= set(F.VALID_KEYS)
    assert isinstance(data.get("channels", []), list)
    for dep in deps(data):
        assert MATCHSPEC.match(dep), dep
    assert any(F.package_key(d) == "python" for d in deps(data))
    if pip(data):
        assert "pip" in {F.package_key(d) for d in deps(data)}


@pytest.mark.parametrize(("fixture", "suffix"), BYO_THROUGH_ANSIBLE)
def test_byo_file_is_rewritten_for_the_host(rendered: dict[str, Any], fixture: str, suffix: str) -> None:
    text, data = spec_of(rendered, f"{byo_host(fixture)}-{suffix}")
    assert f"# Base file: {fixture} (CUDA pins replaced)" in text
    assert data == byo_rewrite(fixture, suffix)


@pytest.mark.parametrize(
    "host",
    [
        "h100-node",
        "l40s-node",
        "cpu-node",
        "no-framework",
        *[f"{byo_host(f)}-{s}" for f, s in BYO_THROUGH_ANSIBLE],
    ],
)
def test_rendered_spec_follows_conda_schema(rendered: dict[str, Any], host: str) -> None:
    _, data = spec_of(rendered, host)
    assert_conda_schema(data)


@pytest.mark.parametrize("fixture", BYO)
@pytest.mark.parametrize("suffix", BYO_HOST_FACTS)
def test_every_byo_file_rewritten_follows_conda_schema(fixture: str, suffix: str) -> None:
    assert_conda_schema(byo_rewrite(fixture, suffix))
