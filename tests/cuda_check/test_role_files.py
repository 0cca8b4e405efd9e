"""cuda_check's files beyond the shared contract (tests/test_role_contract.py): the README names every fact
the role publishes, and the module's documentation matches its options."""

from __future__ import annotations

import re

import yaml

from ._load import MODULE_PATH, ROLE, gpu_facts, gpu_facts_module


def test_readme_lists_every_published_fact() -> None:
    text = (ROLE / "README.md").read_text(encoding="utf-8")
    record = (ROLE / "tasks" / "record.yml").read_text(encoding="utf-8")
    published = re.findall(r"^    (cuda_check_[a-z_]+):", record, flags=re.MULTILINE)
    assert len(published) >= 8
    for name in published:
        assert f"`{name}`" in text, name


def test_module_documentation_is_valid_and_matches_its_options() -> None:
    doc = yaml.safe_load(gpu_facts_module.DOCUMENTATION)
    yaml.safe_load(gpu_facts_module.EXAMPLES)
    yaml.safe_load(gpu_facts_module.RETURN)
    # The module's argument_spec is the shared nvidia-smi OPTIONS (plugins/module_utils/nvidia_smi.py).
    assert "argument_spec=OPTIONS" in MODULE_PATH.read_text(encoding="utf-8")
    assert set(gpu_facts.OPTIONS) == set(doc["options"])
    for name, spec in gpu_facts.OPTIONS.items():
        documented = doc["options"][name]
        assert (documented["type"], documented.get("default")) == (spec["type"], spec["default"]), name
