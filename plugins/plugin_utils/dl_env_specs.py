# Copyright: gpulab contributors
# Apache-2.0 (see the repository's license)
"""Parsers that tell which package an environment.yml entry names (helper of the `dl_env` filters).

Not a filter itself: it lives in the collection's `plugins/plugin_utils/` (controller-side helpers) and
`plugins/filter/dl_env.py` loads it by path.

- `parse_conda(text)`: a conda MatchSpec, following conda's documented grammar
  (https://docs.conda.io/projects/conda/en/latest/user-guide/concepts/pkg-specs.html) and the cases of
  conda's own tests (conda/conda tests/models/test_match_spec.py, see tests/dl_env/test_spec_parsers.py).
  Written for gpulab; conda's code is not copied.
- `parse_pip(text)`: one line of a pip requirements list, PEP 508 through `packaging` plus what pip's
  requirements-file format adds (`-e`, `-r`, option lines, `git+...#egg=`, wheel files, local paths).

An entry whose package name cannot be known gets `key=None`: callers keep it verbatim and never merge it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from urllib.parse import unquote, urlsplit

from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import (
    InvalidSdistFilename,
    InvalidWheelFilename,
    canonicalize_name,
    parse_sdist_filename,
    parse_wheel_filename,
)


class SpecSyntaxError(ValueError):
    """The text is not a conda MatchSpec (conda would refuse it too)."""


# -- conda MatchSpec -------------------------------------------------------------------------------
# Platform subdirs conda knows (conda.base.constants.KNOWN_SUBDIRS): `chan/<subdir>::name`.
KNOWN_SUBDIRS = frozenset(
    {
        "noarch", "emscripten-wasm32", "wasi-wasm32", "freebsd-64", "linux-32", "linux-64",
        "linux-aarch64", "linux-armv6l", "linux-armv7l", "linux-ppc64", "linux-ppc64le",
        "linux-riscv64", "linux-s390x", "osx-64", "osx-arm64", "win-32", "win-64", "win-arm64", "zos-z",
    }
)  # fmt: skip
# Keys allowed inside `[...]` (MatchSpec.FIELD_NAMES, plus sha256 of newer condas).
BRACKET_KEYS = frozenset(
    {
        "channel", "subdir", "name", "version", "build", "build_number", "track_features", "features",
        "url", "md5", "sha256", "license", "license_family", "fn", "namespace",
    }
)  # fmt: skip
_PACKAGE_FILE = re.compile(r"\.(tar\.bz2|conda)$")
_NAME = re.compile(r"^[A-Za-z0-9_.+*\-]+@?$")  # `mkl@`: legacy track_features form
_NAME_AND_REST = re.compile(r"^(?P<name>[^ =<>!~]+)?(?P<rest>.*)$", re.S)
_BRACKET_PAIR = re.compile(
    r"\s*(?P<key>[A-Za-z_][A-Za-z0-9_-]*)\s*(?P<op>=|(?=[<>!~]))\s*"
    r"(?P<value>'[^']*'|\"[^\"]*\"|[^,\s\]]+)\s*,?"
)
_OPS = "<>!=~"


@dataclass(frozen=True)
class CondaSpec:
    """One conda dependency. `version`/`build` are as written (`version` keeps its operator, e.g.
    "=1.7", ">=1,<2", "1.7.*"); `form` is "space" for `name 1.2 build`, else "joined"."""

    text: str
    name: str
    prefix: str = ""  # `channel/subdir:namespace:` part as written (with its `::`)
    channel: str = ""
    subdir: str = ""
    namespace: str = ""
    version: str = ""
    build: str = ""
    form: str = "joined"
    brackets: tuple[tuple[str, str], ...] = ()  # (key, value as written, quotes included)
    url: str = ""

    @property
    def key(self) -> str | None:
        """What identifies the package when lists are merged (None: unknown, keep verbatim)."""
        return None if self.name in ("", "*") else self.name.lower()

    @property
    def match_version(self) -> str:
        """The version constraint as conda reads it: `=1.7` and `1.7*` mean `1.7*`, `==1.7` and a
        bare `1.7` (space form) mean exactly 1.7; a bracket `version=` wins."""
        bracket = _unquote(dict(self.brackets).get("version", ""))
        if bracket:
            return bracket
        v = self.version
        if v.startswith("==") and not any(c in v[2:] for c in ",|"):
            return v[2:]
        if v.startswith("=") and not v.startswith("==") and not any(c in v for c in ",|"):
            v = v[1:]
            # `name=1.8=build` pins 1.8 exactly; `name=1.8` means 1.8*
            return v if v.endswith("*") or self.build else f"{v}*"
        return v

    @property
    def match_build(self) -> str:
        return _unquote(dict(self.brackets).get("build", "")) or self.build

    @property
    def match_channel(self) -> str:
        return _unquote(dict(self.brackets).get("channel", "")) or self.channel

    def with_parts(self, name: str | None = None, version: str | None = None, build: str | None = None,
                   brackets: tuple[tuple[str, str], ...] | None = None) -> str:  # fmt: skip
        """The spec written again with some parts replaced, in the form the user wrote it."""
        name = self.name if name is None else name
        version = self.version if version is None else version
        build = self.build if build is None else build
        brackets = self.brackets if brackets is None else brackets
        if self.form == "space" and (version or build):
            body = " ".join(p for p in (name, version or ("*" if build else ""), build) if p)
        elif build:
            body = f"{name}{version or '=*'}={build}"
        else:
            body = f"{name}{version}"
        tail = "[" + ",".join(f"{k}={v}" for k, v in brackets) + "]" if brackets else ""
        return f"{self.prefix}{body}{tail}"


def _unquote(value: str) -> str:
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
        return value[1:-1]
    return value


def _parse_brackets(inner: str, whole: str) -> tuple[tuple[str, str], ...]:
    pairs: list[tuple[str, str]] = []
    pos = 0
    inner = inner.strip()
    while pos < len(inner):
        m = _BRACKET_PAIR.match(inner, pos)
        if not m or m.end() == pos:
            raise SpecSyntaxError(f"cannot read the [key=value] part of {whole!r}")
        key, value = m.group("key"), m.group("value")
        if key not in BRACKET_KEYS:
            raise SpecSyntaxError(f"unknown key {key!r} in the [key=value] part of {whole!r}")
        if not _unquote(value) and value[:1] not in "'\"":
            raise SpecSyntaxError(f"empty value for {key!r} in {whole!r}")
        pairs.append((key, value))
        pos = m.end()
    return tuple(pairs)


def _split_version_build(rest: str, whole: str) -> tuple[str, str, str]:
    """`rest` after the name -> (version, build, form)."""
    rest = rest.strip()
    if not rest or rest == "=":
        return "", "", "joined"  # conda reads `numpy=` as `numpy`
    parts = rest.split()
    if len(parts) > 1:
        # Operators written apart from their numbers ("foo >= 1.0", "foo >=1.0 , <2") stick to the next part.
        merged: list[str] = []
        for part in parts:
            if merged and (merged[-1][-1] in _OPS + ",|" or part[0] in ",|"):
                merged[-1] += part
            else:
                merged.append(part)
        if len(merged) > 2:
            raise SpecSyntaxError(f"{whole!r} has more than a version and a build after the name")
        if len(merged) == 2:
            return merged[0], merged[1], "space"
        parts = merged
    text = parts[0]
    if "=" in text[1:]:
        # A `=` that is no part of an operator (`==`, `>=`, `!=`, `~=`, `<=`) starts the build string.
        for i in range(1, len(text)):
            if text[i] == "=" and text[i - 1] not in _OPS + ",|" and text[i + 1 : i + 2] != "=":
                return text[:i], text[i + 1 :], "joined"
    return text, "", "joined" if text[0] in _OPS else "space"


def _parse_package_file(text: str) -> CondaSpec:
    """A URL or path to a .conda/.tar.bz2 file: name, version and build come from the file name
    when the file sits in a platform subdir (as conda requires), else the name is unknown."""
    path = urlsplit(text).path if "://" in text else text
    parts = unquote(path).rstrip("/").split("/")
    stem = _PACKAGE_FILE.sub("", parts[-1])
    pieces = stem.rsplit("-", 2)
    if len(parts) >= 2 and parts[-2] in KNOWN_SUBDIRS and len(pieces) == 3:
        channel = parts[-3] if len(parts) >= 3 else ""
        return CondaSpec(text=text, name=pieces[0], channel=channel, subdir=parts[-2],
                         version=pieces[1], build=pieces[2], url=text)  # fmt: skip
    return CondaSpec(text=text, name="", url=text)


def parse_conda(spec: str) -> CondaSpec:
    """Parse a conda MatchSpec string; raise SpecSyntaxError when conda would refuse it."""
    text = spec.strip()
    body = text.split("#", 1)[0].strip() if "#" in text else text
    if not body:
        raise SpecSyntaxError(f"{spec!r} is empty")
    if _PACKAGE_FILE.search(body):
        return _parse_package_file(body)
    # (target=..., optional): conda reads and ignores it here.
    if body.endswith(")") and "(" in body:
        body = body[: body.rindex("(")].rstrip()
    brackets: tuple[tuple[str, str], ...] = ()
    if "[" in body:
        if not body.endswith("]"):
            raise SpecSyntaxError(f"{spec!r} opens a '[' that is not closed at the end")
        start = body.index("[")
        brackets = _parse_brackets(body[start + 1 : -1], spec)
        body = body[:start].rstrip()
    elif "]" in body:
        raise SpecSyntaxError(f"{spec!r} has a ']' without '['")
    prefix = channel = subdir = namespace = ""
    if ":" in body:
        pieces = body.rsplit(":", 2)
        if len(pieces) == 3:
            channel, namespace, body = pieces
        else:
            namespace, body = pieces
        prefix = f"{channel}:{namespace}:" if len(pieces) == 3 else f"{namespace}:"
        if "/" in channel and channel.rsplit("/", 1)[1] in KNOWN_SUBDIRS:
            channel, subdir = channel.rsplit("/", 1)
    m = _NAME_AND_REST.match(body)
    name = (m.group("name") or "") if m else ""
    if not name or not _NAME.match(name):
        raise SpecSyntaxError(f"{spec!r} does not start with a package name")
    rest = m.group("rest") if m else ""
    version, build, form = _split_version_build(rest, spec)
    if rest[:1].isspace() and version:
        form = "space"  # `name >=1,<2` is written back with its space
    return CondaSpec(text=text, name=name, prefix=prefix, channel=channel, subdir=subdir,
                     namespace=namespace, version=version, build=build, form=form,
                     brackets=brackets)  # fmt: skip


# -- pip requirement lines -------------------------------------------------------------------------
# Lines that name another file (kept verbatim, resolved relative to the env file on the host).
PIP_FILE_OPTIONS = ("-r", "--requirement", "-c", "--constraint")
PIP_EDITABLE = ("-e", "--editable")
_EGG = re.compile(r"[#&]egg=(?P<name>[A-Za-z0-9][A-Za-z0-9._-]*)")
_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")
# Options pip allows after a requirement on the same line.
_PER_REQ_OPTION = re.compile(r"\s+--(hash|config-settings|global-option|install-option)\b.*$")


@dataclass(frozen=True)
class PipEntry:
    """One pip line. kind: requirement | url | path | editable | file | option."""

    text: str
    kind: str
    name: str = ""
    requirement: Requirement | None = field(default=None, compare=False)
    target: str = ""  # the URL / path / file the line points at

    @property
    def key(self) -> str | None:
        return canonicalize_name(self.name) if self.name else None

    @property
    def local(self) -> bool:
        """A path on the host, which conda's pip step resolves relative to the env file."""
        target = self.target
        if self.kind == "file":
            return True
        return bool(target) and (target.startswith("file:") or not _URL.match(target))


def _name_from_target(target: str) -> str:
    """The project name a URL or path shows: `#egg=`, else a wheel/sdist file name, else ''."""
    egg = _EGG.search(target)
    if egg:
        return egg.group("name")
    path = urlsplit(target).path if _URL.match(target) else target
    filename = unquote(path.rstrip("/").rsplit("/", 1)[-1])
    try:
        if filename.endswith(".whl"):
            return str(parse_wheel_filename(filename)[0])
        if filename.endswith((".tar.gz", ".zip")):
            return str(parse_sdist_filename(filename)[0])
    except (InvalidWheelFilename, InvalidSdistFilename):
        return ""
    return ""


def _looks_like_path(text: str) -> bool:
    return (
        text.startswith((".", "/", "~"))
        or "/" in text
        or "\\" in text
        or text.endswith((".whl", ".tar.gz", ".zip"))
    )


def parse_pip(line: str) -> PipEntry:
    """Parse one entry of a `pip:` list. Never raises: what is not understood is kept verbatim."""
    text = line.strip()
    body = re.sub(r"(^|\s)#.*$", "", text).strip()  # pip strips ` # comments`, not `#egg=`
    if body.startswith("-"):
        opt, _, value = body.partition(" ")
        if "=" in opt and opt.startswith("--"):
            opt, _, value = opt.partition("=")
        value = value.strip()
        if opt in PIP_EDITABLE:
            return PipEntry(text=text, kind="editable", name=_name_from_target(value), target=value)
        if opt in PIP_FILE_OPTIONS:
            return PipEntry(text=text, kind="file", target=value)
        return PipEntry(text=text, kind="option", target=value)
    body = _PER_REQ_OPTION.sub("", body)
    if _URL.match(body):
        return PipEntry(text=text, kind="url", name=_name_from_target(body), target=body)
    try:
        req = Requirement(body)
    except InvalidRequirement:
        if _looks_like_path(body):
            return PipEntry(text=text, kind="path", name=_name_from_target(body), target=body)
        return PipEntry(text=text, kind="unknown")
    return PipEntry(text=text, kind="requirement", name=req.name, requirement=req, target=req.url or "")
