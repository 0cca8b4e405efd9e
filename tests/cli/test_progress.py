"""Live progress on recorded event streams: plain lines for logs, the rich live view for terminals."""

from __future__ import annotations

import io
import itertools
import json
from collections import Counter
from pathlib import Path

import pytest
from rich.console import Console

from gpulab import progress
from gpulab.events import PHASES
from gpulab.progress import LiveView, PlainView, expected_tasks, make_view, render_live
from gpulab.runner import REPORT_NAME
from tests.cli.helpers import load_events

LAB = "lab_provision"  # the first `gpulab provision` of a `gpulab demo`: 3 lab nodes, site.yml


def _plain(name: str, verbose: bool = False) -> tuple[PlainView, list[str]]:
    ticks = itertools.count()
    view = PlainView(io.StringIO(), verbose=verbose, clock=lambda: float(next(ticks)))
    for event in load_events(name):
        assert view.on_event(event) is True
    view.stop()
    return view, view.stream.getvalue().splitlines()  # type: ignore[attr-defined]


def test_plain_view_prints_one_line_per_host_per_phase() -> None:
    _, lines = _plain(LAB)
    per_host = Counter(line.split("] ", 1)[1].split(":")[0] for line in lines)
    assert per_host == {"gpu-l40s": len(PHASES), "gpu-h100": len(PHASES), "cpu-node": len(PHASES)}
    for host in per_host:
        phases = [line.split(": ")[1].split(" (")[0] for line in lines if f"] {host}:" in line]
        assert phases == list(PHASES), (host, phases)
    # 931 events, 388 task starts: the log gets 15 lines, not one per task.
    assert len(lines) == 3 * len(PHASES)


def test_plain_view_verbose_prints_every_task_and_failures_always() -> None:
    _, verbose = _plain(LAB, verbose=True)
    kinds = Counter(event["event"] for event in load_events(LAB))
    assert len(verbose) == kinds["runner_on_ok"] + kinds["playbook_on_play_start"]  # every task result
    assert "changed: [gpu-l40s] dl_env : build | Create the new environment beside the live one" in verbose
    _, mixed = _plain("mixed")
    assert any(line.startswith("FAILED: [bad]") for line in mixed)
    assert any(line.startswith("UNREACHABLE: [down]") for line in mixed)


def _rendered(view: LiveView) -> list[str]:
    console = Console(record=True, force_terminal=True, width=160)
    console.print(view.renderable())
    return console.export_text().splitlines()


def test_live_view_shows_a_line_per_host_and_a_run_bar() -> None:
    events = load_events(LAB)
    expected = {"gpu-l40s": 130, "gpu-h100": 129, "cpu-node": 129}
    now = [0.0]
    view = LiveView(Console(file=io.StringIO()), expected, clock=lambda: now[0])
    for event in events[:500]:
        view.on_event(event)
    now[0] = 75.0
    lines = _rendered(view)
    rows = {line.split()[1]: line for line in lines if line.split() and line.split()[1] in expected}
    assert set(rows) == set(expected)
    assert "miniconda" in rows["gpu-l40s"] and "task 71/130" in rows["gpu-l40s"]
    assert "1:15" in rows["gpu-l40s"]  # elapsed since the host's first event, and on the long step
    assert "Remove the download directory" in rows["gpu-l40s"]  # the last changed thing
    bar = [line for line in lines if "tasks" in line]
    assert bar and "211/388 tasks" in bar[0] and "━" in bar[0]
    for event in events[500:]:
        view.on_event(event)
    done = {line.split()[1]: line for line in _rendered(view) if line.split() and line.split()[1] in expected}
    assert all("done" in line and line.startswith("✓") for line in done.values())


def test_live_view_marks_failed_and_unreachable_hosts() -> None:
    view = LiveView(Console(file=io.StringIO()), {}, clock=lambda: 0.0)
    for event in load_events("mixed"):
        view.on_event(event)
    text = "\n".join(_rendered(view))
    assert "FAILED Fail where the inventory asks for it" in text
    assert "UNREACHABLE Touch the marker" in text
    assert "tasks" in text  # without a previous run: a count, no total


def test_n_comes_from_the_last_finished_run_of_the_same_playbook(tmp_path: Path) -> None:
    for ident, playbook, tasks in (
        ("20261201T000000Z-aaaaaa", "/p/playbooks/site.yml", 120),
        ("20261202T000000Z-bbbbbb", "/p/playbooks/site.yml", 130),
        ("20261203T000000Z-cccccc", "/p/playbooks/verify.yml", 12),
    ):
        (tmp_path / ident).mkdir()
        report = {
            "schema_version": 1,
            "playbook": playbook,
            "finished": True,
            "hosts": {"a": {"tasks_run": tasks}},
        }
        (tmp_path / ident / REPORT_NAME).write_text(json.dumps(report))
    assert expected_tasks(tmp_path, "/other/checkout/playbooks/site.yml") == {"a": 130}
    assert expected_tasks(tmp_path, "verify.yml") == {"a": 12}
    assert expected_tasks(tmp_path, "render.yml") == {}
    assert expected_tasks(tmp_path / "none", "site.yml") == {}


def test_a_terminal_gets_the_live_view_and_a_pipe_plain_lines() -> None:
    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    assert isinstance(make_view(Tty(), False, {}), LiveView)
    assert isinstance(make_view(io.StringIO(), True, {}), PlainView)


def test_a_bad_event_never_stops_the_run(monkeypatch: pytest.MonkeyPatch) -> None:
    def explode(state: object, event: object) -> str:
        raise KeyError("res")

    monkeypatch.setattr(progress, "apply_event", explode)
    for view in (PlainView(io.StringIO()), LiveView(Console(file=io.StringIO()))):
        assert view.on_event({"event": "runner_on_ok"}) is True
        assert view.state.errors == ["gpulab could not read a runner_on_ok event: KeyError('res')"]


def test_render_live_before_any_host() -> None:
    from gpulab.events import RunState
    from gpulab.progress import _Timing

    console = Console(record=True, force_terminal=True, width=100)
    console.print(render_live(RunState(), {}, _Timing(lambda: 0.0)))
    assert "starting ansible" in console.export_text()
