"""Shared pytest set-up: repo paths, the CI policy for containers, and the offline lab services."""

from __future__ import annotations

import contextlib
import fcntl
import functools
import importlib
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

REPO = Path(__file__).resolve().parents[1]
# The venv pytest runs in (a worktree shares the main checkout's venv and has no .venv of its own).
VENV_BIN = Path(sys.executable).parent
IN_CI = os.environ.get("CI", "").lower() == "true"


def pytest_configure(config: pytest.Config) -> None:
    """The checkout's gpulab.gpulab link (ansible.cfg's collections_path, Molecule's base config)."""
    from gpulab.collection import collections_dir

    collections_dir(REPO)


@functools.cache
def ansible_loader() -> None:
    """Ansible's plugin loader with gpulab.gpulab findable, set up ONCE per process: a second
    init_plugin_loader() installs no new collection finder, so whichever test module came first would
    decide whether `gpulab.gpulab.*` filters resolve (test order must not matter)."""
    from ansible.plugins.loader import init_plugin_loader  # type: ignore[import-untyped]

    from gpulab.collection import collections_dir

    init_plugin_loader([str(collections_dir(REPO))])


def plugin(name: str) -> ModuleType:
    """A plugin of the collection as Python imports it under Ansible: `plugin("filter.dl_env")` is
    ansible_collections.gpulab.gpulab.plugins.filter.dl_env (the one way tests load plugins)."""
    ansible_loader()
    return importlib.import_module(f"ansible_collections.gpulab.gpulab.plugins.{name}")


def require_containers() -> None:
    """Containers are required: under CI=true their absence FAILS the test, elsewhere it skips it."""
    problem = None
    if shutil.which("podman") is None:
        problem = "podman is not installed (run scripts/test.sh, which installs it)"
    if problem:
        if IN_CI:
            pytest.fail(f"CI=true and {problem}: a missing container runtime is a failure, not a skip")
        pytest.skip(problem)


def tool_env() -> dict[str, str]:
    """Environment for tools run from tests: the venv first on PATH, our podman settings, no colour."""
    from gpulab.podman import podman_env

    env = podman_env()
    env["PATH"] = f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}"
    env["NO_COLOR"] = "1"
    env["ANSIBLE_FORCE_COLOR"] = "0"
    env["PY_COLORS"] = "0"
    return env


def run_gpulab(
    args: list[str], env: dict[str, str], *, cwd: Path | None = None, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    """`python -m gpulab ARGS` as a user runs it (output captured, never raising on a non-zero exit)."""
    return subprocess.run(
        [sys.executable, "-m", "gpulab", *args],
        cwd=cwd or REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


@contextlib.contextmanager
def lab_up(base: Path, args: list[str]) -> Iterator[tuple[dict[str, str], str]]:
    """`gpulab lab up ARGS`, its lab and runs under `base`: yields (env, its output); `lab down` after."""
    env = tool_env() | {"GPULAB_LAB_DIR": str(base / "lab"), "GPULAB_STATE_DIR": str(base / "runs")}
    up = run_gpulab(["lab", "up", *args], env, timeout=900)
    try:
        assert up.returncode == 0, up.stdout + up.stderr
        yield env, up.stdout
    finally:
        down = run_gpulab(["lab", "down"], env, timeout=900)
        assert down.returncode == 0, down.stdout + down.stderr


def repo_ansible_env(**extra: str) -> dict[str, str]:
    """Environment for ansible-playbook runs of the repo's roles from a temp dir: roles, config, no colour."""
    return dict(
        os.environ,
        ANSIBLE_ROLES_PATH=str(REPO / "roles"),
        ANSIBLE_CONFIG=str(REPO / "ansible.cfg"),
        ANSIBLE_FORCE_COLOR="0",
        NO_COLOR="1",
        **extra,
    )


def on_mitogen() -> dict[str, str]:
    """ansible-playbook's environment for Mitogen's strategy in every play, as gpulab runs site.yml's
    provision play (gpulab.strategy): for the runs it makes faster, one or two hosts with long plays (0.6-0.85
    of linear; docs/testing.md). Runs of many hosts with short plays stay linear (Mitogen's start-up per host
    cost them up to 1.4x), as plain ansible-playbook and AWX run the roles."""
    from gpulab.strategy import every_play_environ

    mitogen = every_play_environ()
    assert mitogen is not None, "Mitogen (a gpulab dependency) is not installed in this venv"
    return mitogen


@pytest.fixture(scope="session")
def lab_services(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """Start the offline lab services once per session: mirror with stand-in installers and wheelhouse.

    Returns the environment variables that Molecule scenarios read (GPULAB_LAB_MIRROR_URL, GPULAB_LAB_ROOT).
    """
    from gpulab.lab.services import LabServices

    # Under pytest-xdist each worker has its own session, so its own mirror on its own free port; the
    # download cache is shared, so workers fill it one at a time.
    root = tmp_path_factory.mktemp("lab")
    cache = REPO / ".cache" / "gpulab-lab"
    cache.mkdir(parents=True, exist_ok=True)
    services = LabServices(root=root, cache_dir=cache)
    with (cache / ".lock").open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            services.__enter__()
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
    try:
        yield services.environ()
    finally:
        services.__exit__(None, None, None)


# Expected minutes of each long unit of work (`_scope`: a module, or one Molecule scenario) on 2 busy
# cores, from the last measured suite (docs/testing.md), so that the two xdist workers start with the
# longest and finish together. Other units with container tests count half a minute, the rest nothing.
_EXPECTED_MINUTES = {
    "tests/dl_env/test_role_local.py": 8.0,
    "tests/test_demo.py": 7.0,
    "tests/test_molecule.py::test_scenario[dl_env/default]": 5.5,
    "tests/cli/test_stop_site.py": 5.5,
    "tests/cli/test_fast_path.py": 5.0,
    "tests/test_molecule.py::test_scenario[cuda_check/default]": 2.0,
    "tests/test_demo_failure.py": 3.0,
    "tests/test_ssh_lab.py": 2.5,
    "tests/dl_env/test_render.py": 2.5,
    "tests/test_molecule.py::test_scenario[miniconda/default]": 2.5,
    "tests/test_molecule.py::test_scenario[miniconda/failures]": 1.5,
    "tests/test_molecule.py::test_scenario[host_lock/default]": 1.0,
    "tests/test_ee.py": 1.5,
    "tests/test_cli_lab.py": 1.5,
    "tests/miniconda/test_role_local.py": 1.5,
    "tests/cuda_check/test_role_faults.py": 2.0,
    "tests/host_lock/test_host_lock.py": 1.0,
    "tests/test_lint.py": 1.0,
}
# Modules whose tests share nothing, so each test is its own unit of work; every other module goes to
# one worker whole (its module-scoped fixtures, e.g. test_cli_lab's lab, are set up once).
_SPLIT_MODULES = {"tests/test_molecule.py"}


def _scope(nodeid: str) -> str:
    module = nodeid.split("::")[0]
    return nodeid if module in _SPLIT_MODULES else module


def expected_minutes(nodeid: str) -> float:
    """The expected minutes of the unit of work holding this test (its entry above, else half a minute)."""
    return _EXPECTED_MINUTES.get(_scope(nodeid), 0.5)


def _weight(unit: list[pytest.Item]) -> float:
    """A unit's expected minutes: its entry, half a minute for other container tests, else nothing."""
    scope = _scope(unit[0].nodeid)
    if scope in _EXPECTED_MINUTES:
        return _EXPECTED_MINUTES[scope]
    return 0.5 if any(i.get_closest_marker("containers") for i in unit) else 0.0


def pytest_xdist_make_scheduler(config: pytest.Config, log: object) -> object:
    """`-n 2 --dist loadscope` (scripts/test.sh) with our units of work (`_scope`), in collection order."""
    from xdist.scheduler import LoadScopeScheduling

    class UnitScheduling(LoadScopeScheduling):  # type: ignore[misc]
        def _split_scope(self, nodeid: str) -> str:
            return _scope(nodeid)

    config.option.loadscopereorder = False
    return UnitScheduling(config, log)


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Under pytest-xdist: long units (`_weight`) run longest first, each followed by two units
    of quick tests, so a worker busy with a long test holds no other long one in its queue and the quick
    tests fill the gaps. Without xdist the order is pytest's.
    """
    if not hasattr(config, "workerinput"):  # xdist workers collect; plain runs keep pytest's order
        return
    units: dict[str, list[pytest.Item]] = {}
    for item in items:
        units.setdefault(_scope(item.nodeid), []).append(item)

    long = sorted((u for u in units.values() if _weight(u) > 0), key=_weight, reverse=True)
    quick = [u for u in units.values() if _weight(u) == 0]
    ordered: list[pytest.Item] = []
    for unit in long:
        ordered.extend(unit)
        for filler in quick[:2]:
            ordered.extend(filler)
        del quick[:2]
    for unit in quick:
        ordered.extend(unit)
    items[:] = ordered
