# Copyright: gpulab contributors
# Apache-2.0 (see the repository's license)
"""Filters of the miniconda role for secret-bearing values: the one home of what a secret looks like in a URL.

What each filter takes and returns: ``plugins/filter/<filter name>.yml``
(``ansible-doc -t filter gpulab.gpulab.<filter name>``).
"""

from __future__ import annotations

import re
from typing import Any

_USERINFO = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*://)(?P<info>[^/@\s]+)@")
_TOKEN = re.compile(r"(?P<pre>/t/)(?P<token>[^/\s]+)")


def miniconda_redact(value: Any) -> Any:
    if isinstance(value, str):
        return _TOKEN.sub(r"\g<pre>***", _USERINFO.sub(r"\g<scheme>***@", value))
    if isinstance(value, dict):
        return {k: miniconda_redact(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [miniconda_redact(v) for v in value]
    return value


def miniconda_has_secret(value: Any) -> bool:
    return miniconda_redact(value) != value


def miniconda_split_secrets(condarc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    public: dict[str, Any] = {}
    secret: dict[str, Any] = {}
    for key, value in condarc.items():
        if isinstance(value, dict):
            clean = {k: v for k, v in value.items() if not miniconda_has_secret(v)}
            hidden = {k: v for k, v in value.items() if miniconda_has_secret(v)}
            if clean or not hidden:
                public[key] = clean
            if hidden:
                secret[key] = hidden
        elif miniconda_has_secret(value):
            secret[key] = value
        else:
            public[key] = value
    return {"public": public, "secret": secret}


class FilterModule:
    def filters(self) -> dict[str, Any]:
        return {
            "miniconda_redact": miniconda_redact,
            "miniconda_has_secret": miniconda_has_secret,
            "miniconda_split_secrets": miniconda_split_secrets,
        }
