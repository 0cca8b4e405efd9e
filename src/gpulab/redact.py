"""Keep secret values out of everything the driver writes or prints.

Three rules, applied to text and to structured data alike:

- URL credentials: ``scheme://user:pass@host`` becomes ``scheme://***@host`` (mirror, proxy and pip index
  URLs, ``miniconda_proxy_servers``, ``miniconda_proxy_env``), and a conda channel token
  ``.../t/<token>/...`` becomes ``.../t/***/...``: the collection's ``plugins/plugin_utils/secrets.py``,
  which the roles' redact filters use too.
- Secret names: the value of a key whose name says it is a secret (:data:`SECRET_NAME`) is replaced as a
  whole, wherever such a key appears in data (events, facts, set_stats).
- Known values: every string found under a secret name in the run's inputs (``-e`` values, inventory and
  group/host vars readable without a vault password) is replaced wherever it appears in text, so a
  value that travels into a message, a diff or a rendered file is caught as well.
"""

from __future__ import annotations

import contextlib
import importlib.util
import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from gpulab import collection, inventory_vars
from gpulab.extravars import VAULTED, load_vars_file


def _load_url_secrets() -> dict[str, Any]:
    """The collection's plugins/plugin_utils/secrets.py, the one home of the URL patterns, shared with the
    roles' redact filters. plugins/ is no importable package, so it is loaded from its file, by an explicit
    file loader: runpy.run_path would consult sys.path_hooks, where Ansible's collection finder may sit."""
    path = collection.root() / "plugins" / "plugin_utils" / "secrets.py"
    spec = importlib.util.spec_from_file_location("gpulab_url_secrets", path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return vars(module)


_URLS = _load_url_secrets()
MASK: str = _URLS["MASK"]
# Names whose whole value is a secret (matched anywhere in the name, case-insensitive).
SECRET_NAME = re.compile(
    r"pass(word|wd|phrase)?($|_)|token|secret|credential|api_?key|private_key|(^|_)auth($|_)",
    re.IGNORECASE,
)
# Names whose values are URLs (or maps/lists of them): only credentials inside them are secret; the rest
# (host, path, channel name) stays readable. miniconda_proxy_servers/_env, dl_env_pip_index_url, mirrors...
URL_NAME = re.compile(r"proxy|_url$|_urls$|index|mirror|channel", re.IGNORECASE)
_MIN_VALUE = 4  # shorter values would mask common words


def is_secret_name(name: str) -> bool:
    """The whole value of a variable or key with this name is masked."""
    return bool(SECRET_NAME.search(name))


def holds_secrets(name: str) -> bool:
    """A variable with this name may carry secrets (whole, or as URL credentials)."""
    return is_secret_name(name) or bool(URL_NAME.search(name))


def _strings(value: Any) -> Iterable[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, Mapping):
        for item in value.values():
            yield from _strings(item)
    elif isinstance(value, list | tuple):
        for item in value:
            yield from _strings(item)


def secret_values(variables: Mapping[str, Any]) -> set[str]:
    """The strings to mask from a variables mapping: whole values of secret names, URL credentials of URLs."""
    found: set[str] = set()
    for name, value in variables.items():
        if not isinstance(name, str) or not holds_secrets(name):
            continue
        for text in _strings(value):
            if not is_secret_name(name):
                found.update(_URLS["url_secrets"](text))
            elif "{{" not in text:  # a template is not the value itself
                found.add(text)
    return {value for value in found if len(value) >= _MIN_VALUE and value != VAULTED}


class Redactor:
    """Masks secrets in text and in JSON-like data."""

    def __init__(self, values: Iterable[str] = ()) -> None:
        self._values = sorted({v for v in values if len(v) >= _MIN_VALUE}, key=len, reverse=True)
        self._pattern = re.compile("|".join(re.escape(v) for v in self._values)) if self._values else None

    def add(self, values: Iterable[str]) -> Redactor:
        return Redactor([*self._values, *values])

    def text(self, text: str) -> str:
        text = _URLS["redact_text"](text)
        if self._pattern is not None:
            text = self._pattern.sub(MASK, text)
        return text

    def data(self, value: Any, name: str = "") -> Any:
        """A copy of ``value`` with secrets masked; values under secret names are masked whole."""
        if name and is_secret_name(name) and isinstance(value, str | Mapping | list | tuple) and value:
            return MASK
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, Mapping):
            return {k: self.data(v, str(k)) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [self.data(v, name) for v in value]
        return value

    def event(self, event: dict[str, Any]) -> None:
        """Mask an ansible-runner event in place (the runner writes the same dict to ``job_events/``)."""
        for key in list(event):
            event[key] = self.data(event[key], key)

    def file(self, path: Path) -> bool:
        """Rewrite a text file with secrets masked; True when it changed."""
        try:
            original = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            return False
        masked = self.text(original)
        if masked == original:
            return False
        path.write_text(masked, encoding="utf-8")
        return True

    def tree(self, root: Path) -> list[Path]:
        """Mask every text file under ``root`` (the run's artifacts); return the files that changed."""
        changed = []
        for path in sorted(root.rglob("*")):
            if path.is_file() and not path.is_symlink() and self.file(path):
                changed.append(path)
        return changed


def inventory_secret_values(inventories: Sequence[Path], limit: str | None = None) -> set[str]:
    """Secret values set in the inventories: inline host/group vars and the group_vars/host_vars files.

    Vaulted values are skipped (gpulab does not decrypt; tasks using them must be no_log, the roles'
    rule). The group_vars/host_vars files are also read one by one, so one vaulted file does not hide the
    plain ones next to it.
    """
    found = _variable_manager_values(inventories, limit)
    for inventory in inventories:
        base = inventory if inventory.is_dir() else inventory.parent
        for kind in ("group_vars", "host_vars"):
            for path in sorted((base / kind).rglob("*")) if (base / kind).is_dir() else []:
                if path.is_file() and path.suffix in _VARS_SUFFIXES:
                    found |= _file_values(path)
    return found


_VARS_SUFFIXES = ("", ".yml", ".yaml", ".json")


def _file_values(path: Path) -> set[str]:
    try:
        return secret_values(load_vars_file(path).data)
    except Exception:  # a file ansible would reject: the inventory check reports it
        return set()


def _variable_manager_values(inventories: Sequence[Path], limit: str | None) -> set[str]:
    found: set[str] = set()
    try:
        hosts = inventory_vars.host_vars(inventories, limit)
    except Exception:  # the inventory itself is checked (with a clear message) by runner.inventory_hosts
        return found
    for host_vars in hosts:
        for name, value in host_vars.items():
            if isinstance(name, str) and holds_secrets(name):
                with contextlib.suppress(Exception):  # an encrypted value that cannot be read here
                    found |= secret_values({name: _plain(value)})
    return found


def _plain(value: Any) -> Any:
    """Ansible's tagged/lazy containers as plain Python; vaulted strings raise and are skipped."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, str):
        if type(value).__name__ in ("EncryptedString", "AnsibleVaultEncryptedUnicode"):
            return ""
        return str(value)
    return value
