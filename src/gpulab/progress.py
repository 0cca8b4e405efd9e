"""Live progress of a run, for a person: a rich live view on a terminal, a few plain lines in CI logs.

On a terminal (:class:`LiveView`): one line per host (spinner, phase, task i of n, elapsed, the current
step with its own elapsed time once it runs long, the last changed thing) and a run-level progress bar,
redrawn by ``rich.live.Live``. Without a terminal (:class:`PlainView`): one line per host per phase
change and every failure; with ``-v`` every task. Both fold events with :func:`gpulab.events.apply_event`
and read nothing else, so they can be tested on recorded event streams.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Protocol, TextIO

from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.progress_bar import ProgressBar
from rich.spinner import Spinner
from rich.table import Table
from rich.text import Text

from gpulab.events import RunState, apply_event
from gpulab.report import load_report
from gpulab.runner import IDENT_RE, REPORT_NAME

Clock = Callable[[], float]
# A step running longer than this gets its own elapsed time (installer, env build, MLP check).
LONG_STEP_S = 5.0
_MAX_STEP = 48


class View(Protocol):
    state: RunState

    def on_event(self, event: dict[str, Any]) -> bool: ...
    def start(self) -> None: ...
    def flush(self) -> None: ...
    def note(self, text: str) -> None: ...
    def stop(self) -> None: ...


def expected_tasks(states: Path, playbook: str) -> dict[str, int]:
    """Tasks per host in the newest finished run of the same playbook (the "n" of "task i of n")."""
    if not states.is_dir():
        return {}
    name = Path(playbook).name
    for run in sorted((p for p in states.iterdir() if IDENT_RE.match(p.name)), reverse=True):
        path = run / REPORT_NAME
        if not path.is_file():
            continue
        try:
            report = load_report(path)
        except Exception:  # a damaged old report only costs the estimate
            continue
        if Path(str(report.get("playbook", ""))).name != name or not report.get("finished"):
            continue
        hosts = report.get("hosts", {})
        return {h: int(r["tasks_run"]) for h, r in hosts.items() if isinstance(r.get("tasks_run"), int)}
    return {}


def _clock(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    return f"{minutes}:{secs:02d}"


class _Timing:
    """Wall-clock times the events do not carry: when each host and its current step began."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.start = clock()
        self.host_start: dict[str, float] = {}
        self.step: dict[str, tuple[int, float]] = {}  # host -> (tasks_started, when that task began)

    def saw(self, state: RunState) -> None:
        now = self.clock()
        for name, host in state.hosts.items():
            self.host_start.setdefault(name, now)
            if self.step.get(name, (-1, 0.0))[0] != host.tasks_started:
                self.step[name] = (host.tasks_started, now)


class _Folding:
    """What both views share: fold each event into the state (under a lock) and queue lines to print."""

    def __init__(self, verbose: bool, clock: Clock) -> None:
        self.verbose = verbose
        self.state = RunState()
        self.timing = _Timing(clock)
        self.lock = threading.Lock()
        self._pending: list[str] = []

    def on_event(self, event: dict[str, Any]) -> bool:
        with self.lock:
            try:
                line = apply_event(self.state, event)
            except Exception as exc:  # a surprise in one event must not stop the run
                self.state.errors.append(f"gpulab could not read a {event.get('event')} event: {exc!r}")
                return True
            self.timing.saw(self.state)
            self._collect(line)
        return True  # keep the event in job_events/ and Runner.stats

    def _collect(self, line: str | None) -> None:
        if line and self.verbose:
            self._pending.append(line)

    def _take(self) -> list[str]:
        with self.lock:
            lines, self._pending = self._pending, []
        return lines


class PlainView(_Folding):
    """Lines for logs: a host's phase changes and failures (``verbose``: every task, as ansible shows it)."""

    def __init__(self, stream: TextIO, verbose: bool = False, clock: Clock = time.monotonic) -> None:
        super().__init__(verbose, clock)
        self.stream = stream
        self._phase: dict[str, str] = {}

    def _collect(self, line: str | None) -> None:
        if self.verbose:
            super()._collect(line)
            return
        for name, host in self.state.hosts.items():
            if host.phase and self._phase.get(name) != host.phase:
                self._phase[name] = host.phase
                self._pending.append(
                    f"[{_clock(self.timing.clock() - self.timing.start)}] {name}: {host.phase}"
                    f" (task {host.tasks_started})"
                )
        if line and line.startswith(("FAILED", "UNREACHABLE")):
            self._pending.append(line)

    def start(self) -> None:
        return None

    def flush(self) -> None:
        lines = self._take()
        for line in lines:
            self.stream.write(line + "\n")
        if lines:
            self.stream.flush()

    def note(self, text: str) -> None:
        self.flush()
        self.stream.write(text + "\n")
        self.stream.flush()

    def stop(self) -> None:
        self.flush()


def _short(text: str) -> str:
    return text if len(text) <= _MAX_STEP else text[: _MAX_STEP - 1] + "…"


def render_live(
    state: RunState, expected: Mapping[str, int], timing: _Timing, spinners: dict[str, Spinner] | None = None
) -> RenderableType:
    """The live view: a row per host and the run's progress bar (pure apart from reading the clock)."""
    now = timing.clock()
    spinners = spinners if spinners is not None else {}
    grid = Table(box=None, padding=(0, 1), pad_edge=False, header_style="dim")
    for column in ("", "host", "phase", "task", "elapsed", "now", "last changed"):
        grid.add_column(column, no_wrap=True, overflow="ellipsis")
    fallback = max(expected.values(), default=0)
    done_tasks = total_tasks = 0
    for name, host in sorted(state.hosts.items()):
        total = expected.get(name, fallback)
        total_tasks += max(total, host.tasks_started)
        done_tasks += host.tasks_started
        if host.unreachable or host.failed:
            mark: RenderableType = Text("✗", style="bold red")
            step = Text(
                f"{'UNREACHABLE' if host.unreachable else 'FAILED'} {_short(host.failed_task)}", "red"
            )
        elif host.done:
            mark, step = Text("✓", style="bold green"), Text("done", "green")
        else:
            mark = spinners.setdefault(name, Spinner("dots", style="cyan"))
            step = Text(_short(host.task.split(" | ", 1)[-1]))
            began = timing.step.get(name, (0, now))[1]
            if now - began >= LONG_STEP_S:
                step.append(f" ({_clock(now - began)})", "yellow")
        count = f"task {host.tasks_started}/{total}" if total else f"task {host.tasks_started}"
        elapsed = _clock(now - timing.host_start.get(name, now))
        grid.add_row(
            mark,
            Text(name, "bold"),
            Text(host.phase or "-", "magenta"),
            count,
            elapsed,
            step,
            Text(_short(host.changed_tasks[-1].split(" | ", 1)[-1]) if host.changed_tasks else "-", "dim"),
        )
    if not state.hosts:
        grid.add_row(spinners.setdefault("", Spinner("dots")), Text("starting ansible…"), "", "", "", "", "")
    bar = Table.grid(padding=(0, 1))
    bar.add_row(
        ProgressBar(total=float(total_tasks) if fallback else None, completed=float(done_tasks), width=40),
        f"{done_tasks}/{total_tasks} tasks" if fallback else f"{done_tasks} tasks",
        _clock(now - timing.start),
    )
    return Group(grid, bar)


class LiveView(_Folding):
    """The terminal view: ``rich.live.Live`` redraws :func:`render_live` several times a second."""

    def __init__(
        self,
        console: Console,
        expected: Mapping[str, int] | None = None,
        verbose: bool = False,
        clock: Clock = time.monotonic,
    ) -> None:
        super().__init__(verbose, clock)
        self.console = console
        self.expected = dict(expected or {})
        self._spinners: dict[str, Spinner] = {}
        self._live = Live(
            console=console, get_renderable=self.renderable, refresh_per_second=8, transient=False
        )

    def renderable(self) -> RenderableType:
        with self.lock:
            return render_live(self.state, self.expected, self.timing, self._spinners)

    def start(self) -> None:
        self._live.start()

    def flush(self) -> None:
        """Print -v's task lines above the live view (which redraws itself on its own thread)."""
        for line in self._take():
            self.console.print(line, markup=False, highlight=False)

    def note(self, text: str) -> None:
        self.console.print(text, markup=False, highlight=False)

    def stop(self) -> None:
        self.flush()
        self._live.stop()


def make_view(stream: TextIO, verbose: bool, expected: Mapping[str, int]) -> View:
    """The live view on a terminal, plain lines otherwise; ``verbose`` adds every task's line."""
    if stream.isatty():
        return LiveView(Console(file=stream), expected, verbose)
    return PlainView(stream, verbose)
