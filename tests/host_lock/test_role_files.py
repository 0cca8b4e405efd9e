"""host_lock's files beyond the shared contract (tests/test_role_contract.py): task names and modules, and
the module's documentation."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

ROLE = Path(__file__).resolve().parents[2] / "roles" / "host_lock"


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
