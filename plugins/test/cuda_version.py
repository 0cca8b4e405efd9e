# Copyright: gpulab contributors
# Apache-2.0 (see the repository's license)
"""Test `cuda_version`: is a value an "X.Y" version (a CUDA version, a compute capability)?

The form has one home, `is_xy_version` in `plugins/module_utils/nvidia_smi.py`, which the module and
the filters use too. What it takes and returns: `plugins/test/cuda_version.yml`
(`ansible-doc -t test gpulab.gpulab.cuda_version`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ansible.module_utils.common.text.converters import to_text
from ansible_collections.gpulab.gpulab.plugins.module_utils.nvidia_smi import is_xy_version


def cuda_version(value: Any) -> bool:
    """True when `value` reads as "X.Y" ("12.4", "8.9"); a non-string is read as text first, as the
    builtin `match` test does (an unquoted YAML 12.4 passes, 12 does not)."""
    return is_xy_version(to_text(value, errors="surrogate_or_strict"))


class TestModule:
    """The collection's Jinja tests."""

    def tests(self) -> dict[str, Callable[..., bool]]:
        return {"cuda_version": cuda_version}
