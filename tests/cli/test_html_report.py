"""`gpulab report --html`: a page built from recorded lab runs, checked in a real headless chromium."""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from gpulab import cli
from gpulab.html_report import curves, driver_history, load_history, render_html, svg_chart
from tests.cli.helpers import FIXTURES
from tests.conftest import IN_CI

# Three `report.json` of one lab (tests/cli/fixtures/SOURCES.md): the demo's two provisions around a
# driver upgrade of gpu-l40s, then a `gpulab check` whose MLP check JSON carries the loss curves.
RUNS = FIXTURES / "lab_runs"
CHROMEDRIVER = Path("/usr/bin/chromedriver")


@pytest.fixture
def states(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    dest = tmp_path / "runs"
    shutil.copytree(RUNS, dest)
    monkeypatch.setenv("GPULAB_STATE_DIR", str(dest))
    return dest


def _last(states: Path) -> str:
    return sorted(p.name for p in states.iterdir())[-1]


def test_report_html_writes_one_self_contained_page(states: Path, tmp_path: Path) -> None:
    page = tmp_path / "out" / "lab.html"
    assert cli.main(["report", _last(states), "--html", str(page)]) == 0
    text = page.read_text()
    assert text.startswith("<!DOCTYPE html>")
    # Nothing to fetch: no URL, no external script, stylesheet or image.
    assert not re.search(r"https?://|<link[^>]+stylesheet|<script[^>]+src=|<img", text), "external reference"
    for host in ("gpu-l40s", "gpu-h100", "cpu-node"):
        assert f'id="host-{host}"' in text


def test_history_follows_the_driver_across_runs(states: Path) -> None:
    history = load_history(states)
    assert len(history) == 3
    rows = driver_history("gpu-l40s", history)
    assert [r["driver"] for r in rows] == ["550.127.05", "595.80", "595.80"]
    assert [r["cuda"] for r in rows][:2] == ["12.9", "13.0"]
    assert {r["driver"] for r in driver_history("cpu-node", history)} <= {""}


def test_curves_come_from_the_mlp_check_loss_history(states: Path) -> None:
    report = load_history(states)[-1]
    series = curves(report["hosts"]["gpu-h100"]["mlp_check"])
    assert [label.split()[0] for label, _, _ in series] == ["xor", "spirals"]
    for _, points, _ in series:
        assert len(points) > 10 and points[-1][1] < points[0][1]  # the loss went down
    assert svg_chart([]).startswith('<p class="none">')


def test_pin_changes_and_cpu_reference_render() -> None:
    history_task = {"loss_history": [[1, 0.7], [50, 0.2], [100, 0.01]]}
    check: dict[str, Any] = {
        "backend": "torch",
        "device": "cuda",
        "tasks": {"xor": history_task},
        "agreement": {"tasks": {"xor": {"reference_loss_history": [[1, 0.7], [100, 0.011]]}}},
    }
    report = {
        "ident": "x",
        "command": "provision",
        "status": "ok",
        "hosts": {
            "n1": {
                "status": "ok",
                "counts": {"changed": 2},
                "mlp_check": check,
                "driver_version": "595.80",
                "cuda_version": "13.0",
                "pin_changes": [{"name": "cuda-version", "from": "12.4", "to": "13.0"}],
                "changed_tasks": ["dl_env : spec | Rewrite <pins>"],
            }
        },
    }
    page = render_html(report)
    assert "<td>cuda-version</td><td>12.4</td><td>13.0</td>" in page
    assert "xor (torch/cuda)" in page and "xor (cpu reference)" in page and 'stroke-dasharray="5 4"' in page
    assert "Rewrite &lt;pins&gt;" in page  # escaped


def test_each_environment_of_a_host_gets_a_row() -> None:
    envs = {
        "torch": {
            "env_action": "created",
            "passed": True,
            "verified": True,
            "framework": "pytorch",
            "spec_digest": "ab" * 32,
            "bytes": 3 * 2**30,
            "exclusive_bytes": 2**30,
        },
        "tf": {
            "env_action": "unchanged",
            "passed": True,
            "verified": False,
            "framework": "tensorflow",
            "reason": "no check backend for tensorflow",
        },
        "bad": {"env_action": "kept-old", "passed": False, "reason": "pip failed"},
    }
    record = {"status": "failed", "counts": {}, "stats_data": {"envs": envs, "disk_total_bytes": 4 * 2**30}}
    page = render_html({"ident": "x", "command": "provision", "status": "failed", "hosts": {"n1": record}})
    assert (
        "<td>torch</td><td>created</td><td>passed</td><td>pytorch</td><td>abababababab</td><td>3.00 GiB</td>"
        in page
    )
    assert "not verified (no check backend for tensorflow)" in page
    assert "<td>bad</td><td>kept-old</td><td>failed: pip failed</td>" in page
    assert "environments: 4.00 GiB</p>" in page
    single = render_html(
        {"ident": "x", "command": "check", "status": "ok", "hosts": {"n1": {"status": "ok"}}}
    )
    assert "<h3>Environments</h3>" not in single


def _rolling_report(stopped: bool) -> dict[str, Any]:
    """The report of `--batch 2` over r1..r5 (tests/cli/test_batch.py runs it for real): r2 fails in batch 1;
    with --max-fail 0 the rollout stops there, with --max-fail 50 it goes on."""
    statuses = {"r1": "stopped", "r2": "failed"} if stopped else {"r1": "ok", "r2": "failed"}
    statuses |= dict.fromkeys(["r3", "r4", "r5"], "not-reached" if stopped else "ok")
    hosts = {
        name: {
            "status": status,
            "counts": {},
            "message": "not provisioned: the rolling run stopped after batch 1 (r2 failed; --max-fail 0%);"
            " fix that and run again"
            if status == "not-reached"
            else "",
        }
        for name, status in statuses.items()
    }
    play = "Provision GPU nodes"
    batches = [{"play": play, "batch": 1, "hosts": ["r1", "r2"], "stopped": stopped}]
    if not stopped:
        batches += [
            {"play": play, "batch": 2, "hosts": ["r3", "r4"], "stopped": False},
            {"play": play, "batch": 3, "hosts": ["r5"], "stopped": False},
        ]
    return {
        "ident": "x",
        "command": "provision",
        "status": "failed",
        "options": {"batch": "2", "max_fail_percentage": 0 if stopped else 50},
        "hosts": hosts,
        "batches": batches,
    }


def test_a_stopped_rollout_shows_its_batches_and_the_hosts_not_reached() -> None:
    page = render_html(_rolling_report(stopped=True))
    table = page[page.index('<table id="batches">') : page.index("</table>", page.index('id="batches"'))]
    rows = re.findall(r'<tr( class="[^"]+")? data-batch="([^"]+)">(.*?)</tr>', table)
    assert [(cls, batch) for cls, batch, _ in rows] == [
        (' class="batch-stopped"', "1"),
        (' class="batch-not-reached"', "none"),
    ]
    first, missed = rows[0][2], rows[1][2]
    assert '<a href="#host-r1" class="stopped"' in first and "r1</a> (stopped)" in first
    assert "r2</a> (failed)" in first and "the rollout stopped here: r2 failed" in first
    assert [m for m in re.findall(r'href="#host-(\w+)"', missed)] == ["r3", "r4", "r5"]
    assert "stopped after batch 1 (r2 failed; --max-fail 0%)" in missed
    assert "batch size 2, max fail 0% · 1 batch(es) ran" in page


def test_a_completed_rollout_lists_every_batch_and_no_run_without_batch_has_one() -> None:
    page = render_html(_rolling_report(stopped=False))
    assert re.findall(r'data-batch="([^"]+)"', page) == ["1", "2", "3"]
    assert "<td>done, r2 failed</td>" in page and "r5</a> (ok)</td><td>done</td>" in page
    assert "stopped here" not in page and "not reached" not in page
    plain = render_html(
        {"ident": "x", "command": "provision", "status": "ok", "hosts": {"n1": {"status": "ok"}}}
    )
    assert "Rolling run" not in plain and 'id="batches"' not in plain


@pytest.fixture
def browser() -> Iterator[Any]:
    if not CHROMEDRIVER.exists() or shutil.which("chromium") is None:
        problem = "chromium/chromium-driver are not installed (scripts/bootstrap.sh test installs them)"
        if IN_CI:
            pytest.fail(f"CI=true and {problem}")
        pytest.skip(problem)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium") or ""
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    # An explicit driver path: selenium-manager never runs, so nothing is downloaded.
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    driver.set_window_size(1400, 1000)
    try:
        yield driver
    finally:
        driver.quit()


@pytest.mark.slow
def test_the_page_loads_without_errors_and_draws_every_curve(
    states: Path, tmp_path: Path, browser: Any
) -> None:
    from selenium.webdriver.common.by import By

    page = tmp_path / "lab.html"
    assert cli.main(["report", _last(states), "--html", str(page)]) == 0
    browser.get(page.as_uri())
    errors = [entry for entry in browser.get_log("browser") if entry["level"] in ("SEVERE", "WARNING")]
    assert errors == []
    rows = browser.find_elements(By.CSS_SELECTOR, "#hosts tbody tr")
    assert sorted(r.get_attribute("data-host") for r in rows) == ["cpu-node", "gpu-h100", "gpu-l40s"]
    for host in ("gpu-l40s", "gpu-h100", "cpu-node"):
        paths = browser.find_elements(By.CSS_SELECTOR, f"#host-{host} svg path.curve")
        assert len(paths) == 2, host  # xor and spirals
        for path in paths:
            assert path.get_attribute("d").count("L") >= 10
            box = browser.execute_script(
                "const b = arguments[0].getBBox(); return [b.width, b.height];", path
            )
            assert box[0] > 100 and box[1] > 10, (host, box)  # drawn, not collapsed to a point
    # The table sorts by a column when its header is clicked (the page's script ran).
    browser.find_element(By.CSS_SELECTOR, "#hosts th:nth-child(1)").click()
    first = [r.get_attribute("data-host") for r in browser.find_elements(By.CSS_SELECTOR, "#hosts tbody tr")]
    browser.find_element(By.CSS_SELECTOR, "#hosts th:nth-child(1)").click()
    second = [r.get_attribute("data-host") for r in browser.find_elements(By.CSS_SELECTOR, "#hosts tbody tr")]
    assert first == sorted(first) and second == sorted(first, reverse=True)
    assert browser.save_screenshot(str(tmp_path / "lab.png"))
    assert browser.get_log("browser") == []
