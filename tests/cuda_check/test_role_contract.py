"""cuda_check: defaults, argument_specs, README table and module documentation agree."""

from __future__ import annotations

import json
import re
from typing import Any

import yaml

from ._load import MODULE_PATH, ROLE, gpu_facts, gpu_facts_module, role_defaults

SPEC: dict[str, Any] = yaml.safe_load((ROLE / "meta" / "argument_specs.yml").read_text(encoding="utf-8"))[
    "argument_specs"
]["main"]["options"]
TYPE_NAMES = {"str": "str", "bool": "bool", "list": "list of str", "int": "int"}


def _readme_rows() -> dict[str, list[str]]:
    text = (ROLE / "README.md").read_text(encoding="utf-8")
    section = text.split("## Role Variables", 1)[1].split("\n## ", 1)[0]
    rows: dict[str, list[str]] = {}
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 5 and cells[0].startswith("`cuda_check_"):
            rows[cells[0].strip("`")] = cells
    return rows


def test_defaults_match_the_spec() -> None:
    defaults = role_defaults()
    assert set(defaults) == set(SPEC)
    for name, option in SPEC.items():
        assert option["default"] == defaults[name], name
        assert option.get("description"), name


def test_readme_table_matches_the_spec() -> None:
    rows = _readme_rows()
    assert set(rows) == set(SPEC)
    for name, option in SPEC.items():
        _, type_cell, default_cell, required_cell, description = rows[name]
        assert type_cell == TYPE_NAMES[option["type"]], name
        default = option["default"]
        expected = default if isinstance(default, str) and default else json.dumps(default)
        assert default_cell == f"`{expected}`", name
        assert required_cell == ("yes" if option.get("required") else "no"), name
        assert description == option["description"], name


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
