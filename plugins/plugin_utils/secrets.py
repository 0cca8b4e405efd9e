# Copyright: gpulab contributors
# Apache-2.0 (see the repository's license)
"""The one home of what a secret inside a URL looks like, and of masking it.

Used by the roles' filters (``miniconda_redact``, ``dl_env_redact``) and by the ``gpulab`` driver, which
masks the same patterns in everything it prints or writes (``src/gpulab/redact.py``). Two patterns:

- URL credentials: ``scheme://user:pass@host`` -> ``scheme://***@host`` (mirror, proxy, pip index URLs);
- a conda channel token: ``https://host/t/<token>/channel`` -> ``https://host/t/***/channel`` (only inside a
  URL, so a file path such as ``/tmp/t/x`` is left alone).
"""

from __future__ import annotations

import re
from typing import Any

MASK = "***"
URL_USERINFO = re.compile(r"(?P<scheme>\b[A-Za-z][A-Za-z0-9+.-]*://)(?P<userinfo>[^\s/@'\"<>]+)@")
CONDA_TOKEN = re.compile(r"(?P<pre>://[^\s'\"<>]*?/t/)(?P<token>[^\s/'\"<>]+)")


def redact_text(text: str) -> str:
    text = URL_USERINFO.sub(lambda m: f"{m.group('scheme')}{MASK}@", text)
    return CONDA_TOKEN.sub(lambda m: f"{m.group('pre')}{MASK}", text)


def redact(value: Any) -> Any:
    """``value`` with URL secrets masked in every string of it (lists, tuples and mappings walked);
    other values come back as they are."""
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, dict):
        return {k: redact(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [redact(v) for v in value]
    return value


def url_secrets(text: str) -> set[str]:
    """The secret parts of the URLs in ``text``: each ``user:pass``, the password alone, each token."""
    found = set()
    for match in URL_USERINFO.finditer(text):
        userinfo = match.group("userinfo")
        found.add(userinfo)
        if ":" in userinfo:
            found.add(userinfo.split(":", 1)[1])
    found.update(match.group("token") for match in CONDA_TOKEN.finditer(text))
    return found
