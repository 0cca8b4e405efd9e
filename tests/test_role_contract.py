"""One contract for every role (house style 2, 15, 16, 27): defaults/main.yml, meta/argument_specs.yml and
the README's Role Variables table agree row by row, and every README writes the table the same way (each
cell as meta/argument_specs.yml has it):

    | name | type | default | required | description |
    |---|---|---|---|---|
    | `<option>` | <type>, list[<elements>] for a list | `<default as JSON>` | yes/no | <description> |

One row per option of the `main` entry point, in the spec's order (the options with a default in
defaults/main.yml order); an option without a default has an empty default cell; an option with
`choices` ends its description with ``Choices: `a`, `b`.``; a `|` inside a cell is written `\\|`.
Role-specific checks of each role's files live in tests/<role>/test_role_files.py."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from gpulab.stop import run_vars
from tests.conftest import REPO

ROLES = ("cuda_check", "miniconda", "dl_env", "host_lock")
# Each role's entry points: True where one takes the main entry point's options whole (one options block),
# False where it takes some of them (with the same types and defaults). miniconda's cleanup runs the
# preflight, so dl_env's cleanup finds the resolved prefix (also in user mode).
ENTRY_POINTS: dict[str, dict[str, bool]] = {
    "cuda_check": {"main": True},
    "miniconda": {"main": True, "cleanup": True},
    "dl_env": {"main": True, "render": True, "check": True, "cleanup": True, "list": True},
    "host_lock": {"main": True, "release": False, "checkpoint": False, "cleanup": False},
}
# The extra vars the gpulab driver passes every run: the only options without the role's prefix.
DRIVER_VARS = frozenset(run_vars("run-id", Path("stop")))
TYPES = {"str", "bool", "int", "float", "list", "dict", "path", "raw"}
HEADER = "| name | type | default | required | description |"
RULE = "|---|---|---|---|---|"


def _yaml(role: str, rel: str) -> Any:
    return yaml.safe_load((REPO / "roles" / role / rel).read_text(encoding="utf-8"))


def defaults(role: str) -> dict[str, Any]:
    data: dict[str, Any] = _yaml(role, "defaults/main.yml")
    return data


def specs(role: str) -> dict[str, Any]:
    data: dict[str, Any] = _yaml(role, "meta/argument_specs.yml")["argument_specs"]
    return data


def readme_table(role: str) -> list[str]:
    """The lines of the first table under the README's `## Role Variables` heading."""
    text = (REPO / "roles" / role / "README.md").read_text(encoding="utf-8")
    section = text.split("\n## Role Variables\n", 1)[1].split("\n## ", 1)[0]
    lines = section.strip().splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("|"))
    end = next((i for i in range(start, len(lines)) if not lines[i].startswith("|")), len(lines))
    return lines[start:end]


def cells(line: str) -> list[str]:
    """A table line's cells, stripped; an escaped `\\|` stays inside its cell."""
    return [cell.strip() for cell in re.split(r"(?<!\\)\|", line.strip())[1:-1]]


def expected_row(name: str, option: dict[str, Any]) -> list[str]:
    """The README row of one spec option, cell by cell."""
    typ = option["type"] + (f"[{option['elements']}]" if "elements" in option else "")
    default = f"`{json.dumps(option['default'], ensure_ascii=False)}`" if "default" in option else ""
    description = option["description"]
    if "choices" in option:
        description += " Choices: " + ", ".join(f"`{choice}`" for choice in option["choices"]) + "."
    row = [f"`{name}`", typ, default, "yes" if option.get("required") else "no", description]
    return [cell.replace("|", "\\|") for cell in row]


def test_the_row_format() -> None:
    option = {"type": "str", "choices": ["a|b", "c"], "default": "a|b", "description": "D."}
    assert expected_row("x_y", option) == cells(r'| `x_y` | str | `"a\|b"` | no | D. Choices: `a\|b`, `c`. |')
    listed = {"type": "list", "elements": "str", "default": [], "description": "L."}
    assert expected_row("x_l", listed) == ["`x_l`", "list[str]", "`[]`", "no", "L."]
    required = {"type": "path", "required": True, "description": "R."}
    assert expected_row("x_r", required) == ["`x_r`", "path", "", "yes", "R."]


@pytest.mark.parametrize("role", ROLES)
def test_every_default_is_in_the_spec_with_the_same_default(role: str) -> None:
    values = defaults(role)
    options = specs(role)["main"]["options"]
    with_default = [name for name, option in options.items() if "default" in option]
    assert with_default == list(values), "the spec's defaults, in defaults/main.yml order"
    for name, value in values.items():
        assert options[name]["default"] == value, name


@pytest.mark.parametrize("role", ROLES)
def test_every_variable_is_role_prefixed(role: str) -> None:
    assert all(name.startswith(f"{role}_") for name in defaults(role))
    for name, option in specs(role)["main"]["options"].items():
        if name.startswith(f"{role}_"):
            # No safe default: commented out in defaults/main.yml and required (house style 2).
            assert "default" in option or option.get("required"), name
        else:
            assert name in DRIVER_VARS and "default" not in option and not option.get("required"), name


@pytest.mark.parametrize("role", ROLES)
def test_every_option_has_a_type_and_a_description(role: str) -> None:
    for entry, spec in specs(role).items():
        for name, option in spec["options"].items():
            assert option["type"] in TYPES, (entry, name)
            assert isinstance(option.get("description"), str) and option["description"], (entry, name)
            if option["type"] == "list":
                assert "elements" in option, (entry, name)
            if "choices" in option and "default" in option:
                assert option["default"] in option["choices"], (entry, name)


@pytest.mark.parametrize("role", ROLES)
def test_every_entry_point_takes_the_main_options(role: str) -> None:
    entries = specs(role)
    assert set(entries) == set(ENTRY_POINTS[role])
    main = entries["main"]["options"]
    for entry, whole in ENTRY_POINTS[role].items():
        assert (REPO / "roles" / role / "tasks" / f"{entry}.yml").is_file(), entry
        options = entries[entry]["options"]
        if whole:
            assert options == main, entry
            continue
        for name, option in options.items():
            assert option["type"] == main[name]["type"], (entry, name)
            if "default" in option:
                assert option["default"] == main[name].get("default"), (entry, name)


@pytest.mark.parametrize("role", ROLES)
def test_readme_table_is_the_spec_row_by_row(role: str) -> None:
    header, rule, *rows = readme_table(role)
    assert (header, rule) == (HEADER, RULE)
    options = specs(role)["main"]["options"]
    names = [cells(row)[0] for row in rows]
    assert names == [f"`{name}`" for name in options], "one row per option, in the spec's order"
    for row, (name, option) in zip(rows, options.items(), strict=True):
        assert cells(row) == expected_row(name, option), name
