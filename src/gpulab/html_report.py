"""``gpulab report --html FILE``: one self-contained HTML page of a run (inline CSS, SVG and JS, no URL).

It shows the per-host table, the batches of a rolling run (``--batch``: which batch each host was in,
where the rollout stopped, the hosts it never reached), each host's MLP check training curves (loss per
epoch, per task; the CPU reference run beside a GPU run), each host's driver/CUDA history over the
recorded runs and what changed on each host, including the CUDA pins gpulab rewrote (``pin_changes``).
Everything comes from report.json files (docs/report-schema.md); nothing is fetched.
"""

from __future__ import annotations

import html
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from gpulab.report import NOT_REACHED, REPORT_COLUMNS, host_cells, load_report
from gpulab.runner import IDENT_RE, REPORT_NAME

_CSS = """
body{font:14px/1.45 system-ui,sans-serif;margin:2rem;color:#1d2330;background:#fafbfc}
h1{font-size:1.4rem;margin:0 0 .2rem}h2{font-size:1.15rem;margin:2rem 0 .5rem}h3{margin:1.2rem 0 .4rem}
.meta{color:#5b6475}table{border-collapse:collapse;margin:.4rem 0 1rem;background:#fff}
th,td{border:1px solid #d8dce3;padding:.3rem .6rem;text-align:left;vertical-align:top}
th{background:#eef1f5;cursor:pointer}.ok{color:#1a7f37;font-weight:600}
.failed,.unreachable,.interrupted,.error{color:#c62828;font-weight:600}
.stopped,.not-reached{color:#9a6700;font-weight:600}tr.batch-stopped,tr.batch-not-reached{background:#fff6db}
.host{background:#fff;border:1px solid #d8dce3;border-radius:6px;padding:.6rem 1rem;margin:1rem 0}
.changed{background:#fff6db}svg{background:#fff}.axis{stroke:#8a93a3}.grid{stroke:#eceff3}
.legend{font-size:12px}.none{color:#8a93a3}
"""

# Sorting the host table by a column: the page's only script.
_JS = """
document.querySelectorAll('table.sortable th').forEach(function (th, col) {
  th.addEventListener('click', function () {
    var body = th.closest('table').tBodies[0];
    var rows = Array.prototype.slice.call(body.rows);
    var dir = th.dataset.dir === 'asc' ? -1 : 1;
    th.dataset.dir = dir === 1 ? 'asc' : 'desc';
    rows.sort(function (a, b) {
      var x = a.cells[col].textContent, y = b.cells[col].textContent;
      return dir * x.localeCompare(y, undefined, {numeric: true});
    });
    rows.forEach(function (row) { body.appendChild(row); });
  });
});
"""

_COLORS = ("#1f6feb", "#d1242f", "#1a7f37", "#8250df", "#bf8700", "#0a7d8c")
_W, _H, _PAD = 560, 260, 48


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def load_history(states: Path) -> list[dict[str, Any]]:
    """Every readable report in the state directory, oldest first."""
    if not states.is_dir():
        return []
    reports = []
    for run in sorted(p for p in states.iterdir() if IDENT_RE.match(p.name)):
        path = run / REPORT_NAME
        if path.is_file():
            try:
                reports.append(load_report(path))
            except Exception:  # one damaged old report must not hide the others
                continue
    return reports


def curves(check: Mapping[str, Any] | None) -> list[tuple[str, list[tuple[float, float]], bool]]:
    """(label, [(epoch, loss)], is_reference) per MLP check task; the CPU reference run of a GPU check too."""
    if not isinstance(check, Mapping):
        return []
    tasks = check.get("tasks")
    if not isinstance(tasks, Mapping):
        return []
    where = f"{check.get('backend') or '?'}/{check.get('device') or '?'}"
    agreement = check.get("agreement")
    reference_tasks = agreement.get("tasks", {}) if isinstance(agreement, Mapping) else {}
    out: list[tuple[str, list[tuple[float, float]], bool]] = []
    for name, task in tasks.items():
        if not isinstance(task, Mapping):
            continue
        points = _points(task.get("loss_history"))
        if points:
            out.append((f"{name} ({where})", points, False))
        ref = reference_tasks.get(name) if isinstance(reference_tasks, Mapping) else None
        ref_points = _points(ref.get("reference_loss_history")) if isinstance(ref, Mapping) else []
        if ref_points:
            out.append((f"{name} (cpu reference)", ref_points, True))
    return out


def _points(raw: Any) -> list[tuple[float, float]]:
    """[[epoch, loss], ...] (or a plain list of losses, epoch = position) as finite positive points."""
    if not isinstance(raw, list):
        return []
    points = []
    for index, item in enumerate(raw):
        pair = item if isinstance(item, list | tuple) and len(item) == 2 else (index + 1, item)
        x, y = pair
        if isinstance(x, int | float) and isinstance(y, int | float) and math.isfinite(y) and y > 0:
            points.append((float(x), float(y)))
    return points


def svg_chart(series: Sequence[tuple[str, list[tuple[float, float]], bool]]) -> str:
    """A line chart of loss (log scale) against epoch, one path per series, with axes and a legend."""
    if not series:
        return '<p class="none">no training curve in this run (the MLP check did not run or is older)</p>'
    xs = [x for _, pts, _ in series for x, _ in pts]
    ys = [math.log10(y) for _, pts, _ in series for _, y in pts]
    x0, x1 = min(xs), max(xs) if max(xs) > min(xs) else min(xs) + 1
    y0, y1 = math.floor(min(ys)), math.ceil(max(ys)) if math.ceil(max(ys)) > math.floor(min(ys)) else 1
    y1 = max(y1, y0 + 1)

    def sx(x: float) -> float:
        return _PAD + (x - x0) / (x1 - x0) * (_W - 2 * _PAD)

    def sy(y: float) -> float:
        return _H - _PAD + (y0 - math.log10(y)) / (y1 - y0) * (_H - 2 * _PAD)

    parts = [
        f'<svg width="{_W}" height="{_H + 20 * len(series)}" '
        f'role="img" aria-label="MLP check training loss per epoch">'
    ]
    for exp in range(y0, y1 + 1):
        y = sy(10.0**exp)
        parts.append(f'<line class="grid" x1="{_PAD}" x2="{_W - _PAD}" y1="{y:.1f}" y2="{y:.1f}"/>')
        parts.append(f'<text x="{_PAD - 6}" y="{y + 4:.1f}" text-anchor="end" font-size="11">1e{exp}</text>')
    parts.append(f'<line class="axis" x1="{_PAD}" x2="{_W - _PAD}" y1="{_H - _PAD}" y2="{_H - _PAD}"/>')
    parts.append(f'<line class="axis" x1="{_PAD}" x2="{_PAD}" y1="{_PAD}" y2="{_H - _PAD}"/>')
    for tick in (x0, (x0 + x1) / 2, x1):
        parts.append(
            f'<text x="{sx(tick):.1f}" y="{_H - _PAD + 16}" text-anchor="middle" font-size="11">'
            f"{tick:.0f}</text>"
        )
    parts.append(f'<text x="{_W / 2}" y="{_H - 12}" text-anchor="middle" font-size="12">epoch</text>')
    parts.append(
        f'<text x="12" y="{_H / 2}" transform="rotate(-90 12 {_H / 2})" text-anchor="middle" '
        f'font-size="12">loss</text>'
    )
    for index, (label, points, reference) in enumerate(series):
        color = _COLORS[index // 2 % len(_COLORS)] if any(r for _, _, r in series) else _COLORS[index]
        path = " ".join(f"{'M' if i == 0 else 'L'}{sx(x):.1f},{sy(y):.1f}" for i, (x, y) in enumerate(points))
        dash = ' stroke-dasharray="5 4"' if reference else ""
        parts.append(
            f'<path class="curve" d="{path}" fill="none" stroke="{color}" stroke-width="2"{dash}>'
            f"<title>{_e(label)}: {len(points)} points, last loss {points[-1][1]:.4g}</title></path>"
        )
        ly = _H + 4 + 20 * index
        parts.append(f'<line x1="{_PAD}" x2="{_PAD + 24}" y1="{ly}" y2="{ly}" stroke="{color}"{dash}/>')
        parts.append(f'<text class="legend" x="{_PAD + 30}" y="{ly + 4}">{_e(label)}</text>')
    parts.append("</svg>")
    return "".join(parts)


def driver_history(host: str, history: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The host's driver and CUDA version in each recorded run that saw them (oldest first)."""
    rows = []
    for report in history:
        record = report.get("hosts", {}).get(host)
        if not isinstance(record, Mapping) or record.get("driver_version") is None:
            continue
        rows.append(
            {
                "ident": report.get("ident"),
                "when": report.get("started_at"),
                "command": report.get("command"),
                "driver": record.get("driver_version"),
                "cuda": record.get("cuda_version"),
                "previous": record.get("previous_driver_version"),
            }
        )
    return rows


def _history_table(host: str, record: Mapping[str, Any], history: Sequence[Mapping[str, Any]]) -> str:
    rows = driver_history(host, history)
    if not rows:
        return '<p class="none">no driver recorded for this host</p>'
    out = ["<table><thead><tr><th>run</th><th>started</th><th>command</th><th>driver</th><th>CUDA</th></tr>"]
    out.append("</thead><tbody>")
    first = rows[0]
    if first["previous"] and first["previous"] != first["driver"]:
        out.append(  # what cuda_check's local fact remembered from before the first recorded run
            f'<tr><td colspan="3">before (cuda_check local fact)</td><td>{_e(first["previous"])}</td>'
            "<td>-</td></tr>"
        )
    last: tuple[Any, Any] | None = None
    for row in rows:
        now = (row["driver"], row["cuda"])
        cls = ' class="changed"' if last is not None and now != last else ""
        cuda = row["cuda"] if row["cuda"] else "cpu" if row["cuda"] == "" else "-"
        out.append(
            f"<tr{cls}><td>{_e(row['ident'])}</td><td>{_e(row['when'])}</td><td>{_e(row['command'])}</td>"
            f"<td>{_e(row['driver'] or 'none')}</td><td>{_e(cuda)}</td></tr>"
        )
        last = now
    out.append("</tbody></table>")
    return "".join(out)


def _changes(record: Mapping[str, Any]) -> str:
    items = [f"{record.get('counts', {}).get('changed', 0)} task(s) changed something"]
    if record.get("driver_changed") and record.get("previous_driver_version"):
        items.append(f"driver {record['previous_driver_version']} → {record.get('driver_version')}")
    if record.get("env_action"):
        items.append(f"environment: {record['env_action']}")
    out = ["<ul>", *(f"<li>{_e(i)}</li>" for i in items)]
    out += [f"<li>changed: {_e(task)}</li>" for task in record.get("changed_tasks") or []]
    out.append("</ul>")
    pins = record.get("pin_changes")
    if isinstance(pins, list) and pins:
        out.append(
            "<table><thead><tr><th>CUDA pin rewritten</th><th>from</th><th>to</th></tr></thead><tbody>"
        )
        for pin in pins:
            if isinstance(pin, Mapping):
                out.append(
                    f"<tr><td>{_e(pin.get('name'))}</td><td>{_e(pin.get('from'))}</td>"
                    f"<td>{_e(pin.get('to'))}</td></tr>"
                )
        out.append("</tbody></table>")
    return "".join(out)


def _size(value: Any) -> str:
    return f"{value / 2**30:.2f} GiB" if isinstance(value, int | float) else "-"


def _envs(record: Mapping[str, Any]) -> str:
    """One row per environment of a host that manages several (dl_env's set_stats ``envs``), else ""."""
    stats = record.get("stats_data") or {}
    envs = stats.get("envs") if isinstance(stats, Mapping) else None
    if not isinstance(envs, Mapping) or not envs:
        return ""
    out = [
        "<h3>Environments</h3><table><thead><tr><th>env</th><th>action</th><th>MLP check</th>"
        "<th>framework</th><th>spec digest</th><th>disk</th><th>only this env</th></tr></thead><tbody>"
    ]
    for name, env in sorted(envs.items()):
        if not isinstance(env, Mapping):
            continue
        if env.get("passed") and env.get("verified") is False:
            check = f"not verified ({env.get('reason') or 'no check backend'})"
        elif "passed" in env:
            check = "passed" if env.get("passed") else f"failed: {env.get('reason') or ''}"
        else:
            check = "-"
        out.append(
            f"<tr><td>{_e(name)}</td><td>{_e(env.get('env_action') or env.get('state'))}</td>"
            f"<td>{_e(check)}</td><td>{_e(env.get('framework'))}</td>"
            f"<td>{_e(str(env.get('spec_digest') or '')[:12])}</td><td>{_e(_size(env.get('bytes')))}</td>"
            f"<td>{_e(_size(env.get('exclusive_bytes')))}</td></tr>"
        )
    total = _size(stats.get("disk_total_bytes"))
    out.append(f"</tbody></table><p>disk used by the host's environments: {_e(total)}</p>")
    return "".join(out)


def _host_link(name: str, hosts: Mapping[str, Mapping[str, Any]]) -> str:
    status = hosts.get(name, {}).get("status") or "-"
    return (
        f'<a href="#host-{_e(name)}" class="{_e(status)}" title="{_e(status)}">{_e(name)}</a> ({_e(status)})'
    )


def _rollout(report: Mapping[str, Any]) -> str:
    """A rolling run's batches (report ``batches``): its hosts, where the rollout stopped and why, the
    hosts it never reached; "" for a run without --batch."""
    batches = [b for b in report.get("batches") or [] if isinstance(b, Mapping)]
    if not batches:
        return ""
    hosts: Mapping[str, Mapping[str, Any]] = report.get("hosts", {})
    options = report.get("options") or {}
    out = [
        "<h2>Rolling run</h2>",
        f"<p class='meta'>{_e(batches[0].get('play'))}: batch size {_e(options.get('batch'))},"
        f" max fail {_e(options.get('max_fail_percentage'))}% · {len(batches)} batch(es) ran</p>",
        '<table id="batches"><thead><tr><th>batch</th><th>hosts</th><th>outcome</th></tr></thead><tbody>',
    ]
    for batch in batches:
        names = [str(h) for h in batch.get("hosts") or []]
        failed = [h for h in names if hosts.get(h, {}).get("status") in ("failed", "unreachable")]
        if batch.get("stopped"):
            outcome = f"the rollout stopped here: {', '.join(failed) or 'too many hosts'} failed"
        else:
            outcome = f"done, {', '.join(failed)} failed" if failed else "done"
        cls = ' class="batch-stopped"' if batch.get("stopped") else ""
        out.append(
            f'<tr{cls} data-batch="{_e(batch.get("batch"))}"><td>{_e(batch.get("batch"))}</td>'
            f"<td>{', '.join(_host_link(h, hosts) for h in names) or '-'}</td><td>{_e(outcome)}</td></tr>"
        )
    missed = [name for name, host in hosts.items() if host.get("status") == NOT_REACHED]
    if missed:
        out.append(
            '<tr class="batch-not-reached" data-batch="none"><td>not reached</td>'
            f"<td>{', '.join(_host_link(h, hosts) for h in missed)}</td>"
            f"<td>{_e(hosts[missed[0]].get('message'))}</td></tr>"
        )
    out.append("</tbody></table>")
    return "".join(out)


def render_html(report: Mapping[str, Any], history: Sequence[Mapping[str, Any]] = ()) -> str:
    """The page for ``report``; ``history`` (reports, oldest first) gives the driver/CUDA history."""
    hosts: Mapping[str, Mapping[str, Any]] = report.get("hosts", {})
    history = list(history) or [report]
    title = f"gpulab {report.get('command')} {report.get('ident')}"
    out = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<link rel="icon" href="data:,">',  # no favicon request
        f"<title>{_e(title)}</title><style>{_CSS}</style></head><body>",
        f"<h1>{_e(title)}: <span class='{_e(report.get('status'))}'>{_e(report.get('status'))}</span></h1>",
        f"<p class='meta'>exit {_e(report.get('exit_code'))} · {_e(report.get('started_at'))} → "
        f"{_e(report.get('ended_at'))} · {len(hosts)} hosts · artifacts {_e(report.get('artifacts'))}</p>",
        "<h2>Hosts</h2>",
        '<table class="sortable" id="hosts"><thead><tr>',
        *(f"<th>{_e(c)}</th>" for c in REPORT_COLUMNS),
        "</tr></thead><tbody>",
    ]
    for name, record in hosts.items():
        cells = host_cells(name, record)
        out.append(f'<tr data-host="{_e(name)}">')
        out += [
            f"<td class='{_e(cell)}'>{_e(cell)}</td>" if column == "status" else f"<td>{_e(cell)}</td>"
            for column, cell in zip(REPORT_COLUMNS, cells, strict=True)
        ]
        out.append("</tr>")
    out.append("</tbody></table>")
    out.append(_rollout(report))
    for name, record in hosts.items():
        out.append(f'<section class="host" id="host-{_e(name)}"><h2>{_e(name)}</h2>')
        out.append("<h3>MLP check training curve</h3>")
        out.append(svg_chart(curves(record.get("mlp_check"))))
        out.append("<h3>Driver and CUDA across runs</h3>")
        out.append(_history_table(name, record, history))
        out.append("<h3>What changed</h3>")
        out.append(_changes(record))
        out.append(_envs(record))
        out.append("</section>")
    errors = report.get("errors") or []
    if errors:
        out.append("<h2>ansible errors</h2><ul>")
        out += [f"<li>{_e(e)}</li>" for e in errors]
        out.append("</ul>")
    out.append(f"<script>{_JS}</script></body></html>")
    return "\n".join(out) + "\n"


def write_html(report: Mapping[str, Any], history: Sequence[Mapping[str, Any]], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render_html(report, history), encoding="utf-8")
