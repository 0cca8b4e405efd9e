# Copyright: gpulab contributors
# Apache-2.0 (see the repository's license)
"""The collection's one error style for filters, as ``fail_json`` is for its modules.

A filter that cannot give its result raises ``AnsibleFilterError`` whose message names the input (the
variable or file) and says what to do; no filter returns an ``error`` key for the role to check. The pure
functions behind the filters raise ``FilterInputError`` (a ``ValueError``, so unit tests need no Ansible)
and every ``FilterModule`` hands its table to ``filter_table``, which turns it into ``AnsibleFilterError``.
The gpulab driver shows such a failure as the filter's own words (``src/gpulab/events.py``).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from ansible.errors import AnsibleFilterError


class FilterInputError(ValueError):
    """Input a filter cannot use; the message is what the user reads."""


def _raising(func: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(func)
    def inner(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except FilterInputError as exc:
            raise AnsibleFilterError(str(exc)) from None

    return inner


def filter_table(table: dict[str, Callable[..., Any]]) -> dict[str, Callable[..., Any]]:
    """A ``FilterModule.filters()`` table whose filters raise ``AnsibleFilterError`` for bad input."""
    return {name: _raising(func) for name, func in table.items()}
