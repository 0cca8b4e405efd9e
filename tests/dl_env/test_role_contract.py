"""defaults/main.yml, meta/argument_specs.yml and the README's variable table agree key by key."""

from __future__ import annotations

import json
import re

import pytest
import yaml

from ._load import ROLE

DEFAULTS = yaml.safe_load((ROLE / "defaults" / "main.yml").read_text(encoding="utf-8"))
SPECS = yaml.safe_load((ROLE / "meta" / "argument_specs.yml").read_text(encoding="utf-8"))["argument_specs"]


@pytest.mark.parametrize("entry", ["main", "render", "check"])
def test_every_default_is_in_the_spec_with_the_same_default(entry: str) -> None:
    options = SPECS[entry]["options"]
    assert set(options) == set(DEFAULTS)
    for key, value in DEFAULTS.items():
        assert options[key]["default"] == value, key
        assert key.startswith("dl_env_")


def test_readme_table_matches_the_spec() -> None:
    readme = (ROLE / "README.md").read_text(encoding="utf-8")
    rows = re.findall(r"^\| `(dl_env_[a-z_]+)` \| ([a-z\[\]]+) \| (.*?) \| (yes|no) \|", readme, re.M)
    assert [r[0] for r in rows] == list(SPECS["main"]["options"])
    for name, typ, default, required in rows:
        opt = SPECS["main"]["options"][name]
        assert typ == opt["type"] + (f"[{opt['elements']}]" if "elements" in opt else ""), name
        assert required == ("yes" if opt.get("required") else "no"), name
        shown = default.strip("`").replace("\\|", "|")
        expected = opt["default"] if isinstance(opt["default"], str) else json.dumps(opt["default"])
        assert shown in (expected, f'"{expected}"'), name


def test_template_and_role_use_no_timestamps() -> None:
    for path in [ROLE.parents[1] / "templates" / "environment.yml.j2", *ROLE.glob("templates/*.j2")]:
        text = path.read_text(encoding="utf-8")
        assert text.startswith("{{ ansible_managed | comment }}"), path
        assert "date_time" not in text and "now(" not in text and "strftime" not in text, path
