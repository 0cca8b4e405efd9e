"""conda's error classes and how conda prints them (facts §2.0)."""

from __future__ import annotations

import json
import sys
from typing import Any


class CondaError(Exception):
    """Base of every handled conda error: printed as `\\n<Class>: <msg>\\n`, rc 1 (facts §2.0)."""

    return_code = 1
    module = "conda"

    def __init__(self, message: str, caused_by: Any = None, **kwargs: Any) -> None:
        self.message = message
        self._caused_by = caused_by
        self._kwargs = kwargs
        super().__init__(message)

    def __str__(self) -> str:
        try:
            return self.message % self._kwargs
        except (KeyError, TypeError, ValueError):
            return self.message

    def __repr__(self) -> str:
        return f"{self.__class__.__name__}: {self}"

    def dump_map(self) -> dict[str, Any]:
        result: dict[str, Any] = {"message": self.message}
        result.update(
            exception_type=f"<class '{self.module}.{self.__class__.__name__}'>",
            exception_name=self.__class__.__name__,
            message=str(self),
            error=repr(self),
            caused_by=repr(self._caused_by),
            **self._kwargs,
        )
        return result


class _ExcError(CondaError):
    module = "conda.exceptions"


class CondaValueError(_ExcError):
    pass


class CondaEnvException(_ExcError):
    pass


class CondaEnvironmentError(_ExcError):
    pass


class EnvironmentLocationNotFound(_ExcError):
    def __init__(self, location: str) -> None:
        super().__init__("Not a conda environment: %(location)s", location=location)


class DirectoryNotACondaEnvironmentError(_ExcError):
    def __init__(self, target_directory: str) -> None:
        super().__init__(
            "The target directory exists, but it is not a conda environment.\n"
            "Use 'conda create' to convert the directory to a conda environment.\n"
            "  target directory: %(target_directory)s",
            target_directory=target_directory,
        )


class EnvironmentNameNotFound(_ExcError):
    def __init__(self, environment_name: str) -> None:
        super().__init__(
            "Could not find conda environment: %(environment_name)s\n"
            "You can list all discoverable environments with `conda info --envs`.",
            environment_name=environment_name,
        )


class EnvironmentFileNotFound(_ExcError):
    def __init__(self, filename: str) -> None:
        super().__init__("'%(filename)s' file not found", filename=filename)


class EnvironmentFileInvalid(_ExcError):
    pass


class EnvironmentNotWritableError(_ExcError):
    def __init__(self, environment_location: str, uid: int, gid: int) -> None:
        super().__init__(
            "The current user does not have write permissions to the target environment.\n"
            "  environment location: %(environment_location)s\n"
            "  uid: %(uid)s\n"
            "  gid: %(gid)s\n",
            environment_location=environment_location,
            uid=uid,
            gid=gid,
        )


class NotWritableError(_ExcError):
    def __init__(self, path: str, uid: int, gid: int) -> None:
        super().__init__(
            "The current user does not have write permissions to a required path.\n"
            "  path: %(path)s\n"
            "  uid: %(uid)s\n"
            "  gid: %(gid)s\n\n"
            "If you feel that permissions on this path are set incorrectly, you can manually\n"
            "change them by executing\n\n"
            "  $ sudo chown %(uid)s:%(gid)s %(path)s\n\n"
            "In general, it's not advisable to use 'sudo conda'.\n",
            path=path,
            uid=uid,
            gid=gid,
        )


class PackagesNotFoundError(_ExcError):
    def __init__(self, packages: list[str], channel_urls: list[str]) -> None:
        lines = "\n".join(f"  - {p}" for p in packages)
        chans = "\n".join(f"  - {c}" for c in channel_urls)
        super().__init__(
            "The following packages are not available from current channels:\n\n"
            f"{lines}\n\n"
            "Current channels:\n\n"
            f"{chans}\n\n"
            "To search for alternate channels that may provide the conda package you're\n"
            "looking for, navigate to\n\n"
            "    https://anaconda.org\n\n"
            "and use the search bar at the top of the page.\n",
            packages=packages,
            channel_urls=channel_urls,
        )

    def __str__(self) -> str:
        return self.message


class CommandNotFoundError(_ExcError):
    pass


class ArgumentError(_ExcError):
    pass


class CondaSystemExit(_ExcError):
    return_code = 0


class DryRunExit(_ExcError):
    return_code = 0

    def __init__(self) -> None:
        super().__init__("Dry run. Exiting.")


class CondaToSNonInteractiveError(CondaError):
    module = "conda_anaconda_tos.exceptions"


class CondaToSRejectedError(CondaError):
    module = "conda_anaconda_tos.exceptions"


def print_error(exc: CondaError, as_json: bool, sort_json: bool = True) -> int:
    """Render a handled error the way conda's exception handler does (facts §2.0)."""
    rc = exc.return_code
    if as_json:
        stream = sys.stdout if rc else sys.stderr
        stream.write(json.dumps(exc.dump_map(), indent=2, sort_keys=sort_json) + "\n")
    else:
        sys.stderr.write(f"\n{exc!r}\n\n")
    sys.stderr.flush()
    sys.stdout.flush()
    return rc
