"""conda's error classes (the ones the simulated commands raise) and how conda prints them (facts §2.0)."""

from __future__ import annotations

import json
import sys
from typing import Any


class CondaError(Exception):
    """A handled conda error: `\\n<Class>: <msg>\\n` on stderr, rc 1; with --json conda's `dump_map` object
    on stdout (facts §2.0)."""

    return_code = 1
    module = "conda.exceptions"

    def __init__(self, message: str, **kwargs: Any) -> None:
        self.message = message
        self.kwargs = kwargs
        super().__init__(message)

    def __str__(self) -> str:
        return self.message % self.kwargs if self.kwargs else self.message

    def dump_map(self) -> dict[str, Any]:
        name = type(self).__name__
        return {
            "caused_by": "None",
            "error": f"{name}: {self}",
            "exception_name": name,
            "exception_type": f"<class '{self.module}.{name}'>",
            "message": str(self),
            **self.kwargs,
        }


class NotSimulated(CondaError):
    """A real conda command or flag the stand-in does not imitate: fail plainly, never pretend."""

    return_code = 2

    def __init__(self, what: str) -> None:
        super().__init__(f"gpulab stand-in: `conda {what}` is not simulated (see docs/standins.md)")


class CondaValueError(CondaError):
    pass


class CondaEnvException(CondaError):
    pass


class CommandNotFoundError(CondaError):
    pass


class EnvironmentLocationNotFound(CondaError):
    def __init__(self, location: str) -> None:
        super().__init__("Not a conda environment: %(location)s", location=location)


class EnvironmentNameNotFound(CondaError):
    def __init__(self, name: str) -> None:
        super().__init__(
            "Could not find conda environment: %(environment_name)s\n"
            "You can list all discoverable environments with `conda info --envs`.",
            environment_name=name,
        )


class EnvironmentFileNotFound(CondaError):
    def __init__(self, filename: str) -> None:
        super().__init__("'%(filename)s' file not found", filename=filename)


class EnvironmentFileInvalid(CondaError):
    pass


class NotWritableError(CondaError):
    def __init__(self, path: str, uid: int, gid: int) -> None:
        super().__init__(
            "The current user does not have write permissions to a required path.\n"
            "  path: %(path)s\n  uid: %(uid)s\n  gid: %(gid)s\n",
            path=path,
            uid=uid,
            gid=gid,
        )


class PackagesNotFoundError(CondaError):
    def __init__(self, packages: list[str], channel_urls: list[str]) -> None:
        super().__init__(
            "The following packages are not available from current channels:\n\n"
            + "".join(f"  - {p}\n" for p in packages)
            + "\nCurrent channels:\n\n"
            + "".join(f"  - {c}\n" for c in channel_urls)
            + "\nTo search for alternate channels that may provide the conda package you're\n"
            "looking for, navigate to\n\n    https://anaconda.org\n\n"
            "and use the search bar at the top of the page.\n"
        )
        self.kwargs = {"packages": packages, "channel_urls": channel_urls}

    def __str__(self) -> str:
        return self.message


class LibMambaUnsatisfiableError(CondaError):
    module = "conda_libmamba_solver.exceptions"


class CondaToSNonInteractiveError(CondaError):
    module = "conda_anaconda_tos.exceptions"


def print_error(exc: CondaError, as_json: bool) -> int:
    if isinstance(exc, NotSimulated):
        sys.stderr.write(f"{exc}\n")
    elif as_json:
        sys.stdout.write(json.dumps(exc.dump_map(), indent=2, sort_keys=True) + "\n")
    else:
        sys.stderr.write(f"\n{type(exc).__name__}: {exc}\n\n")
    return exc.return_code
