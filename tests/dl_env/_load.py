"""Load the collection's dl_env filter plugin as a module (plugins/ is not a package)."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import yaml

from tests.conftest import repo_ansible_env

REPO = Path(__file__).resolve().parents[2]
ROLE = REPO / "roles" / "dl_env"
FIXTURES = Path(__file__).resolve().parent / "fixtures"


def dl_env_filters() -> ModuleType:
    name = "gpulab_test_dl_env_filters"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, REPO / "plugins" / "filter" / "dl_env.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def local_render_vars(out: Path) -> dict[str, Any]:
    """Inventory vars that render on the controller itself into `out/<host>/environment.yml`."""
    return {
        "ansible_connection": "local",
        "ansible_python_interpreter": sys.executable,
        "dl_env_render_only": True,
        "dl_env_render_dest_controller": str(out),
    }


def run_role_entry(
    tmp: Path, inventory: dict[str, Any], tasks_from: str, **env: str
) -> subprocess.CompletedProcess[str]:
    """`ansible-playbook` over `inventory` with one play that includes the dl_env entry point
    `tasks_from` (render, check) on all hosts; `env` adds or overrides ANSIBLE_* settings."""
    (tmp / "hosts.yml").write_text(yaml.safe_dump(inventory), encoding="utf-8")
    task = {
        "name": f"Run dl_env {tasks_from}",
        "ansible.builtin.include_role": {"name": "gpulab.gpulab.dl_env", "tasks_from": tasks_from},
    }
    play = [{"name": tasks_from.capitalize(), "hosts": "all", "gather_facts": False, "tasks": [task]}]
    (tmp / f"{tasks_from}.yml").write_text(yaml.safe_dump(play), encoding="utf-8")
    run_env = repo_ansible_env(**env)
    argv = [
        str(Path(sys.executable).parent / "ansible-playbook"),
        "-i",
        str(tmp / "hosts.yml"),
        str(tmp / f"{tasks_from}.yml"),
    ]
    return subprocess.run(
        argv, capture_output=True, text=True, env=run_env, cwd=REPO, check=False, timeout=600
    )
