"""The re-run benchmark's pure parts: arguments, the lab plan, the no-op check, the split, ratios, fit."""

from __future__ import annotations

import math
from typing import Any

import pytest

from benchmarks.bench_rerun import (
    UPGRADE_FROM,
    Timing,
    floor_of,
    noop_problems,
    one_changed_problems,
    parse_args,
    plan_lab,
    render_scale,
    render_table,
    slope,
    split_work,
    work_category,
)
from gpulab.lab import cluster


def _host(changed: int = 0, status: str = "ok", tasks: list[str] | None = None) -> dict[str, Any]:
    return {"status": status, "counts": {"changed": changed}, "changed_tasks": tasks or []}


def test_defaults_are_four_ssh_nodes_without_scale() -> None:
    options = parse_args([])
    assert (options.nodes, options.connection, options.scale, options.json_path) == (4, "ssh", (), None)


def test_scale_is_sorted_and_unique_and_connection_podman_is_accepted() -> None:
    options = parse_args(["--nodes", "8", "--scale", "4,1,2,8,2", "--connection", "podman"])
    assert options.scale == (1, 2, 4, 8)
    assert options.connection == "podman"


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--nodes", str(cluster.MAX_NODES + 1)], f"between 1 and {cluster.MAX_NODES}"),
        (["--nodes", "0"], f"between 1 and {cluster.MAX_NODES}"),
        (["--nodes", "4", "--scale", "1,8"], "needs at least --nodes 8"),
        (["--scale", "1,x"], "node counts"),
        (["--scale", "0,2"], "positive"),
        (["--connection", "local"], "invalid choice"),
        (["--nodes", "2", "--scale", "1,2"], "cannot give 4 driver upgrades"),
    ],
)
def test_bad_arguments_are_refused_with_the_reason(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exc:
        parse_args(argv)
    assert exc.value.code == 2
    assert message in capsys.readouterr().err


def test_plan_without_scale_is_the_labs_default_mix() -> None:
    plan = plan_lab(4)
    mix = [n.profile for n in cluster.parse_nodes(cluster.DEFAULT_NODES)]
    assert [p for _, p in plan.profiles] == [mix[0], mix[1], mix[2], mix[0]]
    assert plan.main_changed == "node1" and plan.alone_changed == "node4" and plan.scale_changed == ()
    assert cluster.parse_nodes(plan.spec())[0].name == "node1"  # the lab accepts the spec


def test_plan_gives_every_rerun_its_own_node_to_upgrade() -> None:
    plan = plan_lab(8, (1, 2, 4, 8))
    upgraded = [plan.main_changed, plan.alone_changed, *plan.scale_changed]
    assert len(set(upgraded)) == 6
    assert all(dict(plan.profiles)[name] == UPGRADE_FROM for name in upgraded)
    assert plan.main_changed == "node1"
    for size, changed in zip((1, 2, 4, 8), plan.scale_changed, strict=True):
        subset = plan.subset(size, changed)
        assert len(subset) == len(set(subset)) == size and subset[0] == changed


def test_floor_is_the_smaller_run() -> None:
    assert floor_of([7.5, 6.25]) == 6.25


def test_noop_problems_name_each_host_that_changed_or_failed() -> None:
    report = {
        "hosts": {"a": _host(), "b": _host(2, tasks=["dl_env : x", "dl_env : y"]), "c": _host(0, "failed")}
    }
    assert noop_problems(report) == ["b: changed=2 (dl_env : x, dl_env : y)", "c: status failed"]
    assert noop_problems({"hosts": {"a": _host(), "b": _host()}}) == []


def test_one_changed_wants_the_upgraded_node_changed_and_only_it() -> None:
    good = {"hosts": {"node1": _host(9), "node2": _host()}}
    assert one_changed_problems(good, "node1") == []
    nothing = {"hosts": {"node1": _host(), "node2": _host()}}
    assert one_changed_problems(nothing, "node1") == ["node1: changed=0 after its driver upgrade"]
    spread = {"hosts": {"node1": _host(9), "node2": _host(1)}}
    assert one_changed_problems(spread, "node1") == ["node2: changed=1 (only node1 was upgraded)"]


def test_work_categories_are_the_stand_ins_tasks() -> None:
    assert work_category("miniconda : install | Run the installer in batch mode") == "installer"
    assert work_category("dl_env : build | Create the new environment beside the live one") == "env build"
    assert work_category("dl_env : mlp_check | Run the MLP check with the build's python") == "MLP training"
    assert work_category("dl_env : mlp_check | Install the MLP check script") is None


def _event(host: str, task: str, duration: float, event: str = "runner_on_ok") -> dict[str, Any]:
    return {"event": event, "event_data": {"host": host, "task": task, "duration": duration}}


def test_split_averages_work_per_host_and_leaves_the_rest_to_gpulab() -> None:
    events = [
        _event("a", "install | Run the installer in batch mode", 10.0),
        _event("b", "install | Run the installer in batch mode", 20.0),
        _event("a", "build | Create the new environment beside the live one", 30.0),
        _event("b", "build | Create the new environment beside the live one", 50.0),
        _event("a", "mlp_check | Run the MLP check with the build's python", 4.0, "runner_on_failed"),
        _event("a", "mlp_check | Run the MLP check with the build's python", 99.0, "runner_on_start"),
        _event("a", "Gathering Facts", 5.0),
    ]
    split = split_work(events, 100.0)
    assert split == {"installer": 15.0, "env build": 40.0, "MLP training": 2.0, "rest": 43.0}


def test_split_of_a_run_without_work_is_all_rest() -> None:
    assert split_work([_event("a", "Gathering Facts", 5.0)], 12.0)["rest"] == 12.0


def test_split_counts_a_host_that_did_no_work() -> None:
    events = [
        _event("a", "build | Create the new environment beside the live one", 30.0),
        _event("b", "x", 1.0),
    ]
    assert split_work(events, 40.0)["env build"] == 15.0


def test_slope_is_seconds_per_extra_host() -> None:
    assert slope([(1, 10.0), (2, 12.0), (4, 16.0), (8, 24.0)]) == pytest.approx(2.0)
    assert math.isnan(slope([(4, 10.0)]))


def test_table_divides_by_the_smaller_floor_and_by_cold() -> None:
    timings = {
        "floor before": Timing("floor before", 5.0, 2, 0),
        "cold": Timing("cold", 200.0, 2, 0),
        "no-op": Timing("no-op", 50.0, 2, 0),
        "one-changed": Timing("one-changed", 100.0, 2, 0),
        "floor after": Timing("floor after", 4.0, 2, 0),
    }
    lines = render_table(timings, ("floor before", "floor after")).splitlines()
    assert "| no-op | 50.0 | 12.5x | 0.25 |" in lines
    assert "| one-changed | 100.0 | 25.0x | 0.50 |" in lines
    assert "| floor after (used) | 4.0 | 1.00 | |" in lines
    assert "| floor before | 5.0 | 1.25 | |" in lines


def test_scale_table_ends_with_seconds_per_extra_host() -> None:
    rows = {
        1: {"floor": 2.0, "no-op": 20.0, "one-changed": 50.0},
        3: {"floor": 4.0, "no-op": 30.0, "one-changed": 90.0},
    }
    assert render_scale(rows).splitlines()[-1] == "| s per extra host | 1.00 | 5.00 | 20.00 |"
