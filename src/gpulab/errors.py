"""Exit codes of the ``gpulab`` command and the errors that carry them.

The codes follow ansible-playbook's (``ansible.errors.ExitCode`` in ansible-core 2.19) where ansible's are
unambiguous; ansible uses 4 for both "a host was unreachable" and "parser error" (marked FIXME in its
source), so gpulab reports an unreachable host as 3. See docs/cli.md.
"""

from __future__ import annotations

import enum


class ExitCode(enum.IntEnum):
    OK = 0
    ERROR = 1  # the run failed without a host failure (ansible-playbook's GENERIC_ERROR)
    HOST_FAILED = 2  # ansible's HOST_FAILED
    HOST_UNREACHABLE = 3  # ansible uses 4, which it also uses for parser errors
    PARSE_ERROR = 4  # ansible's PARSER_ERROR: a playbook, inventory or vars file does not parse
    USAGE_ERROR = 5  # ansible's INVALID_CLI_OPTION: bad option, missing inventory, unknown host pattern
    INTERRUPTED = 99  # ansible's KEYBOARD_INTERRUPT (Ctrl-C, SIGTERM, SIGHUP)
    INTERNAL_ERROR = 250  # ansible's UNKNOWN_ERROR: a bug in gpulab or ansible-runner


# What each code means to a user: `gpulab --help` prints these, and docs/cli.md's table must say the same
# (tests/cli/test_cli.py compares them). `gpulab lab` and `gpulab demo` exit with the same codes.
MEANINGS: dict[ExitCode, str] = {
    ExitCode.OK: "every host ok",
    ExitCode.ERROR: "the run failed with no host failed or unreachable (e.g. an ansible error mid-run)",
    ExitCode.HOST_FAILED: "at least one host failed, none unreachable",
    ExitCode.HOST_UNREACHABLE: "at least one host unreachable (wins over 2, as in ansible-playbook)",
    ExitCode.PARSE_ERROR: "a playbook, inventory or -e @file does not parse",
    ExitCode.USAGE_ERROR: (
        "usage error: bad option or -e, missing or empty inventory, --limit matching no host;"
        " a lab that cannot start (podman missing, port taken, lab already up)"
    ),
    ExitCode.INTERRUPTED: (
        "interrupted by Ctrl-C, SIGTERM or SIGHUP: stopped between steps, or killed after --stop-timeout"
        " and cleaned up (the report is written, a demo's lab taken down)"
    ),
    ExitCode.INTERNAL_ERROR: "internal error in gpulab or ansible-runner (one line; -v for the traceback)",
}


class GpulabError(Exception):
    """An error shown to the user as one line, ending the command with ``code``."""

    code: ExitCode = ExitCode.ERROR

    def __init__(self, message: str, code: ExitCode | None = None) -> None:
        super().__init__(message)
        if code is not None:
            self.code = code

    @property
    def message(self) -> str:
        return str(self.args[0])


class UsageError(GpulabError):
    """The command line or the files it names are wrong (exit 5)."""

    code = ExitCode.USAGE_ERROR


class ParseError(GpulabError):
    """A file named on the command line does not parse (exit 4)."""

    code = ExitCode.PARSE_ERROR
