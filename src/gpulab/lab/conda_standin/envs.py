"""`conda env create`, `conda list`, `conda env list`: real venvs, pip, recorded conda-only packages."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import venv
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import errors, specs
from .context import Context, channel_url, faults
from .prefix import (
    STANDIN_NOTE,
    append_history,
    conda_records,
    dist_fields,
    is_environment,
    known_prefixes,
    list_packages,
    make_record,
    register_env,
    site_packages,
    write_record,
    write_state_vars,
)

VALID_KEYS = ("name", "prefix", "channels", "dependencies", "variables")
PIP_NAG = (
    "Warning: you have pip-installed dependencies in your environment file, but you do not list pip itself "
    "as one of your conda dependencies.  Conda may not use the correct pip to install your packages, and "
    "they may end up in the wrong place.  Please add an explicit pip dependency.  I'm adding one for you, "
    "but still nagging you."
)
PYTHON_NOTE = "gpulab stand-in record: the host's python3 interpreter through a venv"
PIP_NOTE = "gpulab stand-in record: pip unpacked from the wheel bundled in the installer"


@dataclass
class EnvFile:
    path: Path
    name: str | None = None
    channels: list[str] = field(default_factory=list)
    conda_deps: list[str] = field(default_factory=list)
    pip_deps: list[str] = field(default_factory=list)
    variables: dict[str, Any] = field(default_factory=dict)


def say(ctx: Context, text: str) -> None:
    if not ctx.json:
        print(text, flush=True)


def load_env_file(path_text: str) -> EnvFile:
    """environment.yml schema (facts §3); a missing file -> EnvironmentFileNotFound (facts §2.1)."""
    import yaml

    path = Path(os.path.abspath(os.path.expanduser(path_text)))
    if not path.is_file():
        raise errors.EnvironmentFileNotFound(str(path))
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise errors.EnvironmentFileInvalid(f"Provided environment.yaml is invalid: {exc}") from None
    if not isinstance(data, dict) or "dependencies" not in data:
        raise errors.EnvironmentFileInvalid(
            "Provided environment.yaml is invalid: Missing required field 'dependencies'"
        )
    bad = [k for k in data if k not in VALID_KEYS]
    if bad:
        sys.stderr.write(
            f"EnvironmentSectionNotValid: The following section on '{path}' is invalid and will be ignored:\n"
            + "".join(f" - {k}\n" for k in bad)
        )
    env = EnvFile(
        path, str(data["name"]) if data.get("name") else None, [str(c) for c in data.get("channels") or []]
    )
    env.variables = dict(data.get("variables") or {})
    for dep in data.get("dependencies") or []:
        if isinstance(dep, dict):
            env.pip_deps += [str(x) for x in dep.get("pip") or []]
        else:
            env.conda_deps.append(str(dep))
    if env.pip_deps and not any(specs.parse(d).name == "pip" for d in env.conda_deps):
        sys.stderr.write(PIP_NAG + "\n")
        env.conda_deps.append("pip")
    return env


def locate(ctx: Context, name: str | None, prefix: str | None) -> Path | None:
    """-p PATH, or -n NAME: an existing env in any envs dir, else the first writable envs dir."""
    if prefix:
        return Path(os.path.abspath(os.path.expanduser(prefix)))
    if not name:
        return None
    if name in ("base", "root"):
        return ctx.root_prefix
    found = [d / name for d in ctx.envs_dirs if is_environment(d / name)]
    return found[0] if found else ctx.first_writable_envs_dir() / name


def existing_env(ctx: Context, name: str | None, prefix: str | None) -> Path:
    target = locate(ctx, name, prefix) or Path(os.environ.get("CONDA_PREFIX") or ctx.root_prefix)
    if not is_environment(target):
        raise errors.EnvironmentLocationNotFound(str(target))
    return target


# -- installation ----------------------------------------------------------------------------------
def install_wheel(prefix: Path, wheel: Path) -> str:
    """Install a pure-Python wheel by unpacking it (how the bundled pip lands in an env); its version."""
    sp = site_packages(prefix)
    assert sp is not None
    with zipfile.ZipFile(wheel) as zf:
        zf.extractall(sp)
    name, version = wheel.name.split("-")[:2]
    info = sp / f"{name}-{version}.dist-info"
    (info / "INSTALLER").write_text("conda\n", encoding="utf-8")
    section = ""
    entry_points = info / "entry_points.txt"
    for line in entry_points.read_text(encoding="utf-8").splitlines() if entry_points.is_file() else []:
        line = line.strip()
        if line.startswith("["):
            section = line
        elif section == "[console_scripts]" and "=" in line:
            script, target = (x.strip() for x in line.split("=", 1))
            module, func = target.split(":")
            path = prefix / "bin" / script
            path.write_text(
                f"#!{prefix}/bin/python\nimport sys\nfrom {module} import {func}\n"
                f"if __name__ == '__main__':\n    sys.exit({func}())\n",
                encoding="utf-8",
            )
            path.chmod(0o755)
    return version


def make_env_python(prefix: Path) -> None:
    """A venv of the host's python3 laid out like a conda env: `bin/python3.X` is the env's own copy of the
    interpreter and `python`, `python3` link to it, so `bin/python` resolves inside the env, as in conda."""
    venv.EnvBuilder(with_pip=False, symlinks=True).create(str(prefix))
    binary = prefix / "bin" / f"python{sys.version_info.major}.{sys.version_info.minor}"
    real = Path(os.path.realpath(prefix / "bin" / "python"))
    for name in (
        binary.name,
        "python",
        "python3",
        "activate",
        "activate.csh",
        "activate.fish",
        "Activate.ps1",
    ):
        (prefix / "bin" / name).unlink(missing_ok=True)
    shutil.copy2(real, binary)
    for name in ("python", "python3"):
        (prefix / "bin" / name).symlink_to(binary.name)


def run_pip(prefix: Path, args: list[str], cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PIP_DISABLE_PIP_VERSION_CHECK="1", PIP_NO_INPUT="1")
    env.pop("PYTHONPATH", None)
    return subprocess.run(
        [str(prefix / "bin" / "python"), "-m", "pip", *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=cwd,
        check=False,
    )


def _not_found(output: str) -> list[str]:
    names = re.findall(r"(?:No matching distribution found for|satisfies the requirement) ([^\s]+)", output)
    return list(dict.fromkeys(names))


def _channel_for(ctx: Context, spec: specs.Spec, chans: list[str]) -> str:
    chan = spec.channel or (chans[0] if chans else "conda-forge")
    return ctx.default_channels[0] if chan == "defaults" else channel_url(chan)


def install_env(ctx: Context, prefix: Path, env: EnvFile, cmd_line: str) -> list[dict[str, Any]]:
    """Solve, "transaction", then the pip step. A failed transaction removes a prefix it created."""
    chans = list(
        dict.fromkeys(
            [c for c in env.channels if c != "nodefaults"]
            + ([] if "nodefaults" in env.channels else ctx.channels)
        )
    )
    subdir_urls = ctx.channel_subdir_urls(chans)
    parsed = [specs.parse(d) for d in env.conda_deps]
    active = faults()
    say(ctx, "Channels:\n" + "".join(f" - {c}\n" for c in chans) + "Platform: linux-64")
    say(ctx, "Collecting package metadata (repodata.json): done")
    host_py = ".".join(str(x) for x in sys.version_info[:3])
    missing = [s.text for s in parsed if s.name == "python" and not specs.version_matches(s.version, host_py)]
    if missing or not subdir_urls:
        say(ctx, "Solving environment: failed\n")
        raise errors.PackagesNotFoundError(missing or [s.text for s in parsed], subdir_urls)
    if "env-create=solve" in active:
        say(ctx, "Solving environment: failed\n")
        first = next((s.text for s in parsed if s.conda_only), parsed[0].text if parsed else "python")
        raise errors.LibMambaUnsatisfiableError(
            "Could not solve for environment specs\nThe following package could not be installed\n"
            f"\u2514\u2500 {first} is not installable because it requires\n"
            "   \u2514\u2500 __cuda, which is missing on the system."
        )
    created_here = not prefix.exists()
    old = {(r["name"], r["version"], r["channel"]) for r in conda_records(prefix)}
    try:
        if not (prefix / "pyvenv.cfg").is_file():
            make_env_python(prefix)

        def record(spec: specs.Spec, version: str, note: str, noarch: bool = False) -> dict[str, Any]:
            channel = _channel_for(ctx, spec, chans)
            return make_record(spec.name, version, channel, noarch=noarch, note=note, spec=spec.text)

        records = [
            record(
                next((s for s in parsed if s.name == "python"), specs.parse("python")), host_py, PYTHON_NOTE
            )
        ]
        pip_reqs = [s for s in parsed if s.name not in ("python", "pip") and not s.conda_only]
        if any(s.name == "pip" for s in parsed) or pip_reqs:
            sp = site_packages(prefix)
            have = sorted(sp.glob("pip-*.dist-info")) if sp else []
            version = have[0].name.split("-")[1].removesuffix(".dist") if have else ""
            pip_spec = next((s for s in parsed if s.name == "pip"), specs.parse("pip"))
            records.append(
                record(pip_spec, version or install_wheel(prefix, bundled_pip(ctx)), PIP_NOTE, True)
            )
        records += [
            record(s, s.record_version(), STANDIN_NOTE, s.name in specs.NOARCH)
            for s in parsed
            if s.conda_only
        ]
        if pip_reqs:  # the "solve" of the other conda packages is pip's resolver, before the plan is shown
            proc = run_pip(prefix, ["install", *[s.pip_requirement() for s in pip_reqs]])
            if proc.returncode != 0:
                say(ctx, "Solving environment: failed\n")
                by_name = {s.name.lower(): s.text for s in pip_reqs}
                gone = [
                    by_name.get(specs.parse(g).name.lower(), g) for g in _not_found(proc.stdout + proc.stderr)
                ]
                if gone:
                    raise errors.PackagesNotFoundError(gone, subdir_urls)
                raise errors.CondaError(
                    f"stand-in: pip could not install the conda dependencies:\n{proc.stderr.strip()}"
                )
        say(ctx, "Solving environment: done")
        changed = [r for r in records if (r["name"], r["version"], r["channel"]) not in old]
        if changed:
            say(
                ctx,
                f"\n## Package Plan ##\n\n  environment location: {prefix}\n\n"
                "The following NEW packages will be INSTALLED:\n",
            )
            say(
                ctx,
                "".join(
                    f"  {r['name']:<18} {dist_fields(r)['channel']}/{r['subdir']}::"
                    f"{dist_fields(r)['dist_name']}\n"
                    for r in changed
                ),
            )
        # Fault: SIGKILL mid-transaction leaves half the records and no history (facts §6.5).
        if "env-create=interrupt" in active:
            for rec in changed[: max(1, len(changed) // 2)]:
                write_record(prefix, rec)
            sys.stdout.flush()
            os.kill(os.getpid(), signal.SIGKILL)
        for rec in changed:
            write_record(prefix, rec)
        append_history(ctx, prefix, cmd_line, changed, env.conda_deps)
        say(ctx, "Preparing transaction: done\nVerifying transaction: done\nExecuting transaction: done")
    except BaseException:
        if created_here:
            shutil.rmtree(prefix, ignore_errors=True)
        raise
    register_env(prefix)
    if env.pip_deps:
        _pip_section(ctx, prefix, env)
    if env.variables:
        write_state_vars(prefix, env.variables)
    return changed


def bundled_pip(ctx: Context) -> Path:
    wheels = sorted((ctx.root_prefix / "lib" / "gpulab-standin" / "wheels").glob("pip-*.whl"))
    if not wheels:
        raise errors.CondaError("stand-in: the bundled pip wheel is missing from the base prefix")
    return wheels[-1]


def _pip_section(ctx: Context, prefix: Path, env: EnvFile) -> None:
    """The `pip:` step (conda-facts §2.1): the entries joined by newlines into a requirements file next to the
    env file, `pip install -U -r ... --exists-action=b` run in that directory (else in conda's own cwd)."""
    workdir = env.path.parent if os.access(env.path.parent, os.W_OK) else None
    fd, req = tempfile.mkstemp(prefix="condaenv.", suffix=".requirements.txt", dir=workdir, text=True)
    with os.fdopen(fd, "w") as fh:
        fh.write("\n".join(env.pip_deps) + "\n")
    args = ["install", "-U", "-r", req, "--exists-action=b"]
    try:
        proc = run_pip(prefix, args, cwd=workdir)
    finally:
        os.unlink(req)
    argv = [str(prefix / "bin" / "python"), "-m", "pip", *args]
    say(ctx, f"Installing pip dependencies: ...working... Ran pip subprocess with arguments:\n{argv}")
    say(ctx, f"Pip subprocess output:\n{proc.stdout}")
    if proc.returncode != 0:
        say(ctx, f"Pip subprocess error:\n{proc.stderr}\nfailed")
        raise errors.CondaEnvException("Pip failed")
    say(ctx, "done")


# -- commands --------------------------------------------------------------------------------------
def env_create(ctx: Context, args: Any, cmd_line: str) -> int:
    """`conda env create -f F -p P|-n N [--yes] [--json]` (facts §2.1)."""
    from . import tos

    tos.gate(ctx)
    env = load_env_file(args.file)
    name = args.name or (None if args.prefix else env.name)
    if name in ("base", "root") and not args.prefix:
        raise errors.CondaValueError(f"'{name}' is a reserved environment name")
    if name and not args.prefix and any(c in name for c in "/ :#"):
        raise errors.CondaValueError(
            f"Invalid environment name: {name!r}\n  Characters not allowed: ('/', ' ', ':', '#')"
        )
    prefix = locate(ctx, name, args.prefix)
    if prefix is None:
        raise errors.CondaEnvException(
            "Unable to create environment\nPlease re-run this command with one of the following options:\n\n"
            "* Provide an environment name via --name or -n\n* Provide a path on disk via --prefix or -p\n"
        )
    if prefix == ctx.root_prefix:
        raise errors.CondaValueError("'base' is a reserved environment name")
    if args.yes and prefix.exists():  # --yes recreates; without it 25.5-25.11 install into the existing env
        shutil.rmtree(prefix)
    linked = install_env(ctx, prefix, env, cmd_line)
    if ctx.json:
        actions = {"FETCH": [], "LINK": [dist_fields(r) for r in linked], "PREFIX": str(prefix), "UNLINK": []}
        print(json.dumps({"actions": actions, "prefix": str(prefix), "success": True}, indent=2))
    else:
        shown = name if name and not args.prefix else str(prefix)
        say(
            ctx,
            f"#\n# To activate this environment, use\n#\n#     $ conda activate {shown}\n#\n"
            "# To deactivate an active environment, use\n#\n#     $ conda deactivate\n",
        )
    return 0


def list_cmd(ctx: Context, args: Any) -> int:
    """`conda list -n|-p [--json]` (facts §2.7)."""
    prefix = existing_env(ctx, args.name, args.prefix)
    items = list_packages(prefix)
    if ctx.json:
        print(json.dumps(items, indent=2))
        return 0
    print(f"# packages in environment at {prefix}:\n#\n# {'Name':<23} {'Version':<15} {'Build':>15}  Channel")
    for i in items:
        print(f"{i['name']:<25} {i['version']:<15} {i['build_string']:>15}  {i['channel']}")
    return 0


def env_list(ctx: Context) -> int:
    """`conda env list [--json]` (facts §2.5): `envs`, the key every version's JSON layout has."""
    envs = known_prefixes(ctx)
    if ctx.json:
        print(json.dumps({"envs": envs}, indent=2))
        return 0
    print("# conda environments:\n#")
    active = os.environ.get("CONDA_PREFIX")
    for p in envs:
        name = (
            "base" if p == str(ctx.root_prefix) else Path(p).name if Path(p).parent in ctx.envs_dirs else ""
        )
        print(f"{name:20} {'*' if p == active else ' '} {p}")
    return 0
