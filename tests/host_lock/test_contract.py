"""Contract of the host_lock role: defaults == argument_specs == README table; names; the module's docs."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import yaml

ROLE = Path(__file__).resolve().parents[2] / "roles" / "host_lock"
DRIVER_VARS = {"gpulab_run_id", "gpulab_controller", "gpulab_controller_pid", "gpulab_stop_file"}


def _yaml(rel: str) -> Any:
    return yaml.safe_load((ROLE / rel).read_text())


def test_defaults_spec_and_readme_agree() -> None:
    defaults = _yaml("defaults/main.yml")
    specs = _yaml("meta/argument_specs.yml")["argument_specs"]
    options = specs["main"]["options"]
    assert set(options) == set(defaults) | DRIVER_VARS
    text = (ROLE / "README.md").read_text()
    section = text.split("## Role Variables", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("| `")]
    assert [r.split("`")[1] for r in rows] == list(defaults)
    for row in rows:
        name, typ, default, required, description = (c.strip() for c in row.strip().strip("|").split("|"))
        spec = options[name.strip("`")]
        assert name.strip("`").startswith("host_lock_")
        assert (typ, json.loads(default.strip("`")), required) == (spec["type"], spec["default"], "no")
        assert spec["default"] == defaults[name.strip("`")]
        assert description == spec["description"]
    for entry in ("release", "checkpoint", "cleanup"):
        assert (ROLE / "tasks" / f"{entry}.yml").is_file()
        for name, spec in specs[entry]["options"].items():
            assert spec["type"] == options[name]["type"], (entry, name)


def test_every_task_is_named_with_its_file_prefix_and_uses_fqcn() -> None:
    for path in (ROLE / "tasks").glob("*.yml"):
        for task in yaml.safe_load(path.read_text()):
            if path.stem == "main":
                assert "ansible.builtin.import_tasks" in task
                continue
            assert task["name"].startswith(f"{path.stem} | "), task["name"]
            module = next(k for k in task if k.startswith(("ansible.builtin.", "gpulab.gpulab.")))
            assert module


def test_module_documents_every_option_it_accepts() -> None:
    source = (ROLE.parents[1] / "plugins" / "modules" / "host_lock.py").read_text()
    doc = yaml.safe_load(source.split('DOCUMENTATION = r"""', 1)[1].split('"""', 1)[0])
    spec = source.split("argument_spec={", 1)[1].split("},\n        supports_check_mode", 1)[0]
    assert set(doc["options"]) == set(re.findall(r'^\s+"([a-z_]+)": \{"type"', spec, flags=re.MULTILINE))
