# Copyright: gpulab contributors
# Apache-2.0 (see the repository's license)
"""Filters of the miniconda role for secret-bearing values; what a secret in a URL looks like is
plugins/plugin_utils/secrets.py.

What each filter takes and returns: ``plugins/filter/<filter name>.yml``
(``ansible-doc -t filter gpulab.gpulab.<filter name>``).
"""

from __future__ import annotations

from typing import Any

from ansible_collections.gpulab.gpulab.plugins.plugin_utils import secrets as _SECRETS
from ansible_collections.gpulab.gpulab.plugins.plugin_utils.filter_errors import filter_table

miniconda_redact = _SECRETS.redact


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
        return filter_table(
            {
                "miniconda_redact": miniconda_redact,
                "miniconda_has_secret": miniconda_has_secret,
                "miniconda_split_secrets": miniconda_split_secrets,
            }
        )
