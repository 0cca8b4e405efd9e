# Copyright: gpulab contributors
# Apache-2.0 (see the repository's license)
"""Filters of the `dl_env` role: check, rewrite, merge and digest conda environment specs.

Pure Python (PyYAML and `packaging`, which Ansible itself needs) so the unit tests import the functions
directly. Which package an entry names comes from the parsers in `plugins/plugin_utils/dl_env_specs.py`
(conda MatchSpec, pip requirement lines). A spec the role cannot use raises `SpecError`, which the
`FilterModule` at the end turns into `AnsibleFilterError` (the collection's one filter error style:
plugins/plugin_utils/filter_errors.py).

What each filter takes and returns: `plugins/filter/<filter name>.yml`
(`ansible-doc -t filter gpulab.gpulab.<filter name>`).
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from typing import Any

import yaml

# The collection's own shared code, imported as Ansible (and tests/conftest.py's plugin()) load plugins.
from ansible_collections.gpulab.gpulab.plugins.module_utils.nvidia_smi import is_xy_version
from ansible_collections.gpulab.gpulab.plugins.plugin_utils import dl_env_specs as P
from ansible_collections.gpulab.gpulab.plugins.plugin_utils import secrets as SECRETS
from ansible_collections.gpulab.gpulab.plugins.plugin_utils.filter_errors import (
    FilterInputError,
    filter_table,
)

VALID_KEYS = ("name", "prefix", "channels", "dependencies", "variables")

# Packages whose only job is to pin the CUDA line (conda-forge, pytorch/nvidia channels, pre-1.13 pytorch).
CUDA_PIN_NAMES = ("cuda-version", "pytorch-cuda", "cudatoolkit")
# The pytorch channel's selector for CPU builds (`conda install pytorch cpuonly -c pytorch`).
CPU_SELECTOR = "cpuonly"
# conda-forge selector metapackages: pytorch-gpu (CUDA builds) / pytorch-cpu (CPU builds).
GPU_CPU_SELECTORS = {"pytorch-gpu": "pytorch-cpu"}
# Packages whose builds come as `*cpu*` and `*cuda<ver>*` variants of the same version, so a CPU host
# can be given the CPU build and a GPU host the CUDA one. Any other package keeps its `cpu` build
# (pyarrow's `*_cpu` is no PyTorch variant) and only has the CUDA version in a CUDA build updated.
CPU_CUDA_BUILDS = ("pytorch", "libtorch", "torchvision", "torchaudio", "pytorch-gpu", "pytorch-cpu")

_CUDA_IN_BUILD = re.compile(r"cuda(?P<ver>\d+(?:\.\d+)?)")
_PIP_CUDA_INDEX = re.compile(r"(?P<base>https?://download\.pytorch\.org/whl)/(?:cu\d+|cpu)(?=/|$)")
_PIP_CUDA_LOCAL = re.compile(r"\+(?:cu\d+|cpu)\b")


class SpecError(FilterInputError):
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
        else:
            try:
                P.parse_conda(dep)
            except P.SpecSyntaxError as exc:
                raise SpecError(f"{where}: dependency {dep!r} is not a conda package spec: {exc}") from None
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


def package_key(entry: str, kind: str = "conda") -> str | None:
    """The package an entry names (conda: lower-case name; pip: PEP 503 normalized), None when it
    cannot be known (a git URL without #egg=, a local path, `-r file`, an option line)."""
    if kind == "pip":
        return P.parse_pip(entry).key  # type: ignore[no-any-return]
    try:
        return P.parse_conda(entry).key  # type: ignore[no-any-return]
    except P.SpecSyntaxError:
        return None


def change(name: str, old: str, new: str) -> dict[str, str]:
    """One entry gpulab changed: `from` is '' when it added the entry, `to` is '' when it removed it."""
    return {"name": name, "from": old, "to": new}


# -- rewriting -------------------------------------------------------------------------------------
def _cuda_xy(cuda_version: str) -> str:
    text = str(cuda_version or "").strip()
    if text and not is_xy_version(text):
        raise SpecError(
            f"the host's CUDA version must look like X.Y or be empty (CPU build), got {cuda_version!r}"
        )
    return text


def _rewrite_build(build: str, cuda: str, flip: bool = True) -> str:
    """Make one build string ask for this host's CUDA line ('' cuda = CPU build). `flip` also turns
    CUDA builds into CPU builds and back (only for packages whose variants are named so, see
    CPU_CUDA_BUILDS); without it only the CUDA version inside a CUDA build changes."""
    if "cuda" not in build.lower() and "cpu" not in build.lower():
        return build
    if not flip and ("cuda" not in build.lower() or not cuda):
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
    An entry that pins no CUDA line comes back exactly as written.

    - `cuda-version`, `pytorch-cuda`, `cudatoolkit` with a version: the version becomes the host's CUDA
      X.Y; on a CPU host they are dropped (and `pytorch-cuda` becomes the pytorch channel's `cpuonly`).
    - `cpuonly` on a GPU host becomes `pytorch-cuda=X.Y` (pytorch channel style).
    - `pytorch-gpu` <-> `pytorch-cpu` (conda-forge selectors) follow the host.
    - build strings with `cuda<ver>` get the host's version; exact CUDA builds become `*cuda<ver>*`;
      on a CPU host CUDA builds become `*cpu*`, and on a GPU host `*cpu*` builds become `*cuda<ver>*`.
    Package-file URLs (`.../linux-64/x-1-0.conda`) are never rewritten: they name one exact file.
    """
    original = spec.strip()
    ms = P.parse_conda(original)
    low = (ms.key or "") if not ms.url else ""
    if not low:
        return [original]
    channel = ms.prefix
    if low in CUDA_PIN_NAMES:
        if not cuda:
            return [f"{channel}{CPU_SELECTOR}"] if low == "pytorch-cuda" else []
        new = f"{channel}{ms.name} {cuda}" if ms.form == "space" else f"{channel}{ms.name}={cuda}"
        return [original if P.parse_conda(new).match_version == ms.match_version else new]
    if low == CPU_SELECTOR:
        return [f"{channel}pytorch-cuda={cuda}"] if cuda else [original]
    name = ms.name
    if low in GPU_CPU_SELECTORS and not cuda:
        name = GPU_CPU_SELECTORS[low]
    elif low in GPU_CPU_SELECTORS.values() and cuda:
        name = next(k for k, v in GPU_CPU_SELECTORS.items() if v == low)
    flip = low in CPU_CUDA_BUILDS
    build = _rewrite_build(ms.build, cuda, flip) if ms.build else ""
    brackets = tuple(
        (k, _rewrite_build(P._unquote(v), cuda, flip) if k == "build" else v) for k, v in ms.brackets
    )
    if name == ms.name and build == ms.build and brackets == ms.brackets:
        return [original]
    return [ms.with_parts(name=name, build=build, brackets=brackets)]


def rewrite_pip_line(line: str, cuda: str) -> str:
    """pip entries: PyTorch's CUDA wheel index (`.../whl/cu118`) and `+cu118` local versions."""
    tag = "cu" + cuda.replace(".", "") if cuda else "cpu"
    out = _PIP_CUDA_INDEX.sub(lambda m: f"{m.group('base')}/{tag}", line)
    if not out.lstrip().startswith("-"):
        out = _PIP_CUDA_LOCAL.sub("+" + tag, out)
    return out


def _pip_label(entry: str) -> str:
    parsed = P.parse_pip(entry)
    if parsed.kind == "option":
        return str(entry.split()[0].split("=")[0])
    return str(parsed.name or entry)


def rewrite_spec_changes(
    text: str, source: str, cuda_version: str
) -> tuple[dict[str, Any], list[dict[str, str]]]:
    """A bring-your-own environment.yml, every entry kept as written except the CUDA pins
    (see rewrite_conda_spec); returns the data and the list of changes it made."""
    cuda = _cuda_xy(cuda_version)
    data = check_spec(text, source)
    deps: list[Any] = []
    changes: list[dict[str, str]] = []
    seen: set[str] = set()
    for dep in data["dependencies"]:
        if isinstance(dep, dict):
            pip: list[str] = []
            for line in dep["pip"]:
                new_line = rewrite_pip_line(line, cuda)
                if new_line != line:
                    changes.append(change(_pip_label(line), line, new_line))
                pip.append(new_line)
            deps.append({"pip": pip})
            continue
        name = P.parse_conda(dep).name
        news = rewrite_conda_spec(dep, cuda)
        kept: list[str] = []
        for new in news:
            key = package_key(new) or ""
            if new != dep.strip() and key in (CPU_SELECTOR, *CUDA_PIN_NAMES) and key in seen:
                continue  # e.g. pytorch-cuda and cudatoolkit both present: one cpuonly is enough
            seen.add(key)
            kept.append(new)
        deps.extend(kept)
        if kept != [dep]:
            changes.append(change(name, dep, " ".join(kept)))
    data["dependencies"] = deps
    return data, changes


def rewrite_spec(text: str, source: str, cuda_version: str) -> dict[str, Any]:
    """A bring-your-own environment.yml made fit for this host (see rewrite_spec_changes)."""
    return rewrite_spec_changes(text, source, cuda_version)[0]


def local_pip_paths(data: dict[str, Any]) -> list[str]:
    """pip entries that point at files on the host (`-r`, `-e ./pkg`, `submodules/x`, `file:`)."""
    return [p for d in data["dependencies"] if isinstance(d, dict) for p in d["pip"] if P.parse_pip(p).local]


# -- merging and output ----------------------------------------------------------------------------
def merge_specs(layers: list[Any], kind: str = "conda") -> list[str]:
    """Merge package lists in order (all, group, host); `kind` is conda or pip (which parser names the
    package). A later layer's entry replaces every earlier entry of the same package, in the place of
    the first; entries of one layer are all kept. `!name` removes the package (`!<exact line>` removes
    an entry whose name cannot be known). Entries whose name cannot be known (git URLs without #egg=,
    local paths, `-r file`, option lines) are kept verbatim, once."""
    if kind not in ("conda", "pip"):
        raise SpecError(f"package lists are conda or pip lists, got kind {kind!r}")
    out: list[str] = []
    for layer in layers:
        if layer is None or layer == "":
            continue
        if isinstance(layer, str) or not isinstance(layer, list):
            raise SpecError(f"package lists must be lists of strings, got {layer!r}")
        earlier = len(out)  # entries before this layer can be replaced, this layer's own cannot
        for item in layer:
            if not isinstance(item, str) or not item.strip():
                raise SpecError(f"package list entries must be non-empty strings, got {item!r}")
            spec = item.strip()
            if spec.startswith("!"):
                target = spec[1:].strip()
                key = package_key(target, kind)
                hits = [
                    i for i, old in enumerate(out) if old == target or (key and package_key(old, kind) == key)
                ]
                for i in reversed(hits):
                    del out[i]
                    earlier -= i < earlier
                continue
            key = package_key(spec, kind)
            if key is None:
                if spec not in out:
                    out.append(spec)
                continue
            hits = [i for i in range(earlier) if package_key(out[i], kind) == key]
            if not hits:
                out.append(spec)
                continue
            out[hits[0]] = spec
            for i in reversed(hits[1:]):
                del out[i]
                earlier -= 1
    return out


def add_packages(data: dict[str, Any], conda: list[str], pip: list[str]) -> dict[str, Any]:
    """Extra packages on top of a bring-your-own spec: same package replaces, new ones are appended."""
    conda_deps = [d for d in data["dependencies"] if isinstance(d, str)]
    pip_deps = [p for d in data["dependencies"] if isinstance(d, dict) for p in d["pip"]]
    merged_conda = merge_specs([conda_deps, conda], "conda")
    merged_pip = merge_specs([pip_deps, pip], "pip")
    if merged_pip and "pip" not in {package_key(d) for d in merged_conda}:
        merged_conda.append("pip")
    out = dict(data)
    out["dependencies"] = [*merged_conda, *([{"pip": merged_pip}] if merged_pip else [])]
    return out


def dump_spec(data: dict[str, Any]) -> str:
    """YAML in conda's key order (name, channels, dependencies, variables, prefix, then the rest)."""
    order = ["name", "channels", "dependencies", "variables", "prefix"]
    ordered = {k: data[k] for k in order if k in data}
    ordered.update({k: v for k, v in data.items() if k not in ordered})
    return str(yaml.safe_dump(ordered, sort_keys=False, default_flow_style=False, width=1000))


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


def recheck_reason(live: Mapping[str, Any], driver: str, device: str, backend: str, max_age_s: float) -> str:
    """Why the live build's MLP check must run again ("" when its last check still holds).

    `live` is dl_env_builds' `state: live` result. A passed check holds while the build it checked is
    the live one, the driver and the requested device and backend are those it ran with, root may still
    run the build's python, and it is at most `max_age_s` old (0: check on every run)."""
    check = live.get("check") or {}
    age = live.get("check_age_s")
    if live.get("untrusted"):
        return f"the environment may have been changed: {live['untrusted']}"
    if not check:
        return "never checked"
    if not check.get("passed") or not check.get("verified"):
        return "its last check did not pass"
    if not check.get("digest") or check.get("digest") != live.get("digest"):
        return "its last check was of another build"
    if str(check.get("driver") or "") != str(driver or ""):
        return (
            f"the driver changed since its last check ({check.get('driver') or 'none'} -> {driver or 'none'})"
        )
    if check.get("requested_device") != device or check.get("requested_backend") != backend:
        return f"the check now asks for device {device}, backend {backend}"
    if not isinstance(age, int | float) or age < 0:
        return "the age of its last check is unknown (the host's clock moved back?)"
    if float(max_age_s) <= 0 or age > float(max_age_s):
        return f"its last check is {int(age)} s old (dl_env_check_max_age {int(float(max_age_s))} s)"
    return ""


def build_reason(live: Mapping[str, Any], spec_digest: str) -> str:
    """Why the environment must be built ("" when the live build stays): `live` is dl_env_builds'
    `state: live` result. A live build whose marker is unreadable or not this env's is built again
    beside it rather than trusted (the module keeps it: it is not provably gpulab's)."""
    if not (live.get("exists") and live.get("python")):
        return "there is no live environment"
    if live.get("marker"):
        return f"the live build is not provably gpulab's: {live['marker']}"
    if live.get("digest") != spec_digest:
        return "its spec changed"
    return ""


# -- several environments --------------------------------------------------------------------------
ENV_LAYERS = ("dl_env_envs", "dl_env_group_envs", "dl_env_host_envs")
ENV_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
FRAMEWORKS = ("pytorch", "tensorflow", "none")
# Keys of one env entry and their types; the missing ones come from the single-env variables.
ENV_KEYS: dict[str, type | tuple[type, ...]] = {
    "name": str,
    "state": str,
    "template": str,
    "base_file": str,
    "python_version": (str, int, float),
    "framework": str,
    "framework_version": (str, int, float),
    "channels": list,
    "variables": dict,
    "conda_packages": list,
    "pip_packages": list,
    "cpu_only": bool,
}
_ENV_PACKAGE_KEYS = ("conda_packages", "pip_packages")


def merge_envs(
    layers: list[Any],
    defaults: dict[str, Any],
    conda_layers: list[Any] | None = None,
    pip_layers: list[Any] | None = None,
) -> list[dict[str, Any]]:
    """The environments of one host: `layers` are dl_env_envs, dl_env_group_envs, dl_env_host_envs;
    entries merge by `name` (a later layer's keys replace the earlier ones, its package lists merge
    like the package variables do, `!name` removes). Missing keys come from `defaults` (the
    single-env variables); the global package layers come first in every env's lists. No entries at
    all: the one env the single-env variables describe."""
    merged: dict[str, dict[str, Any]] = {}
    for var, layer in zip(ENV_LAYERS, layers, strict=False):
        if layer is None or layer == "":
            continue
        if not isinstance(layer, list):
            raise SpecError(f"{var} must be a list of environments (mappings with a name), got {layer!r}")
        for i, entry in enumerate(layer):
            where = f"{var}[{i}]"
            if not isinstance(entry, dict):
                raise SpecError(f"{where} must be a mapping with at least a name, got {entry!r}")
            unknown = sorted(set(entry) - set(ENV_KEYS))
            if unknown:
                known = ", ".join(ENV_KEYS)
                raise SpecError(f"{where}: unknown key(s) {', '.join(unknown)} (known: {known})")
            name = entry.get("name")
            if not isinstance(name, str) or not ENV_NAME.match(name) or name in ("base", "root"):
                raise SpecError(
                    f"{where}: name {name!r} must be letters, digits, '_', '.', '-' (not base/root)"
                )
            for key, value in entry.items():
                if not isinstance(value, ENV_KEYS[key]) or (key != "cpu_only" and isinstance(value, bool)):
                    raise SpecError(f"{where} ({name}): {key} has the wrong type: {value!r}")
            if entry.get("state", "present") not in ("present", "absent"):
                raise SpecError(f"{where} ({name}): state must be present or absent, got {entry['state']!r}")
            if entry.get("framework", "none") not in FRAMEWORKS:
                choices = ", ".join(FRAMEWORKS)
                got = entry["framework"]
                raise SpecError(f"{where} ({name}): framework must be one of {choices}, got {got!r}")
            old = merged.setdefault(name, {"conda_layers": [], "pip_layers": []})
            for key, value in entry.items():
                if key == "conda_packages":
                    old["conda_layers"].append(value)
                elif key == "pip_packages":
                    old["pip_layers"].append(value)
                else:
                    old[key] = value
    if not merged:
        merged[str(defaults["name"])] = {"conda_layers": [], "pip_layers": []}
    out: list[dict[str, Any]] = []
    for name, env in merged.items():
        full = {k: defaults.get(k) for k in ENV_KEYS if k not in _ENV_PACKAGE_KEYS}
        full.update({"state": "present", "cpu_only": False})
        full.update({k: v for k, v in env.items() if not k.endswith("_layers")})
        full["name"] = name
        full["python_version"] = str(full["python_version"])
        full["framework_version"] = str(full.get("framework_version") or "")
        full["conda_packages"] = merge_specs([*(conda_layers or []), *env["conda_layers"]], "conda")
        full["pip_packages"] = merge_specs([*(pip_layers or []), *env["pip_layers"]], "pip")
        out.append(full)
    return out


def as_unchanged(sent: Mapping[str, Any]) -> dict[str, Any]:
    """What a re-run that changes nothing reports (set_stats gpulab.<host>), from what a full run reported:
    every environment unchanged, its passed check reused (its age is brought to date by host_state), no pin
    changes, an absent environment absent; scheduler actions are not repeated."""

    def one(stats: Mapping[str, Any]) -> dict[str, Any]:
        if "env_action" not in stats:
            return dict(stats)
        if stats.get("state") == "absent":
            return {**stats, "env_action": "absent", "removed": []}
        again = {**stats, "env_action": "unchanged", "pin_changes": [], "recheck_reason": ""}
        if stats.get("checked_at") is not None:
            again["check_reused"] = True
        return again

    result = one({k: v for k, v in sent.items() if k not in ("envs", "scheduler")})
    if isinstance(sent.get("envs"), Mapping):
        result["envs"] = {name: one(stats) for name, stats in sent["envs"].items()}
    return result


# -- Ansible glue ----------------------------------------------------------------------------------
def rewrite_result(
    text: str, source: str, cuda_version: str, conda: list[str] | None = None, pip: list[str] | None = None
) -> dict[str, Any]:
    """The bring-your-own path of the role as data: the rendered text, its data, the pin changes
    (`[{name, from, to}]`) and the pip entries that must exist on the host (relative to the env file)."""
    data, changes = rewrite_spec_changes(text, source, cuda_version)
    spec = add_packages(data, list(conda or []), list(pip or []))
    had_pip = any(package_key(d) == "pip" for d in data["dependencies"] if isinstance(d, str))
    if not had_pip and "pip" in spec["dependencies"]:
        changes.append(change("pip", "", "pip"))  # conda needs pip itself to install a pip: list
    return {
        "text": dump_spec(spec),
        "spec": spec,
        "pin_changes": changes,
        "local_paths": local_pip_paths(spec),
    }


def _filter_rewrite(
    text: str, source: str, cuda_version: str, conda: list[str] | None = None, pip: list[str] | None = None
) -> str:
    return str(rewrite_result(text, source, cuda_version, conda, pip)["text"])


def _filter_failure_text(result: Any, limit: int = 3000) -> str:
    return str(SECRETS.redact(failure_text(result, limit)))


def _filter_check(text: str, source: str = "<spec>") -> dict[str, Any]:
    return check_spec(text, source)


class FilterModule:
    """dl_env filters (see the module docstring)."""

    def filters(self) -> dict[str, Any]:
        return filter_table(
            {
                "dl_env_spec_check": _filter_check,
                "dl_env_spec_rewrite": _filter_rewrite,
                "dl_env_spec_rewrite_result": rewrite_result,
                "dl_env_merge_specs": merge_specs,
                "dl_env_spec_digest": spec_digest,
                "dl_env_failure_text": _filter_failure_text,
                "dl_env_merge_envs": merge_envs,
                "dl_env_redact": SECRETS.redact,
                "dl_env_parse_check": parse_check,
                "dl_env_recheck_reason": recheck_reason,
                "dl_env_build_reason": build_reason,
                "dl_env_as_unchanged": as_unchanged,
            }
        )
