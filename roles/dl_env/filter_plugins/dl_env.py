# Copyright: gpulab contributors
# Apache-2.0 (see the repository's license)
"""Filters of the `dl_env` role: check, rewrite, merge and digest conda environment specs.

Pure Python (PyYAML only, which Ansible itself needs) so the unit tests import the functions directly.
The `FilterModule` at the end only wraps them and turns `SpecError` into `AnsibleFilterError`.

Filters:
- `dl_env_spec_check(text, source)`: parse an environment.yml text, return it as data, or fail with a
  message naming `source` when it is not a conda environment spec (conda-cli-facts.md §3).
- `dl_env_spec_rewrite(text, source, cuda_version)`: a bring-your-own environment.yml made fit for
  this host. Everything is kept; only what pins CUDA is replaced (see `rewrite_conda_spec`).
- `dl_env_merge_specs(layers)`: merge package lists (all, group, host): same name -> the later layer
  wins at the earlier position; `!name` removes the package.
- `dl_env_spec_digest(text)`: sha256 of the spec's data (comments and key layout do not count).
"""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any

import yaml

VALID_KEYS = ("name", "prefix", "channels", "dependencies", "variables")

# Packages whose only job is to pin the CUDA line (conda-forge, pytorch/nvidia channels, pre-1.13 pytorch).
CUDA_PIN_NAMES = ("cuda-version", "pytorch-cuda", "cudatoolkit")
# The pytorch channel's selector for CPU builds (`conda install pytorch cpuonly -c pytorch`).
CPU_SELECTOR = "cpuonly"
# conda-forge selector metapackages: pytorch-gpu (CUDA builds) / pytorch-cpu (CPU builds).
GPU_CPU_SELECTORS = {"pytorch-gpu": "pytorch-cpu"}

_SPEC_RE = re.compile(
    r"^(?P<channel>[^\s:\[]+::)?(?P<name>[A-Za-z0-9_.\-]+)(?P<rest>.*)$",
)
_CUDA_IN_BUILD = re.compile(r"cuda(?P<ver>\d+(?:\.\d+)?)")
_PIP_CUDA_INDEX = re.compile(r"(?P<base>https?://download\.pytorch\.org/whl)/(?:cu\d+|cpu)(?=/|$)")
_PIP_CUDA_LOCAL = re.compile(r"\+(?:cu\d+|cpu)\b")
_CUDA_XY = re.compile(r"^\d+\.\d+$")


class SpecError(ValueError):
    """The input is not a usable conda environment spec (the message names the file)."""


# -- reading ---------------------------------------------------------------------------------------
def check_spec(text: str, source: str = "<spec>") -> dict[str, Any]:
    """Parse `text` as an environment.yml and check conda's schema; return the data."""
    where = f"{source} is not a conda environment spec"
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise SpecError(f"{where}: it is not valid YAML ({exc})".replace("\n", " ")) from None
    if not isinstance(data, dict):
        raise SpecError(
            f"{where}: the top level must be a mapping with a 'dependencies' list, "
            f"found {type(data).__name__}"
        )
    if "dependencies" not in data:
        keys = ", ".join(str(k) for k in data) or "none"
        raise SpecError(f"{where}: the required key 'dependencies' is missing (top-level keys: {keys})")
    deps = data["dependencies"]
    if not isinstance(deps, list):
        raise SpecError(f"{where}: 'dependencies' must be a list, found {type(deps).__name__}")
    for dep in deps:
        if isinstance(dep, dict):
            if set(dep) != {"pip"} or not isinstance(dep["pip"], list):
                raise SpecError(
                    f"{where}: a mapping in 'dependencies' must be 'pip:' with a list, found {dep!r}"
                )
            if not all(isinstance(p, str) for p in dep["pip"]):
                raise SpecError(f"{where}: every 'pip:' entry must be a string, found {dep['pip']!r}")
        elif not isinstance(dep, str):
            raise SpecError(
                f'{where}: dependency {dep!r} is not a string (quote versions like "python=3.10")'
            )
        elif not _SPEC_RE.match(dep.strip()):
            raise SpecError(f"{where}: dependency {dep!r} is not a package spec")
    channels = data.get("channels")
    if channels is not None and (
        not isinstance(channels, list) or not all(isinstance(c, str) for c in channels)
    ):
        raise SpecError(f"{where}: 'channels' must be a list of strings")
    for key in ("name", "prefix"):
        if data.get(key) is not None and not isinstance(data[key], str):
            raise SpecError(f"{where}: '{key}' must be a string")
    if data.get("variables") is not None and not isinstance(data["variables"], dict):
        raise SpecError(f"{where}: 'variables' must be a mapping")
    return data


def spec_name(spec: str) -> str:
    """Package name of a conda MatchSpec or pip requirement ('' for pip option lines like `-r x`)."""
    text = spec.strip()
    if text.startswith("-"):
        return ""
    m = _SPEC_RE.match(text.lstrip("!"))
    return m.group("name").lower().replace("_", "-") if m else text.lower()


def split_spec(spec: str) -> tuple[str, str, str, str]:
    """'conda-forge::pytorch=2.1=*cuda118*' -> ('conda-forge::', 'pytorch', '=2.1', '*cuda118*').

    Handles `name=ver=build`, `name ver build`, `name==ver`, `name>=1,<2` and `name[build=...]`
    (the bracket part is kept in the version slot and rewritten as text).
    """
    text = spec.strip()
    m = _SPEC_RE.match(text)
    if not m:
        raise SpecError(f"not a package spec: {spec!r}")
    channel, name, rest = m.group("channel") or "", m.group("name"), m.group("rest")
    version, build = rest, ""
    stripped = rest.strip()
    if stripped.startswith("=") and not stripped.startswith("=="):
        parts = stripped[1:].split("=", 1)
        version = "=" + parts[0]
        build = parts[1] if len(parts) > 1 else ""
    elif stripped and stripped[0] not in "=<>!~[" and " " in stripped:
        version, build = stripped.split(None, 1)
        version = " " + version
    return channel, name, version, build


def join_spec(channel: str, name: str, version: str, build: str) -> str:
    if not build:
        return f"{channel}{name}{version}"
    if version.startswith(" "):
        return f"{channel}{name}{version} {build}"
    return f"{channel}{name}{version or '=*'}={build}"


# -- rewriting -------------------------------------------------------------------------------------
def _cuda_xy(cuda_version: str) -> str:
    text = str(cuda_version or "").strip()
    if text and not _CUDA_XY.match(text):
        raise SpecError(
            f"the host's CUDA version must look like X.Y or be empty (CPU build), got {cuda_version!r}"
        )
    return text


def _rewrite_build(build: str, cuda: str) -> str:
    """Make one build string ask for this host's CUDA line ('' cuda = CPU build)."""
    if "cuda" not in build.lower() and "cpu" not in build.lower():
        return build
    if not cuda:
        return "*cpu*" if "cuda" in build.lower() else build
    nodot = cuda.replace(".", "")
    if "cpu" in build.lower() and "cuda" not in build.lower():
        return f"*cuda{nodot}*"
    m = _CUDA_IN_BUILD.search(build)
    if not m:  # `cuda*`: any CUDA build; the cuda-version pin (if any) decides the line
        return build
    ver = cuda if "." in m.group("ver") else nodot
    if "*" in build:
        return build[: m.start("ver")] + ver + build[m.end("ver") :]
    # An exact build string (with its hash) cannot exist for another CUDA line: keep only the CUDA part.
    return f"*cuda{ver}*"


def rewrite_conda_spec(spec: str, cuda: str) -> list[str]:
    """One conda dependency -> the specs this host needs instead (usually one, [] to drop it).

    - `cuda-version=`, `pytorch-cuda=`, `cudatoolkit=`: the version becomes the host's CUDA X.Y;
      on a CPU host they are dropped (and `pytorch-cuda` becomes the pytorch channel's `cpuonly`).
    - `cpuonly` on a GPU host becomes `pytorch-cuda=X.Y` (pytorch channel style).
    - `pytorch-gpu` <-> `pytorch-cpu` (conda-forge selectors) follow the host.
    - build strings with `cuda<ver>` get the host's version; exact CUDA builds become `*cuda<ver>*`;
      on a CPU host CUDA builds become `*cpu*`, and on a GPU host `*cpu*` builds become `*cuda<ver>*`.
    """
    channel, name, version, build = split_spec(spec)
    low = name.lower()
    if low in CUDA_PIN_NAMES:
        if not cuda:
            return [f"{channel}{CPU_SELECTOR}"] if low == "pytorch-cuda" else []
        if version.startswith(" "):
            return [f"{channel}{name} {cuda}"]
        return [f"{channel}{name}={cuda}"]
    if low == CPU_SELECTOR:
        return [f"{channel}pytorch-cuda={cuda}"] if cuda else [spec.strip()]
    if low in GPU_CPU_SELECTORS and not cuda:
        name = GPU_CPU_SELECTORS[low]
    elif low in GPU_CPU_SELECTORS.values() and cuda:
        name = next(k for k, v in GPU_CPU_SELECTORS.items() if v == low)
    if build:
        build = _rewrite_build(build, cuda)
    elif "[" in version and "build=" in version:
        version = re.sub(
            r"(build=['\"]?)([^'\"\],]+)", lambda m: m.group(1) + _rewrite_build(m.group(2), cuda), version
        )
    return [join_spec(channel, name, version, build)]


def rewrite_pip_line(line: str, cuda: str) -> str:
    """pip entries: PyTorch's CUDA wheel index (`.../whl/cu118`) and `+cu118` local versions."""
    tag = "cu" + cuda.replace(".", "") if cuda else "cpu"
    out = _PIP_CUDA_INDEX.sub(lambda m: f"{m.group('base')}/{tag}", line)
    if not out.lstrip().startswith("-"):
        out = _PIP_CUDA_LOCAL.sub("+" + tag, out)
    return out


def rewrite_spec(text: str, source: str, cuda_version: str) -> dict[str, Any]:
    """A bring-your-own environment.yml, kept whole except what pins CUDA (see rewrite_conda_spec)."""
    cuda = _cuda_xy(cuda_version)
    data = check_spec(text, source)
    deps: list[Any] = []
    seen: set[str] = set()
    for dep in data["dependencies"]:
        if isinstance(dep, dict):
            deps.append({"pip": [rewrite_pip_line(p, cuda) for p in dep["pip"]]})
            continue
        for new in rewrite_conda_spec(dep, cuda):
            key = spec_name(new)
            if key in (CPU_SELECTOR, *CUDA_PIN_NAMES) and key in seen:
                continue  # e.g. pytorch-cuda and cudatoolkit both present: one cpuonly is enough
            seen.add(key)
            deps.append(new)
    data["dependencies"] = deps
    return data


# -- merging and output ----------------------------------------------------------------------------
def merge_specs(layers: list[Any]) -> list[str]:
    """Merge package lists in order (all, group, host). Same package name: the later spec replaces
    the earlier one in its place. `!name` removes the package. pip option lines (`-r`, `--index-url`)
    are kept once, in order."""
    out: list[str] = []
    for layer in layers:
        if layer is None or layer == "":
            continue
        if isinstance(layer, str) or not isinstance(layer, list):
            raise SpecError(f"package lists must be lists of strings, got {layer!r}")
        for item in layer:
            if not isinstance(item, str) or not item.strip():
                raise SpecError(f"package list entries must be non-empty strings, got {item!r}")
            spec = item.strip()
            if spec.startswith("-"):
                if spec not in out:
                    out.append(spec)
                continue
            key = spec_name(spec)
            idx = next((i for i, old in enumerate(out) if spec_name(old) == key), None)
            if spec.startswith("!"):
                if idx is not None:
                    del out[idx]
            elif idx is None:
                out.append(spec)
            else:
                out[idx] = spec
    return out


def add_packages(data: dict[str, Any], conda: list[str], pip: list[str]) -> dict[str, Any]:
    """Extra packages on top of a bring-your-own spec: same name replaces, new names are appended."""
    conda_deps = [d for d in data["dependencies"] if isinstance(d, str)]
    pip_deps = [p for d in data["dependencies"] if isinstance(d, dict) for p in d["pip"]]
    merged_conda = merge_specs([conda_deps, conda])
    merged_pip = merge_specs([pip_deps, pip])
    if merged_pip and "pip" not in {spec_name(d) for d in merged_conda}:
        merged_conda.append("pip")
    out = dict(data)
    out["dependencies"] = [*merged_conda, *([{"pip": merged_pip}] if merged_pip else [])]
    return out


def dump_spec(data: dict[str, Any]) -> str:
    """YAML in conda's key order (name, channels, dependencies, variables, prefix, then the rest)."""
    order = ["name", "channels", "dependencies", "variables", "prefix"]
    ordered = {k: data[k] for k in order if k in data}
    ordered.update({k: v for k, v in data.items() if k not in ordered})
    return yaml.safe_dump(ordered, sort_keys=False, default_flow_style=False, width=1000)


def spec_digest(text: str, source: str = "<spec>") -> str:
    """sha256 of the spec's meaning: comments, quoting and key order do not change it."""
    data = check_spec(text, source)
    canon = json.dumps(data, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canon.encode("utf-8")).hexdigest()


# -- failures --------------------------------------------------------------------------------------
def _json_objects(text: str) -> list[dict[str, Any]]:
    """JSON objects in `text`: the whole text, else each top-level `{...}` block (pip may print around it)."""
    text = (text or "").strip()
    try:
        whole = json.loads(text)
        return [whole] if isinstance(whole, dict) else []
    except ValueError:
        pass
    out: list[dict[str, Any]] = []
    decoder = json.JSONDecoder()
    i = text.find("{")
    while i != -1:
        try:
            obj, end = decoder.raw_decode(text, i)
        except ValueError:
            i = text.find("{", i + 1)
            continue
        if isinstance(obj, dict):
            out.append(obj)
        i = text.find("{", end)
    return out


def failure_text(result: Any, limit: int = 3000) -> str:
    """The error to quote from a failed task result: conda's `--json` error object (stdout), else
    stderr, else stdout, else the task's `msg`. Trimmed to its last `limit` characters."""
    if not isinstance(result, dict):
        return str(result)
    stdout = str(result.get("stdout") or "")
    stderr = str(result.get("stderr") or "").strip()
    for obj in reversed(_json_objects(stdout)):
        if obj.get("success") is False or "error" in obj or "exception_name" in obj:
            text = str(obj.get("error") or obj.get("message") or obj)
            break
    else:
        text = stderr or stdout.strip() or str(result.get("msg") or "no error output")
    # conda's pip step prints pip's own error on stdout ("Pip subprocess error:"), then fails with
    # only "CondaEnvException: Pip failed": quote pip's reason too.
    pip_error = re.search(r"^Pip subprocess error:\n(.*?)(?:\n\s*\n|\Z)", stdout, re.S | re.M)
    if pip_error and pip_error.group(1).strip():
        text = f"{text}\npip: {pip_error.group(1).strip()}"
    if result.get("rc") not in (None, 0) and "rc" not in text:
        text = f"{text} (rc {result.get('rc')})"
    return text if len(text) <= limit else "..." + text[-limit:]


def parse_check(stdout: str, stderr: str = "", rc: Any = None) -> dict[str, Any]:
    """The MLP check's JSON object (its stdout), or a failed result quoting what it printed."""
    objs = _json_objects(stdout)
    if objs and "passed" in objs[-1]:
        out = dict(objs[-1])
        out["passed"] = bool(out.get("passed")) and rc in (None, 0)
        if not out["passed"] and not out.get("reason"):
            out["reason"] = f"the MLP check exited with rc {rc}"
        return _summarize(out)
    detail = (stderr or stdout or "").strip()[-2000:] or "no output"
    return {"passed": False, "reason": f"the MLP check printed no JSON result (rc {rc}): {detail}"}


def _summarize(check: dict[str, Any]) -> dict[str, Any]:
    """Top-level loss/accuracy/seconds for the run report when the check only gives them per task:
    loss and accuracy of the last task (the hardest), seconds summed over the tasks."""
    tasks = check.get("tasks")
    items = list(tasks.values()) if isinstance(tasks, dict) else tasks if isinstance(tasks, list) else []
    items = [t for t in items if isinstance(t, dict)]
    if items:
        check.setdefault("loss", items[-1].get("loss"))
        check.setdefault("accuracy", items[-1].get("accuracy"))
        secs = [t.get("seconds") for t in items if isinstance(t.get("seconds"), int | float)]
        check.setdefault("seconds", round(sum(secs), 6) if secs else None)
    return check


# -- Ansible glue ----------------------------------------------------------------------------------
def _wrap(func: Any) -> Any:
    def inner(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except SpecError as exc:
            from ansible.errors import AnsibleFilterError

            raise AnsibleFilterError(str(exc)) from None

    return inner


def _filter_rewrite(
    text: str, source: str, cuda_version: str, conda: list[str] | None = None, pip: list[str] | None = None
) -> str:
    data = rewrite_spec(text, source, cuda_version)
    return dump_spec(add_packages(data, list(conda or []), list(pip or [])))


def _filter_check(text: str, source: str = "<spec>") -> dict[str, Any]:
    return check_spec(text, source)


class FilterModule:
    """dl_env filters (see the module docstring)."""

    def filters(self) -> dict[str, Any]:
        return {
            "dl_env_spec_check": _wrap(_filter_check),
            "dl_env_spec_rewrite": _wrap(_filter_rewrite),
            "dl_env_merge_specs": _wrap(merge_specs),
            "dl_env_spec_digest": _wrap(spec_digest),
            "dl_env_failure_text": failure_text,
            "dl_env_parse_check": parse_check,
        }
