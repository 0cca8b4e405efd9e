"""Issue 12 part 3 end to end: hostile inventory values through a real `ansible-playbook` run on localhost,
one host per rendered file (default spec template, bring-your-own spec, .condarc, profile script), plus the
preflight refusal of a prefix the installer cannot take.

Ansible 2.19 treats every inventory string as a Jinja template (trusted), so `{{ x }}` in inventory is
rendered by Ansible before any role sees it; a literal `{{` must be written `!unsafe` (templates/README.md,
"Values with `{{`"). These hosts use `!unsafe` for the hostile values and check they arrive literally, and one
plain value checks that Ansible's own templating is what happens without it. Contents of a bring-your-own
file are never templated.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import repo_ansible_env

REPO = Path(__file__).resolve().parents[1]
HOSTILE = "a: {{ b }} $(touch pwned) `id` 'q\" *x* &y !z # on\n- no\n"
H100 = {
    "cuda_check_cuda_version": "12.9",
    "cuda_check_gpu_present": True,
    "cuda_check_driver_version": "575.57.08",
    "cuda_check_gpus": [{"name": "NVIDIA H100 80GB HBM3"}],
}
pytestmark = pytest.mark.slow


class Unsafe(str):
    """A string written to the inventory as `!unsafe` (Ansible never templates it)."""


class _Dumper(yaml.SafeDumper):  # type: ignore[misc]
    pass


_Dumper.add_representer(Unsafe, lambda d, v: d.represent_scalar("!unsafe", str(v), style='"'))


@pytest.fixture(scope="module")
def played(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    tmp = tmp_path_factory.mktemp("quoting")
    out = tmp / "rendered"
    byo = tmp / "byo.yml"
    byo.write_text(
        yaml.safe_dump(
            {
                "name": "no",
                "channels": ["on"],
                "dependencies": ["numpy"],
                "variables": {"LITERAL": "{{ inventory_hostname }}", "HOSTILE": HOSTILE},
            }
        ),
        encoding="utf-8",
    )
    shell_prefix = tmp / "shell" / "p$(touch${IFS}pwned)'\"*{{x}}`id`"
    local = {"ansible_connection": "local", "ansible_python_interpreter": sys.executable}
    miniconda = {"miniconda_flavor": "miniforge", "miniconda_version": "25.11.0-1"}
    inventory = {
        "all": {
            "vars": local,
            "children": {
                "envs": {
                    "vars": {**H100, "dl_env_render_only": True, "dl_env_render_dest_controller": str(out)},
                    "hosts": {
                        "env-default": {
                            "dl_env_name": "1.10",
                            "dl_env_channels": [Unsafe(HOSTILE), "on"],
                            "dl_env_variables": {
                                Unsafe("K{{ k }}"): Unsafe(HOSTILE),
                                "TRUSTED": "{{ inventory_hostname }}",
                            },
                        },
                        "env-byo": {"dl_env_base_file": str(byo)},
                    },
                },
                "conda": {
                    "vars": miniconda,
                    "hosts": {
                        "condarc": {
                            "miniconda_prefix": str(tmp / "condarc"),
                            "miniconda_channels": [Unsafe(HOSTILE), "on"],
                            "miniconda_custom_channels": {"yes": Unsafe("https://h/{{ x }}?a=$(id)")},
                            "miniconda_condarc_extra": {"ssl_verify": Unsafe("/ca {{ x }}.pem")},
                        },
                        "shell": {
                            "miniconda_prefix": Unsafe(str(shell_prefix)),
                            "miniconda_profile_script": str(tmp / "shell" / "gpulab-conda.sh"),
                        },
                        "prefix-space": {"miniconda_prefix": "/opt/my conda"},
                    },
                },
            },
        }
    }
    (tmp / "condarc").mkdir()
    (tmp / "shell").mkdir()
    (tmp / "hosts.yml").write_text(yaml.dump(inventory, Dumper=_Dumper), encoding="utf-8")
    include = {
        "ansible.builtin.include_role": {"name": "gpulab.gpulab.miniconda", "tasks_from": "{{ item }}"}
    }
    plays = [
        {
            "name": "Render the env specs",
            "hosts": "envs",
            "gather_facts": False,
            "tasks": [
                {
                    "name": "Render the spec",
                    "ansible.builtin.include_role": {"name": "gpulab.gpulab.dl_env", "tasks_from": "render"},
                }
            ],
        },
        {
            "name": "Write the conda files",
            "hosts": "conda",
            "gather_facts": False,
            "tasks": [
                {
                    "name": "Run the miniconda task file",
                    **include,
                    "loop": "{{ ['preflight', "
                    "'configure' if inventory_hostname == 'condarc' else 'shell'] }}",
                }
            ],
        },
    ]
    (tmp / "play.yml").write_text(yaml.safe_dump(plays), encoding="utf-8")
    env = repo_ansible_env(ANSIBLE_FORKS="8")
    proc = subprocess.run(
        [
            str(Path(sys.executable).parent / "ansible-playbook"),
            "-i",
            str(tmp / "hosts.yml"),
            str(tmp / "play.yml"),
        ],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp,
        check=False,
        timeout=300,
    )
    recap = dict(
        re.findall(r"^(\S+)\s+:\s+ok=\d+\s+changed=\d+\s+unreachable=\d+\s+failed=(\d+)", proc.stdout, re.M)
    )
    return {"tmp": tmp, "out": out, "proc": proc, "recap": recap, "shell_prefix": shell_prefix}


def _spec(played: dict[str, Any], host: str) -> Any:
    path = played["out"] / host / "environment.yml"
    assert path.is_file(), played["proc"].stdout[-4000:]
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def test_only_the_refused_prefix_fails(played: dict[str, Any]) -> None:
    assert {h for h, failed in played["recap"].items() if failed != "0"} == {"prefix-space"}, played[
        "proc"
    ].stdout[-4000:]
    assert not (played["tmp"] / "pwned").exists()


def test_refusal_names_the_variable(played: dict[str, Any]) -> None:
    stdout = played["proc"].stdout
    assert "install prefix '/opt/my conda' must be an absolute path without spaces" in stdout
    assert "miniconda_prefix" in stdout.split("install prefix '/opt/my conda'", 1)[1][:300]


def test_default_template_writes_unsafe_values_literally(played: dict[str, Any]) -> None:
    data = _spec(played, "env-default")
    assert data["name"] == "1.10"
    assert data["channels"] == [HOSTILE, "on"]
    # Without !unsafe, Ansible renders an inventory template itself before the role sees it.
    assert data["variables"] == {"K{{ k }}": HOSTILE, "TRUSTED": "env-default"}


def test_byo_file_content_is_never_templated(played: dict[str, Any]) -> None:
    data = _spec(played, "env-byo")
    assert data["name"] == "no"
    assert data["channels"] == ["on"]
    assert data["variables"] == {"LITERAL": "{{ inventory_hostname }}", "HOSTILE": HOSTILE}


def test_condarc_writes_unsafe_values_literally(played: dict[str, Any]) -> None:
    data = yaml.safe_load((played["tmp"] / "condarc" / ".condarc").read_text(encoding="utf-8"))
    assert data["channels"] == [HOSTILE, "on"]
    assert data["custom_channels"] == {"yes": "https://h/{{ x }}?a=$(id)"}
    assert data["ssl_verify"] == "/ca {{ x }}.pem"


def test_profile_script_sources_the_literal_prefix(played: dict[str, Any]) -> None:
    script = played["tmp"] / "shell" / "gpulab-conda.sh"
    assert script.is_file(), played["proc"].stdout[-4000:]
    conda_sh = played["shell_prefix"] / "etc" / "profile.d" / "conda.sh"
    conda_sh.parent.mkdir(parents=True)
    conda_sh.write_text("printf '%s' sourced\n")
    proc = subprocess.run(
        ["/bin/sh", str(script)], cwd=played["tmp"], capture_output=True, text=True, check=False
    )
    assert (proc.returncode, proc.stdout, proc.stderr) == (0, "sourced", "")
    assert not (played["tmp"] / "pwned").exists()
