"""dl_env's files beyond the shared contract (tests/test_role_contract.py): its templates and the repository's
default spec template begin with ansible_managed and hold no timestamp (house style 14)."""

from __future__ import annotations

from ._load import ROLE


def test_template_and_role_use_no_timestamps() -> None:
    for path in [ROLE.parents[1] / "templates" / "environment.yml.j2", *ROLE.glob("templates/*.j2")]:
        text = path.read_text(encoding="utf-8")
        assert text.startswith("{{ ansible_managed | comment }}"), path
        assert "date_time" not in text and "now(" not in text and "strftime" not in text, path
