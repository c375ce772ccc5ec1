"""HTML sink: one self-contained file (inline CSS, JS and SVG; no network) written at run end.

    pytest --sandbox=local -n 2 --sandbox-html=report.html

It shows the run summary, a timeline with one lane per xdist worker (tests coloured by outcome,
faults from chaos markers drawn as bands) and a sortable, filterable table of every test with
its phase times, faults, failure reason and links to its artifacts (paths relative to the file).
"""

from __future__ import annotations

import datetime as dt
import json
import os
from html import escape
from pathlib import Path
from typing import Any

from ..redaction import redact
from .events import Event
from .stages import bringup_svg

OUTCOMES = ("passed", "failed", "error", "skipped", "xfailed", "xpassed")


class HtmlSink:
    """Keeps the run's events and writes ``path`` when the run ends."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.events: list[Event] = []
        self._closed = False

    def emit(self, event: Event) -> None:
        """Remember one event."""
        self.events.append(event)

    def close(self) -> None:
        """Write the report (once)."""
        if self._closed:
            return
        self._closed = True
        tmp = self.path.with_name(self.path.name + ".tmp")
        tmp.write_text(render(self.events, self.path.parent), encoding="utf-8")
        tmp.replace(self.path)


def _fmt_s(seconds: float) -> str:
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 120:
        return f"{seconds:.2f} s"
    return f"{seconds / 60:.1f} min"


def _when(timestamp: float | None) -> str:
    if not timestamp:
        return "-"
    return dt.datetime.fromtimestamp(timestamp, dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


_START_KEYS = ("applied_at", "started", "start")
_END_KEYS = ("removed_at", "ended", "end")


def _fault_label(entry: Any) -> str:
    """``latency(ms=300, target=db)`` from a chaos record (``kind``, ``target``, ``params``...)."""
    if not isinstance(entry, dict):
        return str(entry)
    kind = entry.get("kind") or entry.get("marker") or entry.get("name") or "fault"
    if isinstance(entry.get("params"), dict):
        # A chaos record: what was asked for; the measurements go into the tooltip.
        args = [str(entry["target"])] if entry.get("target") else []
        for key, value in entry["params"].items():
            args.append(f"{key}={value:g}" if isinstance(value, float) else f"{key}={value}")
        return f"{kind}({', '.join(args)})"
    fields = dict(entry)
    details = ", ".join(
        f"{k}={v}"
        for k, v in fields.items()
        if k not in {"kind", "marker", "name", *_START_KEYS, *_END_KEYS}
        and isinstance(v, str | int | float)
    )
    return f"{kind}({details})" if details else str(kind)


def _fault_window(entry: Any, test: Event) -> tuple[float, float]:
    start, end = float(test.get("started") or 0), float(test.get("finished") or 0)
    if isinstance(entry, dict):
        start = float(next((entry[k] for k in _START_KEYS if entry.get(k)), start))
        end = float(next((entry[k] for k in _END_KEYS if entry.get(k)), end))
    return start, max(end, start)


def _link(path: str, base: Path) -> str:
    try:
        href = os.path.relpath(path, base)
    except ValueError:
        href = path
    return f'<a href="{escape(Path(href).as_posix())}">{escape(Path(path).name)}</a>'


def _bringup(sandbox: dict[str, Any]) -> str:
    svg = bringup_svg(dict(sandbox.get("timings") or {}))
    extra = sandbox.get("extra") or {}
    if svg and extra.get("argocd_application"):  # the argocd deployer: what Argo CD synced
        svg += (
            f"<p>Argo CD Application {escape(str(extra['argocd_application']))} synced revision "
            f"<code>{escape(str(extra.get('synced_revision') or '?'))}</code></p>"
        )
    return f"<section><h2>Bring-up before the first test</h2>{svg}</section>" if svg else ""


def _timeline(tests: list[Event], t0: float, t1: float) -> str:
    lanes = sorted({t.get("worker") or "main" for t in tests}, key=lambda w: (len(w), w))
    faults = [(entry, t) for t in tests for entry in t.get("chaos") or []]
    rows = [*lanes, *(["faults"] if faults else [])]
    width, label_w, lane_h = 1200, 70, 22
    span = max(t1 - t0, 1e-3)
    height = 24 + lane_h * len(rows)

    def x(ts: float) -> float:
        return label_w + (width - label_w - 10) * (ts - t0) / span

    parts = [
        f'<svg class="timeline" viewBox="0 0 {width} {height}" role="img" '
        f'aria-label="timeline of tests per worker">'
    ]
    for i in range(6):
        ts = t0 + span * i / 5
        parts.append(
            f'<line x1="{x(ts):.1f}" x2="{x(ts):.1f}" y1="16" y2="{height}" class="grid"/>'
            f'<text x="{x(ts):.1f}" y="11" class="tick{" end" if i == 5 else ""}">'
            f"+{_fmt_s(ts - t0)}</text>"
        )
    for row, lane in enumerate(rows):
        y = 18 + row * lane_h
        parts.append(f'<text x="4" y="{y + 14}" class="lane">{escape(lane)}</text>')
    for test in tests:
        y = 18 + lanes.index(test.get("worker") or "main") * lane_h
        start, end = float(test.get("started") or t0), float(test.get("finished") or t0)
        w = max(x(end) - x(start), 1.5)
        tip = f"{test['nodeid']} - {test['outcome']} in {_fmt_s(float(test.get('duration', 0)))}"
        parts.append(
            f'<rect x="{x(start):.1f}" y="{y + 2}" width="{w:.1f}" height="{lane_h - 6}" '
            f'class="t {escape(test["outcome"])}" data-nodeid="{escape(test["nodeid"])}">'
            f"<title>{escape(tip)}</title></rect>"
        )
    if faults:
        y = 18 + len(lanes) * lane_h
        for entry, test in faults:
            start, end = _fault_window(entry, test)
            w = max(x(end) - x(start), 2.0)
            measured = ", ".join(
                f"{k}={v}"
                for k, v in (entry.items() if isinstance(entry, dict) else [])
                if k not in {"kind", "target", "marker", *_START_KEYS, *_END_KEYS}
                and isinstance(v, str | int | float)
            )
            tip = f"{_fault_label(entry)} during {test['nodeid']}" + (
                f"\n{measured}" if measured else ""
            )
            parts.append(
                f'<rect x="{x(start):.1f}" y="{y + 2}" width="{w:.1f}" height="{lane_h - 6}" '
                f'class="fault"><title>{escape(tip)}</title></rect>'
            )
    parts.append("</svg>")
    return "".join(parts)


def render(events: list[Event], base: Path) -> str:
    """The whole report as one HTML string; links are relative to the folder ``base``."""
    started = next((e for e in events if e["event"] == "run_started"), {})
    finished = next((e for e in events if e["event"] == "run_finished"), {})
    tests = [e for e in events if e["event"] == "test_finished"]
    sandbox = started.get("sandbox") or {}
    counts: dict[str, int] = {}
    for test in tests:
        counts[test["outcome"]] = counts.get(test["outcome"], 0) + 1
    # The timeline spans the tests (bring-up and teardown are in the summary).
    t0 = min((float(t["started"]) for t in tests), default=float(started.get("time") or 0))
    t1 = max((float(t["finished"]) for t in tests), default=t0)
    workers = sorted({t.get("worker") or "main" for t in tests})
    status = "failed" if counts.get("failed") or counts.get("error") else "passed"
    if finished.get("exitstatus") not in (None, 0, 5) and status == "passed":
        status = "failed"
    if not finished:
        status = "incomplete"

    cards = [
        f'<div class="card {o}"><b>{counts.get(o, 0)}</b><span>{o}</span></div>'
        for o in OUTCOMES
        if counts.get(o) or o in ("passed", "failed")
    ]
    facts = [
        ("sandbox", f"{sandbox.get('id', '-')} ({started.get('backend', '-')})"),
        ("endpoint", sandbox.get("endpoint") or "-"),
        *([("namespace", sandbox["namespace"])] if sandbox.get("namespace") else []),
        ("run id", started.get("run_id", "-")),
        ("owner", sandbox.get("owner", "-")),
        ("started", _when(started.get("time"))),
        ("duration", _fmt_s(float(finished.get("duration") or (t1 - t0)))),
        ("workers", ", ".join(workers) or "-"),
        (
            "bring-up / teardown",
            f"{_fmt_s(float((sandbox.get('timings') or {}).get('ready_s') or 0))} / "
            f"{_fmt_s(float(finished.get('teardown_s') or 0))}",
        ),
    ]
    if started.get("error"):
        facts.append(("provisioning error", str(started["error"])))
    rows = []
    order: dict[str, int] = {}
    for outcome in ("failed", "error", "xpassed", *OUTCOMES):
        order.setdefault(outcome, len(order))
    for test in sorted(tests, key=lambda t: (order.get(t["outcome"], 9), t["started"])):
        chaos = ", ".join(_fault_label(c) for c in test.get("chaos") or [])
        links = " ".join(_link(p, base) for p in test.get("artifacts") or [])
        message = test.get("message") or ""
        if test.get("crashed"):
            message = f"the xdist worker running this test crashed\n{message}"
        first = next((ln for ln in message.splitlines() if ln.strip()), "")
        first = first.removeprefix("E").strip()
        summary = escape(first[:90] + ("..." if len(first) > 90 else "")) or "details"
        detail = f"<details><summary>{summary}</summary><pre>{escape(message)}</pre></details>"
        rows.append(
            f'<tr class="{escape(test["outcome"])}" data-outcome="{escape(test["outcome"])}">'
            f'<td><span class="badge {escape(test["outcome"])}">{escape(test["outcome"])}</span>'
            f'</td><td class="nodeid">{escape(test["nodeid"])}</td>'
            f"<td>{escape(test.get('worker') or 'main')}</td>"
            f'<td class="num" data-v="{test.get("duration", 0)}">'
            f"{_fmt_s(float(test.get('duration', 0)))}</td>"
            f'<td class="num phases">{_fmt_s(float(test.get("setup", 0)))} / '
            f"{_fmt_s(float(test.get('call', 0)))} / {_fmt_s(float(test.get('teardown', 0)))}</td>"
            f"<td>{escape(chaos) or '-'}</td><td>{links or '-'}</td>"
            f"<td>{detail if message else ''}</td></tr>"
        )
    title = f"livesandbox report - {sandbox.get('id', 'no sandbox')} - {status}"
    fact_html = "".join(f"<dt>{escape(k)}</dt><dd>{escape(str(v))}</dd>" for k, v in facts)
    data = json.dumps({"counts": counts, "tests": len(tests)})
    doc = _TEMPLATE.format(
        title=escape(title),
        status=status,
        cards="".join(cards),
        total=len(tests),
        facts=fact_html,
        timeline=_timeline(tests, t0, t1) if tests else "<p>No tests ran.</p>",
        bringup=_bringup(sandbox),
        rows="".join(rows),
        css=_CSS,
        js=_JS,
        data=escape(data),
    )
    return redact(doc)


_CSS = """
:root{--ok:#2e9b5f;--bad:#d64545;--err:#b3261e;--skip:#8a8f98;--xf:#9a7b00;--xp:#c56b00;
--fault:#e8912d;--ink:#1d232b;--muted:#5f6b7a;--line:#e3e7ed;--bg:#f6f8fa}
*{box-sizing:border-box}
body{margin:0;font:14px/1.45 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;
color:var(--ink);background:var(--bg)}
header{padding:18px 28px;background:#fff;border-bottom:1px solid var(--line);display:flex;
align-items:center;gap:16px}
header h1{font-size:19px;margin:0;font-weight:600}
.status{padding:3px 10px;border-radius:12px;color:#fff;font-weight:600;font-size:12px;
text-transform:uppercase;letter-spacing:.04em}
.status.passed{background:var(--ok)}.status.failed{background:var(--bad)}
.status.incomplete{background:var(--xp)}
main{padding:18px 28px;max-width:1500px}
section{background:#fff;border:1px solid var(--line);border-radius:8px;padding:14px 18px;
margin-bottom:16px}
h2{font-size:15px;margin:0 0 10px;font-weight:600}
.summary{display:flex;gap:24px;flex-wrap:wrap;align-items:flex-start}
.cards{display:flex;gap:10px}
.card{min-width:84px;padding:8px 12px;border-radius:8px;background:var(--bg);
border-left:4px solid var(--skip)}
.card b{display:block;font-size:22px}.card span{color:var(--muted);font-size:12px}
.card.passed{border-color:var(--ok)}.card.failed{border-color:var(--bad)}
.card.error{border-color:var(--err)}.card.xfailed{border-color:var(--xf)}
.card.xpassed{border-color:var(--xp)}
dl{display:grid;grid-template-columns:max-content 1fr;gap:2px 14px;margin:0;font-size:13px}
dt{color:var(--muted)}dd{margin:0;font-family:ui-monospace,SFMono-Regular,Menlo,monospace}
svg.timeline{width:100%;height:auto;display:block}
.grid{stroke:var(--line)}.tick{font-size:10px;fill:var(--muted);text-anchor:middle}
.tick.end{text-anchor:end}
.lane{font-size:12px;fill:var(--muted);font-family:ui-monospace,monospace}
rect.t{rx:2}rect.t.passed{fill:var(--ok)}rect.t.failed{fill:var(--bad)}rect.t.error{fill:var(--err)}
rect.t.skipped{fill:var(--skip)}rect.t.xfailed{fill:var(--xf)}rect.t.xpassed{fill:var(--xp)}
rect.t:hover,rect.t.hl{stroke:var(--ink);stroke-width:1.5}
rect.fault{fill:var(--fault);opacity:.75}
.legend{font-size:12px;color:var(--muted);margin-top:6px}
.legend i{display:inline-block;width:10px;height:10px;border-radius:2px;margin:0 4px 0 12px;
vertical-align:-1px}
.tools{display:flex;gap:8px;margin-bottom:10px;flex-wrap:wrap}
.tools button{border:1px solid var(--line);background:#fff;border-radius:14px;padding:3px 12px;
cursor:pointer;font:inherit;font-size:12px}
.tools button.on{background:var(--ink);color:#fff;border-color:var(--ink)}
.tools input{flex:1;min-width:220px;border:1px solid var(--line);border-radius:6px;
padding:4px 10px;font:inherit}
table{border-collapse:collapse;width:100%;font-size:13px}
th{text-align:left;color:var(--muted);font-weight:600;border-bottom:2px solid var(--line);
padding:6px 8px;cursor:pointer;user-select:none;white-space:nowrap}
td{border-bottom:1px solid var(--line);padding:5px 8px;vertical-align:top}
td.nodeid{font-family:ui-monospace,SFMono-Regular,Menlo,monospace;overflow-wrap:break-word}
td.num{text-align:right;white-space:nowrap}td.phases{color:var(--muted)}
.badge{display:inline-block;min-width:58px;text-align:center;padding:1px 6px;border-radius:10px;
font-size:11px;font-weight:600;color:#fff;background:var(--skip)}
.badge.passed{background:var(--ok)}.badge.failed{background:var(--bad)}
.badge.error{background:var(--err)}.badge.xfailed{background:var(--xf)}
.badge.xpassed{background:var(--xp)}
tr.failed td,tr.error td{background:#fff6f6}
pre{white-space:pre-wrap;margin:6px 0 0;font-size:12px;background:var(--bg);padding:6px 8px;
border-radius:4px;max-height:280px;overflow:auto}
details summary{cursor:pointer;color:var(--muted);font-size:12px}
td:last-child{max-width:300px;min-width:180px}
.scroll{overflow-x:auto}
a{color:#0b63c5}
footer{color:var(--muted);font-size:12px;padding:0 28px 24px}
"""

_JS = """
(function(){
  var rows=[].slice.call(document.querySelectorAll('#tests tbody tr'));
  var q=document.getElementById('q'), want='all';
  function apply(){
    var text=q.value.toLowerCase(), shown=0;
    rows.forEach(function(r){
      var ok=(want==='all'||r.dataset.outcome===want)&&
        r.cells[1].textContent.toLowerCase().indexOf(text)>=0;
      r.style.display=ok?'':'none'; if(ok)shown++;
    });
    document.getElementById('shown').textContent=shown;
  }
  [].forEach.call(document.querySelectorAll('.tools button'),function(b){
    b.addEventListener('click',function(){
      [].forEach.call(document.querySelectorAll('.tools button'),function(o){
        o.classList.remove('on');});
      b.classList.add('on'); want=b.dataset.f; apply();
    });
  });
  q.addEventListener('input',apply);
  [].forEach.call(document.querySelectorAll('#tests th'),function(th,i){
    th.addEventListener('click',function(){
      var asc=th.dataset.asc!=='1'; th.dataset.asc=asc?'1':'0';
      var body=document.querySelector('#tests tbody');
      rows.sort(function(a,b){
        var x=a.cells[i].dataset.v||a.cells[i].textContent,
            y=b.cells[i].dataset.v||b.cells[i].textContent;
        var nx=parseFloat(x), ny=parseFloat(y);
        var c=(!isNaN(nx)&&!isNaN(ny))?nx-ny:x.localeCompare(y);
        return asc?c:-c;
      });
      rows.forEach(function(r){body.appendChild(r);});
    });
  });
  [].forEach.call(document.querySelectorAll('rect.t'),function(r){
    r.addEventListener('click',function(){
      q.value=r.dataset.nodeid; apply();
      document.getElementById('tests').scrollIntoView();
    });
  });
})();
"""

_TEMPLATE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title><style>{css}</style></head>
<body data-summary="{data}">
<header><h1>pytest-livesandbox report</h1><span class="status {status}">{status}</span></header>
<main>
<section><h2>Summary</h2><div class="summary"><div class="cards">{cards}</div>
<dl>{facts}</dl></div></section>
{bringup}<section><h2>Timeline</h2>{timeline}
<div class="legend"><i style="background:var(--ok)"></i>passed<i style="background:var(--bad)">
</i>failed<i style="background:var(--err)"></i>error<i style="background:var(--skip)"></i>skipped
<i style="background:var(--fault)"></i>fault (chaos)</div></section>
<section><h2>Tests (<span id="shown">{total}</span> of {total})</h2>
<div class="tools"><button class="on" data-f="all">all</button>
<button data-f="failed">failed</button><button data-f="error">error</button>
<button data-f="passed">passed</button><button data-f="skipped">skipped</button>
<input id="q" placeholder="filter by test id" aria-label="filter by test id"></div>
<div class="scroll"><table id="tests"><thead><tr><th>outcome</th><th>test</th><th>worker</th>
<th>duration</th>
<th>setup / call / teardown</th><th>faults</th><th>artifacts</th><th>reason</th></tr></thead>
<tbody>{rows}</tbody></table></div></section>
</main>
<footer>Written by pytest-livesandbox; self-contained, no network access needed.</footer>
<script>{js}</script>
</body></html>
"""
