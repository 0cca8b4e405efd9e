"""The miniconda role's secret filters (the one home of what a secret in a URL looks like)."""

from __future__ import annotations

import pytest

from tests.conftest import plugin

SECRETS = plugin("filter.miniconda_secrets")


@pytest.mark.parametrize(
    ("raw", "redacted"),
    [
        ("http://user:pw@proxy.example.org:3128", "http://***@proxy.example.org:3128"),
        ("https://token@conda.example.org/pkgs/main", "https://***@conda.example.org/pkgs/main"),
        (
            "https://conda.anaconda.org/t/ab-12_3/private/linux-64",
            "https://conda.anaconda.org/t/***/private/linux-64",
        ),
        ("failed: GET https://u:p%40ss@mirror/x.sh (404)", "failed: GET https://***@mirror/x.sh (404)"),
        ("http://proxy.example.org:3128", "http://proxy.example.org:3128"),
        ("user@host is not a URL", "user@host is not a URL"),
    ],
)
def test_redact(raw: str, redacted: str) -> None:
    assert SECRETS.miniconda_redact(raw) == redacted
    assert SECRETS.miniconda_has_secret(raw) is (raw != redacted)


def test_redact_walks_dicts_and_lists_and_keeps_other_types() -> None:
    value = {"a": ["http://u:p@h", 3, None], "b": {"c": "https://x/t/tok/y"}, "d": True}
    assert SECRETS.miniconda_redact(value) == {
        "a": ["http://***@h", 3, None],
        "b": {"c": "https://x/t/***/y"},
        "d": True,
    }


def test_split_moves_only_secret_entries() -> None:
    condarc = {
        "channels": ["conda-forge"],
        "proxy_servers": {"http": "http://proxy:3128", "https": "http://u:p@proxy:3128"},
        "channel_alias": "https://conda.example.org/t/tok",
        "ssl_verify": True,
    }
    split = SECRETS.miniconda_split_secrets(condarc)
    assert split["public"] == {
        "channels": ["conda-forge"],
        "proxy_servers": {"http": "http://proxy:3128"},
        "ssl_verify": True,
    }
    assert split["secret"] == {
        "proxy_servers": {"https": "http://u:p@proxy:3128"},
        "channel_alias": "https://conda.example.org/t/tok",
    }
    assert not SECRETS.miniconda_has_secret(split["public"])
