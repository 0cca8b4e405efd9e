"""events.py against real ansible-runner event streams (recorded by fixtures/record.py)."""

from __future__ import annotations

import copy

from gpulab.events import HostState, RunState, apply_event, apply_stats, failure_message
from tests.cli.helpers import fold, load_events


def test_mixed_run_counts_match_ansible_stats() -> None:
    state, _ = fold("mixed")
    stats = load_events("mixed")[-1]["event_data"]
    assert state.started and state.finished
    assert set(state.hosts) == {"good1", "good2", "bad", "down"}
    for name, host in state.hosts.items():
        assert host.ok == stats["ok"].get(name, 0)
        assert host.changed == stats["changed"].get(name, 0)
        assert host.failed == stats["failures"].get(name, 0)
        assert host.unreachable == stats["dark"].get(name, 0)
    assert state.hosts["bad"].status == "failed"
    assert state.hosts["down"].status == "unreachable"
    assert state.hosts["good1"].status == "ok"


def test_live_counters_before_stats_event() -> None:
    """Progress shown while the run goes is counted from the per-task events alone."""
    state = RunState()
    for event in load_events("mixed")[:-1]:  # everything but playbook_on_stats
        apply_event(state, event)
    assert not state.finished
    assert state.hosts["good1"].ok == 4  # set_fact, command, set_fact, set_stats
    assert state.hosts["good1"].skipped == 2
    assert state.hosts["good1"].changed == 1
    assert state.hosts["bad"].failed == 1
    assert state.hosts["down"].unreachable == 1


def test_failed_task_and_message() -> None:
    state, lines = fold("mixed")
    bad = state.hosts["bad"]
    assert bad.failed_task == "Fail where the inventory asks for it"
    assert bad.message == "conda env create failed: PackagesNotFoundError: torch==9.9"
    down = state.hosts["down"]
    assert down.failed_task == "Touch the marker"
    assert "Connection refused" in down.message
    assert any(line.startswith("FAILED: [bad]") for line in lines)
    assert any(line.startswith("UNREACHABLE: [down]") for line in lines)


def test_published_facts_are_collected_per_host() -> None:
    state, _ = fold("mixed")
    good2 = state.hosts["good2"].facts
    assert good2["cuda_check_driver_version"] == "570.86.15"
    assert good2["cuda_check_previous_driver_version"] == "550.54.15"
    assert good2["cuda_check_driver_changed"] is True
    assert len(good2["cuda_check_gpus"]) == 2
    assert good2["dl_env_action"] == "updated"
    assert state.hosts["good1"].facts["dl_env_action"] == "created"
    assert "dl_env_action" not in state.hosts["bad"].facts  # it failed before


def test_set_stats_artifact_data_reaches_hosts() -> None:
    state, _ = fold("mixed")
    assert set(state.artifact_data["gpulab"]) == {"good1", "good2"}
    assert state.hosts["good1"].stats_data["backend"] == "cuda"
    assert state.hosts["good1"].stats_data["passed"] is True
    assert state.hosts["good2"].stats_data["env_action"] == "updated"
    assert state.hosts["bad"].stats_data == {}


def test_set_stats_seen_per_task_when_the_run_is_cut_short() -> None:
    """Without playbook_on_stats (cancelled run) the per-task ansible_stats still carry the data."""
    state = RunState()
    for event in load_events("mixed")[:-1]:
        apply_event(state, event)
    assert state.artifact_data == {}
    assert state.hosts["good1"].stats_data["env_action"] == "created"


def test_cancelled_stream_has_no_stats_and_a_current_task() -> None:
    state, _ = fold("cancelled")
    assert state.started and not state.finished
    for host in state.hosts.values():
        assert host.task == "Wait when asked (Ctrl-C tests)"
        assert host.failed == 0 and host.unreachable == 0
        assert host.facts["cuda_check_cuda_version"] == "12.4"


def test_parse_error_stream_keeps_ansibles_error() -> None:
    state, _ = fold("parse_error")
    assert not state.started and not state.hosts
    assert state.errors and state.errors[0].startswith("YAML parsing failed")
    assert "Origin:" in state.errors[0]


def test_ignored_failure_is_not_a_failure() -> None:
    events = copy.deepcopy([e for e in load_events("mixed") if e["event"] == "runner_on_failed"])
    events[0]["event_data"]["ignore_errors"] = True
    state = RunState()
    line = apply_event(state, events[0])
    assert state.hosts["bad"].failed == 0 and state.hosts["bad"].ignored == 1
    assert line is not None and "ignored" in line


def test_apply_stats_overrides_live_counts() -> None:
    state = RunState(hosts={"h": HostState(name="h", ok=9, failed=1, task="x")})
    apply_stats(state, {"ok": {"h": 3}, "failures": {}, "dark": {}, "changed": {"h": 1}, "rescued": {"h": 1}})
    host = state.hosts["h"]
    assert (host.ok, host.failed, host.changed, host.rescued, host.done, host.task) == (3, 0, 1, 1, True, "")


def test_failure_message_prefers_msg_then_stderr_and_failed_items() -> None:
    assert failure_message({"msg": "boom", "stderr": "x"}) == "boom"
    assert failure_message({"msg": "", "stderr": "E: no such package\n", "rc": 100}) == "E: no such package"
    assert failure_message({"rc": 3}) == "rc=3"


def test_failure_message_of_a_filter_error_is_the_filters_own_words() -> None:
    # What ansible-core 2.19 puts in msg when a filter raises in a set_fact (captured from a run).
    said = "none of the CUDA candidates 11.7 can run on this host (driver 590.48.01, maximum CUDA 13.1)"
    msg = (
        "Task failed: Finalization of task args for 'ansible.builtin.set_fact' failed: Error while resolving "
        "value for '__cuda_check_selection': The filter plugin 'gpulab.gpulab.cuda_check_select' failed: "
        + said
    )
    assert failure_message({"msg": msg}) == said
    # In a task's own argument (assert's `that`) the frame is shorter.
    short = (
        "Task failed: The filter plugin 'gpulab.gpulab.dl_env_spec_check' failed: /ctl/b.yml is not a spec"
    )
    assert failure_message({"msg": short}) == "/ctl/b.yml is not a spec"
    # Any other failure keeps its text.
    assert failure_message({"msg": "Task failed: Module failed: boom"}) == "Task failed: Module failed: boom"
    loop = {
        "msg": "One or more items failed",
        "results": [{"item": "a"}, {"item": "b", "failed": True, "msg": "no"}],
    }
    assert failure_message(loop) == "One or more items failed (item b: no)"
    assert len(failure_message({"msg": "x" * 5000})) == 400


def test_event_handler_input_is_not_mutated() -> None:
    events = load_events("mixed")
    before = copy.deepcopy(events)
    state = RunState()
    for event in events:
        apply_event(state, event)
    assert events == before
