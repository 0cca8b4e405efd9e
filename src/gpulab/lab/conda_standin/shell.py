"""`conda shell.posix hook|activate|deactivate|reactivate`, `etc/profile.d/conda.sh` and `conda run`."""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
import tempfile
from pathlib import Path

from . import errors
from .context import Context
from .prefix import is_environment, state_vars

CONDA_SH_BODY = r"""
__conda_exe() (
    if [ -n "${_CE_M:+x}" ] && [ -n "${_CE_CONDA:+x}" ]; then
        "$CONDA_EXE" $_CE_M $_CE_CONDA "$@"
    else
        "$CONDA_EXE" "$@"
    fi
)

__conda_hashr() {
    if [ -n "${ZSH_VERSION:+x}" ]; then
        \rehash
    elif [ -n "${POSH_VERSION:+x}" ]; then
        :  # pass
    else
        \hash -r
    fi
}

__conda_activate() {
    \local ask_conda
    ask_conda="$(PS1="${PS1:-}" __conda_exe shell.posix "$@")" || \return
    \eval "$ask_conda"
    __conda_hashr
}

__conda_reactivate() {
    \local ask_conda
    ask_conda="$(PS1="${PS1:-}" __conda_exe shell.posix reactivate)" || \return
    \eval "$ask_conda"
    __conda_hashr
}

conda() {
    \local cmd="${1-__missing__}"
    case "$cmd" in
        activate|deactivate)
            __conda_activate "$@"
            ;;
        install|update|upgrade|remove|uninstall)
            __conda_exe "$@" || \return
            __conda_reactivate
            ;;
        *)
            __conda_exe "$@"
            ;;
    esac
}

if [ -z "${CONDA_SHLVL+x}" ]; then
    \export CONDA_SHLVL=0
    PATH="$(\dirname "$(\dirname "$CONDA_EXE")")/condabin${PATH:+":${PATH}"}"
    \export PATH
    if [ -z "${PS1+x}" ]; then
        PS1=
    fi
fi
"""


def _q(value: str) -> str:
    return "'" + value.replace("'", "'\"'\"'") + "'"


def exe_vars(ctx: Context) -> list[tuple[str, str]]:
    """`context.conda_exe_vars_dict` as conda.sh exports it (facts §1.6, by version)."""
    root = str(ctx.root_prefix)
    out = [("CONDA_EXE", f"{root}/bin/conda")]
    if ctx.v >= (25, 11):
        out.append(("_CONDA_EXE", f"{root}/bin/conda"))
    out += [("_CE_M", ""), ("_CE_CONDA", ""), ("CONDA_PYTHON_EXE", f"{root}/bin/python")]
    if ctx.v >= (25, 11):
        out.append(("_CONDA_ROOT", root))
    return out


def conda_sh(ctx: Context) -> str:
    exports = "".join(f"export {k}={_q(v)}\n" for k, v in exe_vars(ctx))
    return exports + CONDA_SH_BODY


def hook(ctx: Context) -> str:
    text = conda_sh(ctx)
    if ctx.auto_activate:
        text += "conda activate 'base'\n"
    return text


def resolve_env(ctx: Context, name_or_prefix: str) -> Path:
    if "/" in name_or_prefix:
        p = Path(os.path.abspath(os.path.expanduser(name_or_prefix)))
        if not is_environment(p):
            raise (
                errors.EnvironmentNameNotFound(str(p))
                if not p.is_dir()
                else errors.DirectoryNotACondaEnvironmentError(str(p))
            )
        return p
    if name_or_prefix in ("base", "root"):
        return ctx.root_prefix
    for d in ctx.envs_dirs:
        if is_environment(d / name_or_prefix):
            return d / name_or_prefix
    raise errors.EnvironmentNameNotFound(name_or_prefix)


def _env_name(ctx: Context, prefix: Path) -> str:
    if prefix == ctx.root_prefix:
        return "base"
    if any(prefix.parent == d for d in ctx.envs_dirs):
        return prefix.name
    return str(prefix)


def _strip_bin(path: str, prefix: str | None) -> list[str]:
    parts = [p for p in path.split(":") if p]
    if prefix:
        parts = [p for p in parts if p != f"{prefix}/bin"]
    return parts


def activate(ctx: Context, target: str) -> str:
    prefix = resolve_env(ctx, target)
    old_prefix = os.environ.get("CONDA_PREFIX")
    shlvl = int(os.environ.get("CONDA_SHLVL") or 0)
    old_mod = os.environ.get("CONDA_PROMPT_MODIFIER", "")
    ps1 = os.environ.get("PS1", "")
    if old_mod and ps1.startswith(old_mod):
        ps1 = ps1[len(old_mod) :]
    name = _env_name(ctx, prefix)
    mod = f"({name}) "
    path = [f"{prefix}/bin", *_strip_bin(os.environ.get("PATH", ""), old_prefix)]
    lines = [f"PS1={_q(mod + ps1)}", f"export PATH={_q(':'.join(path))}"]
    if old_prefix and shlvl >= 1:
        lines.append(f"export CONDA_PREFIX_{shlvl}={_q(old_prefix)}")
    lines += [
        f"export CONDA_PREFIX={_q(str(prefix))}",
        f"export CONDA_SHLVL='{shlvl + 1}'",
        f"export CONDA_DEFAULT_ENV={_q(name)}",
        f"export CONDA_PROMPT_MODIFIER={_q(mod)}",
    ]
    lines += [f"export {k}={_q(v)}" for k, v in exe_vars(ctx)]
    lines += [f"export {k}={_q(v)}" for k, v in state_vars(prefix).items()]
    return "\n".join(lines) + "\n"


def deactivate(ctx: Context) -> str:
    old_prefix = os.environ.get("CONDA_PREFIX")
    shlvl = int(os.environ.get("CONDA_SHLVL") or 0)
    if not old_prefix or shlvl <= 0:
        return ""
    old_mod = os.environ.get("CONDA_PROMPT_MODIFIER", "")
    ps1 = os.environ.get("PS1", "")
    if old_mod and ps1.startswith(old_mod):
        ps1 = ps1[len(old_mod) :]
    path = _strip_bin(os.environ.get("PATH", ""), old_prefix)
    lines = [f"export PATH={_q(':'.join(path))}"]
    lines += [f"unset {k}" for k in state_vars(Path(old_prefix))]
    back = os.environ.get(f"CONDA_PREFIX_{shlvl - 1}") if shlvl > 1 else None
    if back:
        prefix = Path(back)
        name = _env_name(ctx, prefix)
        mod = f"({name}) "
        path = [f"{prefix}/bin", *path]
        lines = [
            f"export PATH={_q(':'.join(path))}",
            f"PS1={_q(mod + ps1)}",
            f"unset CONDA_PREFIX_{shlvl - 1}",
            f"export CONDA_PREFIX={_q(back)}",
            f"export CONDA_DEFAULT_ENV={_q(name)}",
            f"export CONDA_PROMPT_MODIFIER={_q(mod)}",
        ]
    else:
        lines += [
            "unset CONDA_PREFIX",
            "unset CONDA_DEFAULT_ENV",
            "unset CONDA_PROMPT_MODIFIER",
            f"PS1={_q(ps1)}",
        ]
    lines.append(f"export CONDA_SHLVL='{shlvl - 1}'")
    return "\n".join(lines) + "\n"


def run(ctx: Context, prefix: Path, argv: list[str], capture: bool, cwd: str | None) -> int:
    """`conda run` (facts §2.8): a temp script `eval hook; conda activate; cmd`, run with bash."""
    conda_exe = os.environ.get("CONDA_EXE") or f"{ctx.root_prefix}/bin/conda"
    script = (
        "\n".join(
            [
                f'eval "$(CONDA_AUTO_ACTIVATE=false {shlex.join([conda_exe, "shell.posix", "hook"])})"',
                shlex.join(["conda", "activate", str(prefix)]),
                shlex.join(argv),
            ]
        )
        + "\n"
    )
    fd, path = tempfile.mkstemp(prefix="tmp", suffix="", text=True)
    with os.fdopen(fd, "w") as fh:
        fh.write(script)
    shell = "/bin/bash" if Path("/bin/bash").exists() else "/bin/sh"
    env = dict(os.environ)
    try:
        sys.stdout.flush()
        if capture:
            proc = subprocess.run(
                [shell, path], capture_output=True, cwd=cwd, env=env, input=b"", check=False
            )
            end = "" if ctx.v >= (26, 1) else "\n"
            if proc.stdout:
                sys.stdout.write(proc.stdout.decode(errors="replace") + end)
                sys.stdout.flush()
            if proc.stderr:
                sys.stderr.write(proc.stderr.decode(errors="replace") + end)
                sys.stderr.flush()
            rc = proc.returncode
        else:
            rc = subprocess.run([shell, path], cwd=cwd, env=env, check=False).returncode
    finally:
        if not os.environ.get("CONDA_TEST_SAVE_TEMPS"):
            os.unlink(path)
    if rc != 0:
        sys.stderr.write(
            f"ERROR conda.cli.main_run:execute(127): `conda run {shlex.join(argv)}` failed. "
            "(See above for error)\n"
        )
    return rc
