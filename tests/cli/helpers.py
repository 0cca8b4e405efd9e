"""Shared paths and loaders for the gpulab CLI tests."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from gpulab.events import RunState, apply_event

FIXTURES = Path(__file__).resolve().parent / "fixtures"
PROJECT = FIXTURES / "project"


def load_events(name: str) -> list[dict[str, Any]]:
    """A real event stream recorded by fixtures/record.py."""
    events: list[dict[str, Any]] = json.loads((FIXTURES / f"{name}.events.json").read_text())
    return events


def fold(name: str) -> tuple[RunState, list[str]]:
    state = RunState()
    lines = [line for event in load_events(name) if (line := apply_event(state, event))]
    return state, lines
