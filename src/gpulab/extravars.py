"""``-e/--extra-vars``: parse and check them here, hand them to ansible-playbook in files, never on its
command line (where ``ps`` and the runner's ``command`` artifact would show the values).

Each ``-e`` keeps ansible-playbook's meaning and order (later wins): ``KEY=VALUE``, a YAML/JSON mapping or
``@FILE``. Inline values are written to 0600 files in the run's ``env/`` directory and passed as
``-e @file``; a user's ``@FILE`` is passed through by path, so vaulted files (a whole-file
``$ANSIBLE_VAULT`` or ``!vault`` values) are decrypted by ansible with the vault options, not by gpulab.
gpulab's own variables go last, in ansible-runner's ``env/extravars`` (the runner adds it after the
command line, so they win). :func:`remove_files` deletes the files when the run ends.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from gpulab.errors import ParseError, UsageError

_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
VAULT_HEADER = "$ANSIBLE_VAULT;"
VAULTED = "<vaulted>"  # stands for a !vault value gpulab does not decrypt
RUNNER_FILE = "extravars"  # ansible-runner's own env/extravars
_CHUNK = "extravars-{:02d}.json"


class _VarsLoader(yaml.SafeLoader):  # type: ignore[misc]
    """SafeLoader that accepts ansible's ``!vault`` and ``!unsafe`` tags (values it cannot know)."""


def _opaque(loader: yaml.SafeLoader, node: yaml.Node) -> str:
    return VAULTED if node.tag == "!vault" else str(loader.construct_scalar(node))


_VarsLoader.add_constructor("!vault", _opaque)
_VarsLoader.add_constructor("!unsafe", _opaque)


@dataclass(frozen=True)
class VarsFile:
    path: Path
    vaulted: bool  # the whole file is vault-encrypted: its keys are unknown to gpulab
    data: Mapping[str, Any] = field(default_factory=dict)  # plain values ("<vaulted>" for !vault ones)


@dataclass(frozen=True)
class ExtraVars:
    """The ``-e`` values in order: dicts (inline) and files."""

    items: tuple[Mapping[str, Any] | VarsFile, ...] = ()

    def known(self) -> dict[str, Any]:
        """Merged values gpulab can read (not vaulted files), later wins."""
        merged: dict[str, Any] = {}
        for item in self.items:
            merged.update(item.data if isinstance(item, VarsFile) else item)
        return merged

    def keys(self) -> list[str]:
        return sorted(self.known())

    def files(self) -> list[str]:
        """Every ``@FILE`` the user passed, by path."""
        return [str(i.path) for i in self.items if isinstance(i, VarsFile)]

    def vaulted_files(self) -> list[str]:
        return [str(i.path) for i in self.items if isinstance(i, VarsFile) and i.vaulted]


def load_vars_file(path: Path) -> VarsFile:
    """A variables file as ansible reads it, without decrypting: a vaulted file comes back with no data."""
    if not path.is_file():
        raise UsageError(f"-e @{path}: no such file")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ParseError(f"-e @{path}: cannot read: {exc}") from exc
    if text.lstrip().startswith(VAULT_HEADER):
        return VarsFile(path, vaulted=True)
    try:
        data = yaml.load(text, Loader=_VarsLoader)  # a SafeLoader subclass
    except yaml.YAMLError as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ParseError(f"-e @{path}: not valid YAML/JSON: {first}") from exc
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ParseError(f"-e @{path}: must hold a mapping of variables, not {type(data).__name__}")
    return VarsFile(path, vaulted=False, data=data)


def _key_values(raw: str, value: str) -> dict[str, Any]:
    """``KEY=VALUE [KEY=VALUE...]`` with ansible's own parser (quoting as in ansible-playbook)."""
    from ansible.parsing.splitter import parse_kv  # type: ignore[import-untyped]

    try:
        pairs = parse_kv(value)
    except Exception as exc:  # unbalanced quotes and the like
        raise UsageError(f"-e {raw!r}: {exc}") from exc
    if not pairs or "_raw_params" in pairs:
        raise UsageError(f"-e {raw!r}: expected KEY=VALUE, @FILE or a YAML/JSON mapping")
    for key in pairs:
        if not _KEY.match(key):
            raise UsageError(f"-e {raw!r}: {key!r} is not a valid variable name")
    return {str(key): str(val) for key, val in pairs.items()}


def plan(values: Sequence[str], cwd: Path | None = None) -> ExtraVars:
    """Check every ``-e`` value and keep them in order; errors name the value."""
    items: list[Mapping[str, Any] | VarsFile] = []
    for raw in values:
        value = raw.strip()
        if value.startswith("@"):
            path = Path(value[1:]).expanduser()
            if cwd is not None and not path.is_absolute():
                path = cwd / path
            items.append(load_vars_file(path.absolute()))
            continue
        if value.startswith(("{", "[")):
            try:
                data = yaml.safe_load(value)
            except yaml.YAMLError as exc:
                raise ParseError(f"-e {raw!r}: not valid YAML/JSON") from exc
            if not isinstance(data, dict):
                raise UsageError(f"-e {raw!r}: expected a mapping")
        elif not value:
            continue  # ansible-playbook skips an empty -e too
        else:
            data = _key_values(raw, value)
        if items and isinstance(items[-1], dict):
            items[-1] = {**items[-1], **data}  # consecutive inline values share one file
        else:
            items.append(dict(data))
    extra = ExtraVars(tuple(items))
    for key in extra.known():
        if not isinstance(key, str) or not _KEY.match(key):
            raise UsageError(f"-e: {key!r} is not a valid variable name")
    return extra


def _write_private(path: Path, data: Mapping[str, Any]) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        json.dump(dict(data), handle, default=str)
    os.chmod(path, 0o600)  # an existing file keeps its mode with O_CREAT


def write(extra: ExtraVars, internal: Mapping[str, Any], private_data_dir: Path) -> list[str]:
    """Write the files into ``<private_data_dir>/env`` (0700) and return the ``-e`` arguments, in order."""
    env = private_data_dir / "env"
    env.mkdir(mode=0o700, parents=True, exist_ok=True)
    args: list[str] = []
    for index, item in enumerate(extra.items):
        if isinstance(item, VarsFile):
            args.append(f"--extra-vars=@{item.path}")
            continue
        chunk = env / _CHUNK.format(index)
        _write_private(chunk, item)
        args.append(f"--extra-vars=@{chunk}")
    if internal:
        _write_private(env / RUNNER_FILE, internal)
    return args


def remove_files(private_data_dir: Path) -> None:
    """Delete the extravars files gpulab wrote (the values may be secrets)."""
    env = private_data_dir / "env"
    for path in [env / RUNNER_FILE, *env.glob("extravars-*.json")]:
        path.unlink(missing_ok=True)
