"""The Jinja test gpulab.gpulab.cuda_version: the "X.Y" form of plugins/module_utils/nvidia_smi.py, called
directly and by FQCN in Ansible's own Jinja environment (`is`, `select`, `reject`)."""

from __future__ import annotations

from typing import Any

import pytest
from ansible.parsing.dataloader import DataLoader  # type: ignore[import-untyped]
from ansible.template import Templar, trust_as_template  # type: ignore[import-untyped]

from tests.conftest import plugin

from ._load import gpu_facts

cuda_version_test = plugin("test.cuda_version")

X_Y = ["12.4", "13.0", "8.9", "11.8", "0.0", "12.10", "100.200"]
NOT_X_Y = ["", "12", "12.", ".4", "12.4.1", "v12.4", "12.4 ", " 12.4", "12,4", "12.x", "cu124", "١٢.٤"]


@pytest.mark.parametrize("value", X_Y)
def test_x_y_versions_pass(value: str) -> None:
    assert cuda_version_test.cuda_version(value) is True
    assert gpu_facts.is_xy_version(value) is True


@pytest.mark.parametrize("value", NOT_X_Y)
def test_anything_else_fails(value: str) -> None:
    assert cuda_version_test.cuda_version(value) is False
    assert gpu_facts.is_xy_version(value) is False


@pytest.mark.parametrize(
    ("value", "expected"), [(12.4, True), (8.9, True), (12, False), (None, False), (["12.4"], False)]
)
def test_a_non_string_is_read_as_text_as_the_builtin_match_test_does(value: Any, expected: bool) -> None:
    assert cuda_version_test.cuda_version(value) is expected


def test_the_plugin_registers_the_test_under_its_documented_name() -> None:
    assert cuda_version_test.TestModule().tests() == {"cuda_version": cuda_version_test.cuda_version}


def _render(template: str, **variables: Any) -> Any:
    templar = Templar(loader=DataLoader(), variables=variables)
    return templar.template(trust_as_template(template))


def test_by_fqcn_in_ansible_jinja() -> None:
    assert _render("{{ pin is gpulab.gpulab.cuda_version }}", pin="12.4") is True
    assert _render("{{ pin is gpulab.gpulab.cuda_version }}", pin="12") is False
    assert _render("{{ pin is not gpulab.gpulab.cuda_version }}", pin="v12.4") is True
    candidates = ["13.0", "12", "12.9", "12.4.1"]
    assert _render("{{ c | select('gpulab.gpulab.cuda_version') | list }}", c=candidates) == ["13.0", "12.9"]
    assert _render("{{ c | reject('gpulab.gpulab.cuda_version') | list }}", c=candidates) == ["12", "12.4.1"]
