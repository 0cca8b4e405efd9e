"""`conda env create --file F --prefix P`, `conda list --prefix P --json`, `conda env list --json`: real
venvs and pip, conda-only packages recorded in `conda-meta/`, history and environments.txt."""

from __future__ import annotations

import json
import os
import platform
import pwd
import re
import shutil
import subprocess
import tempfile
import time
import venv
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import CondaError, tos
from .context import Context, channel_name, channel_url, home
from .shell import find_env, is_environment

# Packages that exist only as conda builds (CUDA runtime pieces, conda's PyTorch builds, MKL, ...): the
# stand-in RECORDS them in conda-meta and installs nothing, so they never pretend to work.
# fmt: off
CONDA_ONLY = frozenset({
    "cuda-version", "cudatoolkit", "cudnn", "nccl", "mkl", "mkl-service", "intel-openmp", "libtorch", "magma",
    "pytorch", "pytorch-gpu", "pytorch-cpu", "pytorch-cuda", "pytorch-mutex", "torchvision", "torchaudio",
    "cupy", "_openmp_mutex", "libgcc", "libgcc-ng", "libstdcxx", "libstdcxx-ng",
})
# fmt: on
CONDA_ONLY_PREFIXES = ("cuda-", "libcu", "libnv", "libnccl", "nvidia-")
# The version recorded for a conda-only package whose spec names none (stand-in choice), else "0".
DEFAULT_VERSIONS = {
    "pytorch": "2.5.1",
    "pytorch-gpu": "2.5.1",
    "pytorch-cpu": "2.5.1",
    "cuda-version": "12.6",
}
STANDIN_NOTE = (
    "gpulab stand-in record: conda-only package, NOT installed (nothing was downloaded or linked); "
    "it does not work in this environment"
)
PYTHON_NOTE = "gpulab stand-in record: the host's python3 interpreter through a venv"
PIP_NOTE = "gpulab stand-in record: pip unpacked from the wheel bundled in the installer"
_SPEC_RE = re.compile(r"^\s*(?:(?P<channel>[^\s:]+)::)?(?P<name>[A-Za-z0-9_.\-]+)\s*(?P<rest>.*?)\s*$")


# -- a small MatchSpec: conda-only record or pip requirement ------------------------------------------
@dataclass(frozen=True)
class Spec:
    text: str
    channel: str | None
    name: str
    version: str  # conda version constraint, "" for any

    @property
    def conda_only(self) -> bool:
        return self.name.lower() in CONDA_ONLY or self.name.lower().startswith(CONDA_ONLY_PREFIXES)

    def pip_constraint(self) -> str:
        """The pip specifier of the conda constraint: `=1.2`, `1.2`, `1.2.*` -> `==1.2.*`."""
        out = []
        for part in filter(None, (p.strip() for p in self.version.split(","))):
            if part[0].isdigit() or (part[0] == "=" and part[1:2] != "="):
                out.append("==" + part.lstrip("=").rstrip(".*") + ".*")
            else:
                out.append(part)
        return ",".join(out)

    def record_version(self) -> str:
        m = re.match(r"^(?:==|=|>=|~=)?\s*([0-9][0-9A-Za-z.]*)", self.version)
        return m.group(1).rstrip(".*") if m else DEFAULT_VERSIONS.get(self.name.lower(), "0")


def parse(text: str) -> Spec:
    m = _SPEC_RE.match(text)
    if not m:
        raise CondaError(f"Invalid spec '{text}'", "InvalidMatchSpec")
    rest = m.group("rest")
    if rest.startswith("=") and not rest.startswith("=="):
        version = "=" + rest[1:].split("=")[0]  # name=version=build
    elif rest.startswith(("==", "<", ">", "!", "~")):
        version = rest.replace(" ", "")
    else:
        version = (rest.split() or [""])[0]  # name version build
    return Spec(text.strip(), m.group("channel"), m.group("name"), version)


def python_matches(spec: Spec, version: str) -> bool:
    from pip._vendor.packaging.specifiers import InvalidSpecifier, SpecifierSet  # the base's pip

    try:
        return SpecifierSet(spec.pip_constraint()).contains(version)
    except InvalidSpecifier:
        return True


# -- what lives in a prefix ----------------------------------------------------------------------------
def site_packages(prefix: Path) -> Path:
    return min((prefix / "lib").glob("python3*/site-packages"))


def make_record(name: str, version: str, channel: str, spec: str, note: str) -> dict[str, Any]:
    """A `conda-meta/<name>-<version>-standin_0.json` record (marked as the stand-in's)."""
    fn = f"{name}-{version}-standin_0.conda"
    return {
        "build": "standin_0", "build_number": 0, "channel": f"{channel}/linux-64", "fn": fn, "name": name,
        "requested_spec": spec, "subdir": "linux-64", "url": f"{channel}/linux-64/{fn}", "version": version,
        "gpulab_standin_note": note,
    }  # fmt: skip


def conda_records(prefix: Path) -> list[dict[str, Any]]:
    out = []
    for path in sorted((prefix / "conda-meta").glob("*.json")):
        try:
            rec = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if isinstance(rec, dict) and {"name", "version", "build"} <= set(rec):
            out.append(rec)
    return out


def write_record(prefix: Path, record: dict[str, Any]) -> None:
    meta = prefix / "conda-meta"
    meta.mkdir(parents=True, exist_ok=True)
    for old in conda_records(prefix):
        if old["name"] == record["name"]:
            (meta / f"{old['name']}-{old['version']}-{old['build']}.json").unlink(missing_ok=True)
    path = meta / f"{record['name']}-{record['version']}-{record['build']}.json"
    path.write_text(json.dumps(record, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def dist_fields(rec: dict[str, Any]) -> dict[str, Any]:
    """`dist_fields_dump()` of a conda record: the 8 keys of a `conda list --json` entry (facts §2.7)."""
    base = str(rec["channel"]).rsplit("/", 1)[0]
    name, version, build = rec["name"], rec["version"], rec["build"]
    return {
        "base_url": base, "build_number": rec.get("build_number", 0), "build_string": build,
        "channel": channel_name(base), "dist_name": f"{name}-{version}-{build}", "name": name,
        "platform": rec.get("subdir", "linux-64"), "version": version,
    }  # fmt: skip


def append_history(
    ctx: Context, prefix: Path, cmd: str, added: list[dict[str, Any]], specs: list[str], channel: str = ""
) -> None:
    """One `conda-meta/history` revision (facts §7.4); `channel` names the channel of every added record
    (the installer's records show the configured name, `defaults`), else each record's own."""
    lines = [
        f"==> {time.strftime('%Y-%m-%d %H:%M:%S')} <==",
        f"# cmd: {cmd}",
        f"# conda version: {ctx.conda_version}",
    ]
    for r in added:
        lines.append(f"+{channel or channel_name(dist_fields(r)['base_url'])}/{r['subdir']}::{r['fn'][:-6]}")
    lines.append(f"# update specs: {json.dumps(specs)}")
    with (prefix / "conda-meta" / "history").open("a", encoding="utf-8") as fh:
        fh.write("\n".join(lines) + "\n")


def register_env(prefix: Path) -> None:
    """Add the prefix to `~/.conda/environments.txt` (best effort, as conda does)."""
    path = home() / ".conda" / "environments.txt"
    try:
        if str(prefix) not in (path.read_text(encoding="utf-8").splitlines() if path.exists() else []):
            path.parent.mkdir(parents=True, exist_ok=True)
            with path.open("a", encoding="utf-8") as fh:
                fh.write(f"{prefix}\n")
    except OSError:
        pass


# -- installation --------------------------------------------------------------------------------------
def install_wheel(prefix: Path, wheel: Path) -> str:
    """Install the bundled pure-Python pip wheel by unpacking it into site-packages; its version."""
    with zipfile.ZipFile(wheel) as zf:
        zf.extractall(site_packages(prefix))
    return wheel.name.split("-")[1]


def make_env_python(prefix: Path) -> None:
    """A venv of the host's python3 laid out like a conda env: `bin/python3.X` is the env's own copy of the
    interpreter and `python`, `python3` link to it, so `bin/python` resolves inside the env, as in conda."""
    venv.EnvBuilder(with_pip=False, symlinks=True).create(str(prefix))
    binary = prefix / "bin" / f"python{'.'.join(platform.python_version_tuple()[:2])}"
    real = Path(os.path.realpath(prefix / "bin" / "python"))
    for name in (binary.name, "python", "python3"):
        (prefix / "bin" / name).unlink(missing_ok=True)
    shutil.copy2(real, binary)
    for name in ("python", "python3"):
        (prefix / "bin" / name).symlink_to(binary.name)


def run_pip(prefix: Path, args: list[str], cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PIP_DISABLE_PIP_VERSION_CHECK="1", PIP_NO_INPUT="1")
    env.pop("PYTHONPATH", None)
    cmd = [str(prefix / "bin" / "python"), "-m", "pip", *args]
    return subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=cwd, check=False)


def packages_not_found(packages: list[str], urls: list[str]) -> CondaError:
    return CondaError(
        "The following packages are not available from current channels:\n\n"
        + "".join(f"  - {p}\n" for p in packages)
        + "\nCurrent channels:\n\n"
        + "".join(f"  - {c}\n" for c in urls)
        + "\nTo search for alternate channels that may provide the conda package you're\n"
        "looking for, navigate to\n\n    https://anaconda.org\n\n"
        "and use the search bar at the top of the page.\n",
        "PackagesNotFoundError",
    )


def env_create(ctx: Context, file: str, target: str, cmd_line: str) -> int:
    """`conda env create --file F --prefix P` (conda-facts §2.1): solve (python must be the host's; the
    other non-conda-only packages are pip's to resolve), transaction, then the `pip:` step. A failed
    solve or transaction removes a prefix it created."""
    import yaml

    tos.gate(ctx)
    path = Path(os.path.abspath(os.path.expanduser(file)))
    if not path.is_file():
        raise CondaError(f"'{path}' file not found", "EnvironmentFileNotFound")
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    data = data if isinstance(data, dict) else {}
    deps = data.get("dependencies") or []
    specs = [parse(str(d)) for d in deps if not isinstance(d, dict)]
    pip_deps = [str(x) for d in deps if isinstance(d, dict) for x in d.get("pip") or []]
    if pip_deps and not any(s.name == "pip" for s in specs):
        specs.append(parse("pip"))  # conda adds it (with a nag on stderr)
    file_chans = [str(c) for c in data.get("channels") or []]
    chans = [c for c in file_chans if c != "nodefaults"] + (
        [] if "nodefaults" in file_chans else ctx.channels
    )
    chans = list(dict.fromkeys(chans))
    urls = [f"{u}/{sub}" for u in ctx.channel_urls(chans) for sub in ("linux-64", "noarch")]
    prefix = Path(os.path.abspath(os.path.expanduser(target)))
    print("Channels:\n" + "".join(f" - {c}\n" for c in chans) + "Platform: linux-64")
    print("Collecting package metadata (repodata.json): done")
    host_py = platform.python_version()
    wrong = [s.text for s in specs if s.name == "python" and not python_matches(s, host_py)]
    if wrong or not urls:
        print("Solving environment: failed\n")
        raise packages_not_found(wrong or [s.text for s in specs], urls)

    def record(name: str, version: str, note: str) -> dict[str, Any]:
        spec = next((s for s in specs if s.name == name), parse(name))
        chan = spec.channel or (chans[0] if chans else "conda-forge")
        base = str((ctx.rc.get("default_channels") or ["https://repo.anaconda.com/pkgs/main"])[0])
        return make_record(name, version, base if chan == "defaults" else channel_url(chan), spec.text, note)

    created = not prefix.exists()
    try:
        if not (prefix / "pyvenv.cfg").is_file():
            make_env_python(prefix)
        records = [record("python", host_py, PYTHON_NOTE)]
        pip_reqs = [s for s in specs if s.name not in ("python", "pip") and not s.conda_only]
        if pip_reqs or any(s.name == "pip" for s in specs):
            wheel = max((ctx.root_prefix / "lib" / "gpulab-standin" / "wheels").glob("pip-*.whl"))
            records.append(record("pip", install_wheel(prefix, wheel), PIP_NOTE))
        records += [record(s.name, s.record_version(), STANDIN_NOTE) for s in specs if s.conda_only]
        if pip_reqs:  # the "solve" of the other conda packages is pip's resolver
            # --no-compile: conda links a package's files as built (an arch-specific package ships its
            # .pyc files), it does not byte-compile them; pip's compile step cost seconds per env here.
            reqs = [s.name + s.pip_constraint() for s in pip_reqs]
            proc = run_pip(prefix, ["install", "--no-compile", *reqs])
            if proc.returncode != 0:
                print("Solving environment: failed\n")
                out = proc.stdout + proc.stderr
                gone = re.findall(
                    r"(?:No matching distribution found for|satisfies the requirement) (\S+)", out
                )
                by_name = {s.name.lower(): s.text for s in pip_reqs}
                if gone:
                    raise packages_not_found(
                        [by_name.get(parse(g).name.lower(), g) for g in dict.fromkeys(gone)], urls
                    )
                raise CondaError(
                    f"stand-in: pip could not install the conda dependencies:\n{proc.stderr.strip()}"
                )
        print("Solving environment: done")
        for rec in records:
            write_record(prefix, rec)
        append_history(ctx, prefix, cmd_line, records, [s.text for s in specs])
        print("Preparing transaction: done\nVerifying transaction: done\nExecuting transaction: done")
    except BaseException:
        if created:
            shutil.rmtree(prefix, ignore_errors=True)
        raise
    register_env(prefix)
    if pip_deps:
        _pip_section(prefix, path, pip_deps)
    if data.get("variables"):  # `variables:` -> conda-meta/state, exported by activation (conda-facts §2.1)
        state = {"env_vars": {str(k): str(v) for k, v in data["variables"].items()}}
        (prefix / "conda-meta" / "state").write_text(json.dumps(state, indent=2) + "\n", encoding="utf-8")
    return 0


def _pip_section(prefix: Path, spec_file: Path, pip_deps: list[str]) -> None:
    """The `pip:` step (conda-facts §2.1): the entries joined by newlines into a requirements file next to the
    env file, `pip install -U -r ... --exists-action=b` run in that directory (else in conda's own cwd);
    a failure is `CondaEnvException: Pip failed` and the conda part stays."""
    workdir = spec_file.parent if os.access(spec_file.parent, os.W_OK) else None
    fd, req = tempfile.mkstemp(prefix="condaenv.", suffix=".requirements.txt", dir=workdir, text=True)
    with os.fdopen(fd, "w") as fh:
        fh.write("\n".join(pip_deps) + "\n")
    args = ["install", "-U", "-r", req, "--exists-action=b"]
    try:
        proc = run_pip(prefix, args, cwd=workdir)
    finally:
        os.unlink(req)
    argv = [str(prefix / "bin" / "python"), "-m", "pip", *args]
    print(f"Installing pip dependencies: ...working... Ran pip subprocess with arguments:\n{argv}")
    print(f"Pip subprocess output:\n{proc.stdout}")
    if proc.returncode != 0:
        print(f"Pip subprocess error:\n{proc.stderr}\nfailed")
        raise CondaError("Pip failed", "CondaEnvException")
    print("done")


# -- listing -------------------------------------------------------------------------------------------
def list_cmd(ctx: Context, target: str) -> int:
    """`conda list --prefix P --json` (facts §2.7): conda records, then pip-only dists as `pypi`/`pypi_0`,
    sorted by name."""
    prefix = find_env(ctx, None, target)
    recs = conda_records(prefix)
    items = [dist_fields(r) for r in recs]
    conda_names = {re.sub(r"[-_.]+", "-", r["name"]).lower() for r in recs}
    for info in sorted(site_packages(prefix).glob("*.dist-info")):
        try:
            head = (info / "METADATA").read_text(encoding="utf-8", errors="replace").split("\n\n", 1)[0]
        except OSError:
            continue
        meta = {k: v.strip() for k, _, v in reversed([line.partition(":") for line in head.splitlines()])}
        name, version = re.sub(r"[-_.]+", "-", meta.get("Name", "")).lower(), meta.get("Version", "")
        if name and version and name not in conda_names:
            pypi = {"channel": "https://conda.anaconda.org/pypi/pypi", "subdir": "pypi", "build": "pypi_0"}
            items.append(dist_fields({**pypi, "name": name, "version": version}))
    print(json.dumps(sorted(items, key=lambda d: d["name"]), indent=2))
    return 0


def env_list(ctx: Context) -> int:
    """`conda env list --json` (facts §2.5): `{"envs": [...]}` (the key every version's layout has) from
    environments.txt (every user's when root), the envs dirs and the root, `sorted(set(...))`."""
    homes = {Path(e.pw_dir) for e in pwd.getpwall()} if os.geteuid() == 0 else set()
    found = {str(ctx.root_prefix)}
    for h in homes | {home()}:
        try:
            found.update(
                p.strip()
                for p in (h / ".conda" / "environments.txt").read_text(encoding="utf-8").splitlines()
            )
        except OSError:
            continue
    found.update(str(sub) for d in ctx.envs_dirs if d.is_dir() for sub in d.iterdir())
    print(json.dumps({"envs": sorted(p for p in found if p and is_environment(Path(p)))}, indent=2))
    return 0
