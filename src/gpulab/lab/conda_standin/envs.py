"""`conda env create|update|remove`, `list`, `rename`: real venvs, pip, recorded conda-only packages."""

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
from .context import SUBDIR, Context, channel_url, faults
from .prefix import (
    STANDIN_NOTE,
    append_history,
    conda_records,
    dist_fields,
    history_block,
    is_environment,
    list_packages,
    make_record,
    register_env,
    site_packages,
    unregister_env,
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
INVALID_NAME_CHARS = ("/", " ", ":", "#")


class LibMambaUnsatisfiableError(errors.CondaError):
    module = "conda_libmamba_solver.exceptions"


@dataclass
class EnvFile:
    path: Path
    name: str | None = None
    channels: list[str] = field(default_factory=list)
    conda_deps: list[str] = field(default_factory=list)
    pip_deps: list[str] = field(default_factory=list)
    variables: dict[str, Any] = field(default_factory=dict)


def say(ctx: Context, text: str = "", end: str = "\n") -> None:
    if not ctx.json and not getattr(ctx, "quiet", False):
        sys.stdout.write(text + end)
        sys.stdout.flush()


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
    if not isinstance(data, dict):
        raise errors.EnvironmentFileInvalid("Provided environment.yaml is invalid: not a mapping")
    bad = [k for k in data if k not in VALID_KEYS]
    if bad:
        sys.stderr.write(
            f"EnvironmentSectionNotValid: The following section on '{path}' is invalid and will be ignored:\n"
            + "".join(f" - {k}\n" for k in bad)
        )
    if "dependencies" not in data:
        raise errors.EnvironmentFileInvalid(
            "Provided environment.yaml is invalid: Missing required field 'dependencies'"
        )
    env = EnvFile(path=path, name=str(data["name"]) if data.get("name") else None)
    env.channels = [str(c) for c in data.get("channels") or []]
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


# -- targets ---------------------------------------------------------------------------------------
def validate_name(ctx: Context, name: str) -> None:
    if name in ("base", "root"):
        raise errors.CondaValueError(f"'{name}' is a reserved environment name")
    bad = [c for c in INVALID_NAME_CHARS if c in name]
    if bad:
        raise errors.CondaValueError(
            f"Invalid environment name: {name!r}\n  Characters not allowed: {INVALID_NAME_CHARS}"
        )


def locate_name(ctx: Context, name: str) -> Path:
    """Name -> prefix (facts §2.0): an existing env in any envs dir, else first writable envs dir."""
    if name in ("base", "root"):
        return ctx.root_prefix
    for d in ctx.envs_dirs:
        if (d / name).is_dir():
            return d / name
    return ctx.first_writable_envs_dir() / name


def target_from_args(ctx: Context, name: str | None, prefix: str | None) -> Path | None:
    if prefix:
        return Path(os.path.abspath(os.path.expanduser(prefix)))
    if name:
        return locate_name(ctx, name)
    return None


def display_target(ctx: Context, prefix: Path, name: str | None) -> str:
    return name if name and not name.startswith("/") else str(prefix)


# -- installation ----------------------------------------------------------------------------------
def bundled_pip_wheel(ctx: Context) -> Path:
    wheels = sorted((ctx.root_prefix / "lib" / "gpulab-standin" / "wheels").glob("pip-*.whl"))
    if not wheels:
        raise errors.CondaError("stand-in: the bundled pip wheel is missing from the base prefix")
    return wheels[-1]


def install_wheel_files(prefix: Path, wheel: Path) -> tuple[str, str]:
    """Install a pure-Python wheel by unpacking it (how the bundled pip lands in an env)."""
    sp = site_packages(prefix)
    assert sp is not None
    with zipfile.ZipFile(wheel) as zf:
        zf.extractall(sp)
    name, version = wheel.name.split("-")[:2]
    info = sp / f"{name}-{version}.dist-info"
    (info / "INSTALLER").write_text("conda\n", encoding="utf-8")
    eps = info / "entry_points.txt"
    if eps.is_file():
        section = ""
        for line in eps.read_text(encoding="utf-8").splitlines():
            line = line.strip()
            if line.startswith("["):
                section = line
                continue
            if section == "[console_scripts]" and "=" in line:
                script, target = (x.strip() for x in line.split("=", 1))
                module, func = target.split(":")
                path = prefix / "bin" / script
                path.write_text(
                    f"#!{prefix}/bin/python\nimport sys\nfrom {module} import {func}\n"
                    f"if __name__ == '__main__':\n    sys.exit({func}())\n",
                    encoding="utf-8",
                )
                path.chmod(0o755)
    return name, version


def make_venv(prefix: Path) -> None:
    """A real Python environment of the base interpreter (`python3 -m venv --without-pip`)."""
    venv.EnvBuilder(with_pip=False, symlinks=True).create(str(prefix))
    for name in ("activate", "activate.csh", "activate.fish", "Activate.ps1"):
        (prefix / "bin" / name).unlink(missing_ok=True)


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
    names = re.findall(r"No matching distribution found for ([^\s]+)", output)
    names += re.findall(r"Could not find a version that satisfies the requirement ([^\s]+)", output)
    out: list[str] = []
    for n in names:
        if n not in out:
            out.append(n)
    return out


def effective_channels(ctx: Context, env: EnvFile) -> list[str]:
    file_chans = [c for c in env.channels if c != "nodefaults"]
    configured = [] if "nodefaults" in env.channels else ctx.channels
    out: list[str] = []
    for c in file_chans + configured:
        if c not in out:
            out.append(c)
    return out


def _channel_for(ctx: Context, spec: specs.Spec, chans: list[str]) -> str:
    chan = spec.channel or (chans[0] if chans else "conda-forge")
    if chan == "defaults":
        return ctx.default_channels[0]
    return channel_url(chan)


@dataclass
class Result:
    link: list[dict[str, Any]] = field(default_factory=list)
    unlink: list[dict[str, Any]] = field(default_factory=list)
    pip: list[str] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        return bool(self.link or self.unlink or self.pip)


def install_env(
    ctx: Context, prefix: Path, env: EnvFile, cmd_line: str, fault_key: str, prune: bool = False
) -> Result:
    """Solve + "transaction" + pip step. A failed transaction rolls back a prefix it created."""
    chans = effective_channels(ctx, env)
    chan_urls = ctx.channel_base_urls(chans)
    parsed = [specs.parse(d) for d in env.conda_deps]
    active = faults()
    say(ctx, "Channels:\n" + "".join(f" - {c}\n" for c in chans) + f"Platform: {SUBDIR}")
    say(ctx, "Collecting package metadata (repodata.json): done")
    host_py = ".".join(str(x) for x in sys.version_info[:3])
    missing = [s.text for s in parsed if s.name == "python" and not specs.version_matches(s.version, host_py)]
    if not chan_urls:
        missing = [s.text for s in parsed] or missing
    if missing:
        say(ctx, "Solving environment: failed\n")
        raise errors.PackagesNotFoundError(
            missing, [f"{u}/{s}" for u in chan_urls for s in (SUBDIR, "noarch")]
        )
    if f"{fault_key}=solve" in active:
        say(ctx, "Solving environment: failed\n")
        first = next((s.text for s in parsed if s.conda_only), parsed[0].text if parsed else "python")
        raise LibMambaUnsatisfiableError(
            "Could not solve for environment specs\nThe following package could not be installed\n"
            f"\u2514\u2500 {first} is not installable because it requires\n"
            "   \u2514\u2500 __cuda, which is missing on the system."
        )
    created_here = not is_environment(prefix)
    existed_before = prefix.exists()
    result = Result()
    old = {r["name"]: r for r in conda_records(prefix)}
    try:
        if not (prefix / "pyvenv.cfg").is_file():
            make_venv(prefix)
        new_records: list[dict[str, Any]] = []
        py = next((s for s in parsed if s.name == "python"), None)
        new_records.append(
            make_record(
                "python",
                host_py,
                _channel_for(ctx, py or specs.parse("python"), chans),
                noarch=False,
                note="gpulab stand-in record: the host's python3 interpreter through a venv",
                spec=py.text if py else "python",
            )
        )
        want_pip = any(s.name == "pip" for s in parsed) or bool(env.pip_deps)
        pip_reqs = [s for s in parsed if s.name not in ("python", "pip") and not s.conda_only]
        if want_pip or pip_reqs:
            sp = site_packages(prefix)
            if sp is None or not list(sp.glob("pip-*.dist-info")):
                _, version = install_wheel_files(prefix, bundled_pip_wheel(ctx))
            else:
                version = next(sp.glob("pip-*.dist-info")).name.split("-")[1].removesuffix(".dist")
            pip_spec = next((s for s in parsed if s.name == "pip"), specs.parse("pip"))
            new_records.append(
                make_record(
                    "pip",
                    version,
                    _channel_for(ctx, pip_spec, chans),
                    noarch=True,
                    note="gpulab stand-in record: pip unpacked from the wheel bundled in the installer",
                    spec=pip_spec.text,
                )
            )
        for s in parsed:
            if s.conda_only:
                new_records.append(
                    make_record(
                        s.name,
                        s.record_version(),
                        _channel_for(ctx, s, chans),
                        noarch=s.name in specs.NOARCH,
                        note=STANDIN_NOTE,
                        spec=s.text,
                    )
                )
        # The "solve" of the non-conda-only packages is pip's resolver, run before the plan is shown.
        if pip_reqs:
            proc = run_pip(prefix, ["install", *[s.pip_requirement() for s in pip_reqs]])
            if proc.returncode != 0:
                say(ctx, "Solving environment: failed\n")
                gone = _not_found(proc.stdout + proc.stderr)
                if gone:
                    by_name = {specs.parse(s.pip_requirement()).name.lower(): s.text for s in pip_reqs}
                    texts = [by_name.get(specs.parse(g).name.lower(), g) for g in gone]
                    raise errors.PackagesNotFoundError(
                        texts, [f"{u}/{s}" for u in chan_urls for s in (SUBDIR, "noarch")]
                    )
                raise errors.CondaError(
                    f"stand-in: pip could not install the conda dependencies:\n{proc.stderr.strip()}"
                )
            result.pip += _successfully_installed(proc.stdout)
        say(ctx, "Solving environment: done")
        changed = [
            r
            for r in new_records
            if r["name"] not in old
            or (r["version"], r["channel"]) != (old[r["name"]]["version"], old[r["name"]]["channel"])
        ]
        if changed:
            _print_plan(ctx, prefix, env.conda_deps, changed)
        if f"{fault_key}=interrupt" in active:
            for rec in changed[: max(1, len(changed) // 2)]:
                write_record(prefix, rec)
            sys.stdout.flush()
            os.kill(os.getpid(), signal.SIGKILL)
        for rec in changed:
            if rec["name"] in old:
                result.unlink.append(old[rec["name"]])
            write_record(prefix, rec)
        result.link = changed
        if prune:
            keep = {r["name"] for r in new_records}
            for name, rec in old.items():
                if name not in keep:
                    for path in (prefix / "conda-meta").glob(f"{name}-{rec['version']}-{rec['build']}.json"):
                        path.unlink()
                    result.unlink.append(rec)
        if created_here or result.link or result.unlink or result.pip:
            append_history(prefix, history_block(ctx, cmd_line, result.link, result.unlink, env.conda_deps))
        say(ctx, "Preparing transaction: done\nVerifying transaction: done\nExecuting transaction: done")
    except BaseException:
        if created_here and not existed_before:
            shutil.rmtree(prefix, ignore_errors=True)
        raise
    register_env(prefix)
    if env.pip_deps:
        result.pip += _pip_section(ctx, prefix, env, active, fault_key)
    if env.variables:
        write_state_vars(prefix, env.variables, merge=True)
    return result


def dry_run(ctx: Context, prefix: Path, env: EnvFile) -> None:
    """`--dry-run`: the solve checks and the plan, nothing written; ends in DryRunExit (rc 0)."""
    chans = effective_channels(ctx, env)
    chan_urls = ctx.channel_base_urls(chans)
    parsed = [specs.parse(d) for d in env.conda_deps]
    say(ctx, "Channels:\n" + "".join(f" - {c}\n" for c in chans) + f"Platform: {SUBDIR}")
    say(ctx, "Collecting package metadata (repodata.json): done")
    host_py = ".".join(str(x) for x in sys.version_info[:3])
    missing = [s.text for s in parsed if s.name == "python" and not specs.version_matches(s.version, host_py)]
    if missing or not chan_urls:
        say(ctx, "Solving environment: failed\n")
        raise errors.PackagesNotFoundError(
            missing or [s.text for s in parsed], [f"{u}/{s}" for u in chan_urls for s in (SUBDIR, "noarch")]
        )
    say(ctx, "Solving environment: done")
    recs = [
        make_record(
            s.name,
            host_py if s.name == "python" else s.record_version(),
            _channel_for(ctx, s, chans),
            noarch=s.name in specs.NOARCH,
            note=STANDIN_NOTE,
            spec=s.text,
        )
        for s in parsed
        if s.conda_only or s.name == "python"
    ]
    _print_plan(ctx, prefix, env.conda_deps, recs)
    if ctx.json:
        actions = {"FETCH": [], "LINK": [dist_fields(r) for r in recs], "PREFIX": str(prefix), "UNLINK": []}
        print(
            json.dumps(
                {"actions": actions, "dry_run": True, "prefix": str(prefix), "success": True},
                indent=2,
                sort_keys=ctx.sort_json(),
            )
        )
    raise errors.DryRunExit()


def _successfully_installed(out: str) -> list[str]:
    m = re.search(r"^Successfully installed (.+)$", out, re.M)
    return m.group(1).split() if m else []


def _print_plan(ctx: Context, prefix: Path, spec_texts: list[str], recs: list[dict[str, Any]]) -> None:
    say(ctx, "\n## Package Plan ##\n")
    say(ctx, f"  environment location: {prefix}\n")
    say(ctx, "  added / updated specs:")
    for s in spec_texts:
        say(ctx, f"    - {s}")
    say(ctx, "\n\nThe following NEW packages will be INSTALLED:\n")
    for r in recs:
        d = dist_fields(r)
        say(ctx, f"  {r['name']:<18} {d['channel']}/{d['platform']}::{d['dist_name']}")
    say(ctx, "\n")


def _pip_section(ctx: Context, prefix: Path, env: EnvFile, active: set[str], fault_key: str) -> list[str]:
    """The `pip:` step (conda-facts §2.1): the entries joined by newlines into a requirements file next to the
    env file, `pip install -U -r ... --exists-action=b` run in that directory (else in conda's own cwd)."""
    workdir = env.path.parent if os.access(env.path.parent, os.W_OK) else None
    where = workdir or Path(tempfile.gettempdir())
    fd, req = tempfile.mkstemp(prefix="condaenv.", suffix=".requirements.txt", dir=where, text=True)
    with os.fdopen(fd, "w") as fh:
        fh.write("\n".join(env.pip_deps) + "\n")
    args = ["install", "-U", "-r", req, "--exists-action=b"]
    say(ctx, "Installing pip dependencies: ...working... ", end="")
    try:
        if f"{fault_key}=pip" in active:
            proc = subprocess.CompletedProcess(
                args, 1, "", "ERROR: (gpulab stand-in fault env-create=pip) simulated pip failure\n"
            )
        else:
            proc = run_pip(prefix, args, cwd=workdir)
    finally:
        os.unlink(req)
    say(ctx, f"Ran pip subprocess with arguments:\n{[str(prefix / 'bin' / 'python'), '-m', 'pip', *args]}")
    say(ctx, f"Pip subprocess output:\n{proc.stdout}")
    if proc.returncode != 0:
        say(ctx, f"Pip subprocess error:\n{proc.stderr}")
        say(ctx, "failed")
        raise errors.CondaEnvException("Pip failed")
    say(ctx, "done")
    return _successfully_installed(proc.stdout)


def print_result(ctx: Context, prefix: Path, result: Result, shown: str, fresh: bool) -> None:
    """`print_result` (facts §2.1): the activation banner, or the JSON actions object."""
    if ctx.json:
        if not result.changed and not fresh:
            out: dict[str, Any] = {"message": "All requested packages already installed.", "success": True}
        else:
            actions: dict[str, Any] = {
                "FETCH": [],
                "LINK": [dist_fields(r) for r in result.link],
                "PREFIX": str(prefix),
                "UNLINK": [dist_fields(r) for r in result.unlink],
            }
            if result.pip:
                actions["PIP"] = result.pip
            out = {"actions": actions, "prefix": str(prefix), "success": True}
        print(json.dumps(out, indent=2, sort_keys=ctx.sort_json()))
        return
    say(
        ctx,
        "#\n# To activate this environment, use\n#\n"
        f"#     $ conda activate {shown}\n#\n"
        "# To deactivate an active environment, use\n#\n#     $ conda deactivate\n",
    )


# -- commands --------------------------------------------------------------------------------------
def env_create(ctx: Context, args: Any, cmd_line: str) -> int:
    from . import tos

    tos.gate(ctx, "env_create", args.yes)
    env = load_env_file(args.file)
    name = args.name or (None if args.prefix else env.name)
    if name and not args.prefix and name not in ("base", "root"):
        validate_name(ctx, name)
    prefix = target_from_args(ctx, name, args.prefix)
    if prefix is None:
        if ctx.v >= (25, 0):
            raise errors.CondaEnvException(
                "Unable to create environment\n"
                "Please re-run this command with one of the following options:\n\n"
                "* Provide an environment name via --name or -n\n"
                "* Provide a path on disk via --prefix or -p\n"
            )
        prefix = ctx.root_prefix
    if prefix == ctx.root_prefix:
        if ctx.v >= (25, 0):
            raise errors.CondaValueError("'base' is a reserved environment name")
        raise errors.CondaValueError(f"prefix already exists: {prefix}")
    if (args.yes or ctx.always_yes) and prefix.exists():
        shutil.rmtree(prefix)
        unregister_env(prefix)
    if prefix.exists() and ctx.v < (25, 5) and (prefix / "conda-meta").is_dir():
        raise errors.CondaValueError(f"prefix already exists: {prefix}")
    if prefix.exists() and not os.access(prefix, os.W_OK):
        raise errors.EnvironmentNotWritableError(str(prefix), os.geteuid(), os.getegid())
    fresh = not is_environment(prefix)
    if args.dry_run:
        dry_run(ctx, prefix, env)
    result = install_env(ctx, prefix, env, cmd_line, "env-create")
    print_result(
        ctx, prefix, result, display_target(ctx, prefix, args.name or (None if args.prefix else name)), fresh
    )
    return 0


def env_update(ctx: Context, args: Any, cmd_line: str) -> int:
    from . import tos

    tos.gate(ctx, "env_update", False)
    env = load_env_file(args.file)
    name = args.name or (None if args.prefix else env.name)
    prefix = target_from_args(ctx, name, args.prefix)
    if prefix is None and os.environ.get("CONDA_DEFAULT_ENV"):
        prefix = target_from_args(ctx, os.environ["CONDA_DEFAULT_ENV"], None)
    if prefix is None:
        raise errors.CondaEnvException(
            "Unable to determine environment\n\n"
            "Please re-run this command with one of the following options:\n\n"
            "* Provide an environment name via --name or -n\n"
            "* Re-run this command inside an activated conda environment."
        )
    if prefix.exists() and not os.access(prefix, os.W_OK):
        raise errors.EnvironmentNotWritableError(str(prefix), os.geteuid(), os.getegid())
    fresh = not is_environment(prefix)
    result = install_env(ctx, prefix, env, cmd_line, "env-update", prune=args.prune)
    print_result(
        ctx, prefix, result, display_target(ctx, prefix, args.name or (None if args.prefix else name)), fresh
    )
    return 0


def existing_env(ctx: Context, name: str | None, prefix_arg: str | None) -> Path:
    prefix = target_from_args(ctx, name, prefix_arg)
    if prefix is None:
        prefix = Path(os.environ.get("CONDA_PREFIX") or ctx.root_prefix)
    if not is_environment(prefix):
        if prefix.is_dir() and ctx.v >= (25, 0) and any(prefix.iterdir()):
            raise errors.DirectoryNotACondaEnvironmentError(str(prefix))
        raise errors.EnvironmentLocationNotFound(str(prefix))
    return prefix


def env_remove(ctx: Context, args: Any, cmd_line: str) -> int:
    """`conda env remove` (facts §2.3)."""
    from . import tos

    tos.gate(ctx, "env_remove", args.yes)
    prefix = target_from_args(ctx, args.name, args.prefix)
    if prefix is None or prefix == ctx.root_prefix:
        raise errors.CondaEnvironmentError("cannot remove root environment, add -n NAME or -p PREFIX option")
    prefix = existing_env(ctx, args.name, args.prefix)
    if os.environ.get("CONDA_PREFIX") == str(prefix):
        raise errors.CondaEnvironmentError(
            "Cannot remove current environment. Deactivate and run conda remove again"
        )
    if not os.access(prefix, os.W_OK) or not os.access(prefix.parent, os.W_OK):
        raise errors.EnvironmentNotWritableError(str(prefix), os.geteuid(), os.getegid())
    recs = conda_records(prefix)
    yes = args.yes or ctx.always_yes or ctx.json
    say(ctx, f"\nRemove all packages in environment {prefix}:\n")
    if not ctx.json:
        say(ctx, "\n## Package Plan ##\n")
        say(ctx, f"  environment location: {prefix}\n\n")
        say(ctx, "The following packages will be REMOVED:\n")
        for r in recs:
            say(ctx, f"  {r['name']}-{r['version']}-{r['build']}")
        say(ctx, "\n")
    if not yes and not _confirm("Proceed", default_yes=True):
        raise errors.CondaSystemExit("Exiting.")
    for path in (prefix / "conda-meta").glob("*.json"):
        path.unlink()
    for sub in ("lib", "bin", "include", "lib64"):
        p = prefix / sub
        if p.is_symlink() or p.is_file():
            p.unlink()
        elif p.is_dir():
            shutil.rmtree(p, ignore_errors=True)
    if not yes and not _confirm(
        f"Everything found within the environment ({prefix}), including any conda environment configurations "
        "and any non-conda files, will be deleted. Do you wish to continue?\n",
        default_yes=False,
    ):
        raise errors.CondaSystemExit("Exiting.")
    shutil.rmtree(prefix, ignore_errors=True)
    unregister_env(prefix)
    if ctx.json:
        out = {
            "actions": {
                "FETCH": [],
                "LINK": [],
                "PREFIX": str(prefix),
                "UNLINK": [dist_fields(r) for r in recs],
            },
            "prefix": str(prefix),
            "success": True,
        }
        print(json.dumps(out, indent=2, sort_keys=ctx.sort_json()))
    return 0


def _confirm(message: str, default_yes: bool) -> bool:
    """confirm_yn (facts §2.0): prompt on stdout, EOF or empty line picks the default."""
    sys.stdout.write(f"{message} {'([y]/n)' if default_yes else '(y/[n])'}? ")
    sys.stdout.flush()
    answer = sys.stdin.readline().strip().lower()
    sys.stdout.write("\n")
    if not answer:
        return default_yes
    return answer in ("y", "yes")


def list_cmd(ctx: Context, args: Any) -> int:
    """`conda list` (facts §2.7)."""
    prefix = existing_env(ctx, args.name, args.prefix)
    items = list_packages(prefix)
    if args.regex:
        rx = re.compile(args.regex)
        items = [i for i in items if rx.search(i["name"])]
        if not items and ctx.v >= (25, 9):
            raise errors.CondaValueError(f"No packages match '{args.regex}'.")
    if ctx.json:
        print(json.dumps(items, indent=2, sort_keys=ctx.sort_json()))
        return 0
    print(f"# packages in environment at {prefix}:\n#")
    print(f"# {'Name':<23} {'Version':<15} {'Build':>15}  Channel")
    for i in items:
        print(f"{i['name']:<25} {i['version']:<15} {i['build_string']:>15}  {i['channel']}")
    return 0


def rename_cmd(ctx: Context, args: Any, cmd_line: str) -> int:
    """`conda rename` (facts §2.4): clone to the destination, then remove the source."""
    from . import tos

    tos.gate(ctx, "rename", args.yes)
    src = target_from_args(ctx, args.name, args.prefix)
    if src is None:
        raise errors.CondaEnvException("No environment given: use -n NAME or -p PATH")
    if src == ctx.root_prefix:
        raise errors.CondaEnvException("The 'base' environment cannot be renamed")
    if not is_environment(src):
        if ctx.v >= (25, 5):
            raise errors.EnvironmentLocationNotFound(str(src))
        raise errors.CondaEnvException("The environment you have specified does not exist.")
    if os.environ.get("CONDA_PREFIX") == str(src):
        raise errors.CondaEnvException("Cannot rename the active environment")
    if "/" in args.destination:
        dest = Path(os.path.abspath(os.path.expanduser(args.destination)))
    else:
        validate_name(ctx, args.destination)
        dest = ctx.first_writable_envs_dir() / args.destination
    if dest.exists() and not args.yes:
        shown = str(dest) if ctx.v >= (25, 0) else dest.name
        raise errors.CondaEnvException(f"The environment '{shown}' already exists. Override with --yes.")
    if args.dry_run:
        print(f"Dry run action: clone {src},{dest}")
        print(f"Dry run action: rm_rf {src}")
        return 0
    if dest.exists():
        shutil.rmtree(dest)
    shutil.copytree(src, dest, symlinks=True)
    for script in (dest / "bin").iterdir():
        if script.is_file() and not script.is_symlink():
            try:
                text = script.read_text(encoding="utf-8")
            except (UnicodeDecodeError, OSError):
                continue
            if text.startswith(f"#!{src}/"):
                script.write_text(text.replace(f"#!{src}/", f"#!{dest}/", 1), encoding="utf-8")
    cfg = dest / "pyvenv.cfg"
    if cfg.is_file():
        cfg.write_text(cfg.read_text(encoding="utf-8").replace(str(src), str(dest)), encoding="utf-8")
    append_history(dest, history_block(ctx, cmd_line, [], [], []))
    shutil.rmtree(src)
    unregister_env(src)
    register_env(dest)
    return 0


def env_export(ctx: Context, args: Any) -> int:
    """`conda env export [-n|-p] [--no-builds] [--from-history] [--json]` (YAML: name, channels, dependencies
    with a nested `pip:` list, variables, prefix)."""
    from .context import channel_display_name
    from .prefix import norm_name, pip_dists, record_base_url, state_vars

    prefix = existing_env(ctx, args.name, args.prefix)
    recs = sorted(conda_records(prefix), key=lambda r: r["name"])
    channels: list[str] = []
    for r in recs:
        base = record_base_url(r)
        chan = "defaults" if base in ctx.default_channels else channel_display_name(base)
        if chan not in channels:
            channels.append(chan)
    deps: list[Any]
    if args.from_history:
        deps = []
        for line in (prefix / "conda-meta" / "history").read_text(encoding="utf-8").splitlines():
            if line.startswith("# update specs: "):
                for s in json.loads(line.split(": ", 1)[1]):
                    name = specs.parse(s).name
                    deps = [d for d in deps if specs.parse(d).name != name] + [s]
    else:
        deps = [f"{r['name']}={r['version']}" + ("" if args.no_builds else f"={r['build']}") for r in recs]
        conda_names = {norm_name(r["name"]) for r in recs}
        pips = [f"{norm_name(n)}=={v}" for n, v in pip_dists(prefix) if norm_name(n) not in conda_names]
        if pips:
            deps.append({"pip": pips})
    name = prefix.name if prefix != ctx.root_prefix else "base"
    out: dict[str, Any] = {"name": name, "channels": channels, "dependencies": deps}
    variables = state_vars(prefix)
    if variables:
        out["variables"] = variables
    out["prefix"] = str(prefix)
    if ctx.json:
        print(json.dumps(out, indent=2, sort_keys=ctx.sort_json()))
        return 0
    import yaml

    class _Dumper(yaml.SafeDumper):  # type: ignore[misc]
        def increase_indent(self, flow: bool = False, indentless: bool = False) -> Any:
            return super().increase_indent(flow, False)

    sys.stdout.write(yaml.dump(out, Dumper=_Dumper, default_flow_style=False, sort_keys=False, indent=2))
    return 0
