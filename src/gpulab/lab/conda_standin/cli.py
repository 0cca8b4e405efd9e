"""The stand-in `conda` command line: exactly the commands and flags gpulab's roles, scenarios and lab call.

Simulated: `--version`, `env create --file F --prefix P`, `env list --json`, `list --prefix P --json`,
`run -n N|-p P CMD...`, `config --show KEY... --json`, `shell.posix activate ENV` (what `conda activate`
of `etc/profile.d/conda.sh` runs) and, in Miniconda's base, `tos accept --override-channels --channel URL
--system`. Any other command, flag or form exits 2 with "gpulab stand-in: `conda X` is not simulated".
"""

from __future__ import annotations

import argparse
import itertools
import json
import re
import shlex
import sys
from typing import Any, NoReturn

from . import CondaError, envs, not_simulated, shell, tos
from .context import Context, load_context


class _Unsimulated(Exception):
    """Raised by the parser for a command, flag or form it does not know; main() names it."""


class Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        if re.search(r"invalid choice: '?tos\b", message):  # Miniforge has no ToS plugin (conda-facts §5.3)
            raise CondaError("No command 'conda tos'.", "CommandNotFoundError")
        raise _Unsimulated(message)


def build_parser(ctx: Context) -> Parser:
    parser = Parser(prog="conda", description="conda (gpulab offline stand-in)", allow_abbrev=False)
    parser.add_argument("-V", "--version", action="version", version=f"conda {ctx.conda_version}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser, required=True)

    def command(parent: Any, name: str, *flags: str) -> Parser:
        p: Parser = parent.add_parser(name, allow_abbrev=False)
        for flag in flags:
            p.add_argument(flag, action="store_true", required=True)
        return p

    command(sub, "list", "--json").add_argument("-p", "--prefix", required=True)
    run = command(sub, "run")
    target = run.add_mutually_exclusive_group(required=True)
    target.add_argument("-n", "--name")
    target.add_argument("-p", "--prefix")
    run.add_argument("argv", nargs=argparse.REMAINDER)
    command(sub, "config", "--json").add_argument("--show", nargs="+", metavar="KEY", required=True)
    env = sub.add_parser("env").add_subparsers(
        dest="env", metavar="COMMAND", parser_class=Parser, required=True
    )
    create = command(env, "create")
    create.add_argument("-f", "--file", required=True)
    create.add_argument("-p", "--prefix", required=True)
    command(env, "list", "--json")
    activate = command(sub, "shell.posix")
    activate.add_argument("action", choices=["activate"])
    activate.add_argument("target")
    if ctx.flavor == "miniconda":  # the conda-anaconda-tos plugin ships in Miniconda's base only (facts §5)
        t_sub = sub.add_parser("tos").add_subparsers(
            dest="tos", metavar="COMMAND", parser_class=Parser, required=True
        )
        accept = command(t_sub, "accept", "--override-channels", "--system")
        accept.add_argument("-c", "--channel", action="append", required=True)
    return parser


def config_show(ctx: Context, keys: list[str]) -> int:
    """`conda config --show KEY... --json` (facts §2.9): the merged `.condarc` values, sorted."""
    shown = {**ctx.rc, "channels": ctx.channels}
    if [k for k in keys if k not in shown]:
        raise CondaError(f"Key(s) not found: {[k for k in keys if k not in shown]}", "CondaValueError")
    print(json.dumps({k: shown[k] for k in keys}, indent=2, sort_keys=True))
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    ctx = load_context()
    try:
        try:
            a = build_parser(ctx).parse_args(argv)
        except _Unsimulated as exc:
            words = list(itertools.takewhile(lambda w: not w.startswith("-"), argv[:2]))
            extra = re.search(r"unrecognized arguments: (\S+)|required: (.+)", str(exc))
            if extra:
                words.append(extra.group(1) or f"without {extra.group(2)}")
            raise not_simulated(" ".join(words)) from None
        except SystemExit as exc:
            return int(exc.code or 0)
        if a.command == "list":
            return envs.list_cmd(ctx, a.prefix)
        if a.command == "run":
            return shell.run(ctx, shell.find_env(ctx, a.name, a.prefix), a.argv)
        if a.command == "config":
            return config_show(ctx, a.show)
        if a.command == "shell.posix":
            return shell.activate(ctx, a.target)
        if a.command == "tos":
            return tos.accept(ctx, a.channel)
        if a.env == "create":
            return envs.env_create(ctx, a.file, a.prefix, shlex.join([f"{ctx.root_prefix}/bin/conda", *argv]))
        return envs.env_list(ctx)
    except CondaError as exc:
        return exc.print()
    except BrokenPipeError:
        return 1
