"""The web view's one page: HTML with its CSS and script inline, nothing from the internet.

The Content-Security-Policy allows exactly this script and this style (by their SHA-256) and
same-origin connections, nothing else: an injected ``<script>`` or ``onerror=`` would not run
even if some value reached the DOM as markup. And none does: the script builds every node
with ``createElement`` and puts data in with ``textContent`` only.
"""

from __future__ import annotations

import base64
import hashlib

STYLE = """
:root{--bg:#f6f7f9;--fg:#1d232b;--mute:#66707c;--card:#fff;--line:#dde1e6;
--idle:#2f9e44;--worker:#1c7ed6;--paused:#e8590c;--owner-busy:#f08c00;--unreachable:#868e96;
--failed:#e03131;--running:#1c7ed6;--waiting:#ced4da;--done:#2f9e44}
@media (prefers-color-scheme:dark){:root{--bg:#15181c;--fg:#e6e8eb;--mute:#98a1ab;
--card:#1e2227;--line:#333a42;--waiting:#495057}}
*{box-sizing:border-box}
body{margin:0;font:15px/1.4 system-ui,sans-serif;background:var(--bg);color:var(--fg)}
header{display:flex;flex-wrap:wrap;gap:.5em 1em;align-items:baseline;padding:.8em 1em;
background:var(--card);border-bottom:1px solid var(--line)}
header h1{font-size:1.15em;margin:0}
#conn{margin-left:auto;color:var(--mute)} #conn.live{color:var(--idle)}
main{padding:.5em 1em 2em;max-width:1200px;margin:0 auto}
section{background:var(--card);border:1px solid var(--line);border-radius:8px;
padding:.6em .9em;margin:.8em 0}
h2{font-size:1.05em;margin:.2em 0 .5em}
.chips{display:flex;flex-wrap:wrap;gap:.4em;margin-bottom:.5em}
.chip{border-radius:999px;padding:.1em .6em;font-size:.85em;color:#fff;background:var(--mute)}
.s-idle{background:var(--idle)}.s-worker{background:var(--worker)}.s-paused{background:var(--paused)}
.s-owner-busy{background:var(--owner-busy)}.s-unreachable{background:var(--unreachable)}
.t-failed{color:var(--failed);font-weight:600}.t-done{color:var(--done)}
.t-running{color:var(--running)}
.scroll{overflow-x:auto}
table{border-collapse:collapse;width:100%}
th,td{text-align:left;padding:.3em .5em;border-bottom:1px solid var(--line);vertical-align:top}
th{font-size:.8em;text-transform:uppercase;color:var(--mute);font-weight:600}
tr.pick{cursor:pointer} tr.pick:hover,tr.sel{background:rgba(28,126,214,.08)}
.bar{display:flex;height:.7em;min-width:6em;border-radius:4px;overflow:hidden;background:var(--waiting)}
.bar span{display:block;height:100%}
.b-done{background:var(--done)}.b-running{background:var(--running)}.b-failed{background:var(--failed)}
.mute{color:var(--mute)}
pre.stderr{white-space:pre-wrap;word-break:break-all;background:var(--bg);
border:1px solid var(--line);border-radius:4px;padding:.4em;margin:.3em 0 0;
max-height:14em;overflow:auto;font-size:.85em}
button{font:inherit}
@media (max-width:640px){
 main{padding:.3em .4em 2em} section{padding:.5em}
 table,thead,tbody,tr,td{display:block;width:100%} thead{display:none}
 tr{border-bottom:1px solid var(--line);padding:.3em 0} td{border:0;padding:.1em .2em}
 td[data-label]::before{content:attr(data-label) ": ";color:var(--mute);font-size:.85em}
}
"""

SCRIPT = r"""
"use strict";
const token = new URLSearchParams(location.search).get("token") || "";
let selected = "";
const m = /^#app=([A-Za-z0-9._-]{1,64})$/.exec(location.hash);
if (m) selected = m[1];
let source = null;

function el(tag, cls, value) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (value !== undefined && value !== null) e.textContent = String(value);
  return e;
}
function cell(tr, label, value, cls) {
  const td = el("td", cls, value);
  td.setAttribute("data-label", label);
  tr.appendChild(td);
  return td;
}
function clear(node) { while (node.firstChild) node.removeChild(node.firstChild); }
function fmtSecs(s) {
  if (s === null || s === undefined) return "-";
  s = Math.round(s);
  if (s < 90) return s + " s";
  if (s < 5400) return Math.round(s / 60) + " min";
  return (s / 3600).toFixed(1) + " h";
}
function connect() {
  if (source) source.close();
  const q = new URLSearchParams();
  q.set("token", token);
  if (selected) q.set("app", selected);
  source = new EventSource("/events?" + q.toString());
  source.onopen = () => setConn(true);
  source.onerror = () => setConn(false);
  source.onmessage = (ev) => render(JSON.parse(ev.data));
}
function setConn(live) {
  const c = document.getElementById("conn");
  c.textContent = live ? "live" : "reconnecting…";
  c.className = live ? "live" : "";
}
function pick(app) {
  selected = app;
  history.replaceState(null, "", location.pathname + location.search + (app ? "#app=" + app : ""));
  connect();
}
function render(s) {
  document.getElementById("grid").textContent = "grid " + s.grid + " · seen from " + s.host;
  document.getElementById("updated").textContent = "updated " + new Date().toLocaleTimeString();
  renderMachines(s);
  renderApps(s.apps);
  renderDetail(s.detail);
}
function renderMachines(s) {
  const chips = document.getElementById("machine-counts");
  clear(chips);
  for (const [state, n] of Object.entries(s.by_state)) {
    if (!n) continue;
    const c = el("span", "chip s-" + state, n + " " + state);
    c.setAttribute("data-state", state);
    chips.appendChild(c);
  }
  const body = document.querySelector("#machines tbody");
  clear(body);
  for (const r of s.machines) {
    const tr = el("tr");
    tr.setAttribute("data-state", r.state);
    cell(tr, "host", r.host, "host");
    const st = cell(tr, "state", "");
    st.appendChild(el("span", "chip s-" + r.state, r.state));
    cell(tr, "app", r.app || "-", "app");
    cell(tr, "cpus/slots", (r.cpus ?? "-") + " / " + (r.slots ?? "-"));
    cell(tr, "memory", r.mem_mb ? r.mem_mb + " MB" : "-");
    cell(tr, "backends", r.backends.join(", ") || "-");
    cell(tr, "addresses", r.addresses.join(", ") || "-", "mute");
    const coord = r.coordinates.length ? "coordinates " + r.coordinates.join(", ") : "";
    cell(tr, "note", r.note || coord, "mute");
    body.appendChild(tr);
  }
  document.getElementById("no-machines").hidden = s.machines.length > 0;
}
function bar(counts) {
  const b = el("div", "bar");
  const total = Object.values(counts).reduce((a, n) => a + n, 0) || 1;
  for (const k of ["done", "running", "failed"]) {
    const n = counts[k] || 0;
    if (!n) continue;
    const span = el("span", "b-" + k);
    span.style.width = (100 * n / total) + "%";
    span.title = n + " " + k;
    b.appendChild(span);
  }
  return b;
}
function renderApps(apps) {
  const body = document.querySelector("#apps tbody");
  clear(body);
  for (const a of apps) {
    const tr = el("tr", "pick" + (a.app === selected ? " sel" : ""));
    tr.setAttribute("data-app", a.app);
    tr.addEventListener("click", () => pick(a.app));
    cell(tr, "app", a.app, "app");
    cell(tr, "name", a.name, "name");
    cell(tr, "owner", a.user);
    cell(tr, "coordinator", a.coordinator + " (term " + (a.term ?? "-") + ")");
    cell(tr, "state", a.state, "state");
    const p = cell(tr, "progress", "");
    if (a.counts) {
      p.appendChild(bar(a.counts));
      const parts = Object.entries(a.counts).filter(([, n]) => n).map(([k, n]) => n + " " + k);
      p.appendChild(el("div", "counts mute", parts.join(" · ")));
    } else {
      p.textContent = "held by " + a.coordinator;
    }
    cell(tr, "ETA", a.eta === null || a.eta === undefined ? "-" : fmtSecs(a.eta), "eta");
    cell(tr, "waiting", a.waiting_reason || "", "waiting mute");
    body.appendChild(tr);
  }
  document.getElementById("no-apps").hidden = apps.length > 0;
}
function renderDetail(d) {
  const sec = document.getElementById("detail");
  sec.hidden = !selected;
  if (!selected) return;
  document.getElementById("detail-title").textContent =
    "Tasks of " + selected + (d && d.name ? " (" + d.name + ")" : "");
  const info = document.getElementById("detail-info");
  const body = document.querySelector("#tasks tbody");
  clear(body);
  if (!d) {
    info.textContent = "This machine does not hold this app: open the view on its coordinator.";
    return;
  }
  const o = d.outcome || {};
  info.textContent = (o.state || "running") + (o.reason ? " — " + o.reason : "") +
    " · " + d.total + " task(s)" +
    (d.total > d.tasks.length ? ", first " + d.tasks.length + " shown" : "");
  for (const t of d.tasks) {
    const tr = el("tr");
    tr.setAttribute("data-task", t.id);
    tr.setAttribute("data-state", t.state);
    cell(tr, "task", t.id, "task");
    cell(tr, "state", t.state, "state t-" + t.state);
    cell(tr, "attempts", t.attempts ?? "-");
    cell(tr, "worker", t.worker || "-", "worker");
    cell(tr, "exit", t.exit_code ?? "-");
    cell(tr, "seconds", t.seconds ?? "-");
    cell(tr, "started", t.started || "-", "mute");
    cell(tr, "ended", t.ended || "-", "mute");
    const why = cell(tr, "reason", t.reason || "", "reason");
    if (t.stderr_tail !== null && t.stderr_tail !== undefined) {
      why.appendChild(el("pre", "stderr", t.stderr_tail));
    }
    body.appendChild(tr);
  }
}
document.getElementById("close-detail").addEventListener("click", () => pick(""));
connect();
"""

BODY = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="no-referrer">
<title>bonjourgrid</title>
<style>{style}</style></head>
<body>
<header><h1>bonjourgrid</h1><span id="grid" class="mute"></span>
<span id="updated" class="mute"></span><span id="conn">connecting…</span></header>
<main>
<section id="machines-section"><h2>Machines</h2><div id="machine-counts" class="chips"></div>
<div class="scroll"><table id="machines"><thead><tr><th>Host</th><th>State</th><th>App</th>
<th>CPUs / slots</th><th>Memory</th><th>Backends</th><th>Addresses</th><th>Note</th></tr></thead>
<tbody></tbody></table></div><p id="no-machines" class="mute">No volunteer seen yet.</p></section>
<section id="apps-section"><h2>Apps on the LAN</h2>
<div class="scroll"><table id="apps"><thead><tr><th>App</th><th>Name</th><th>Owner</th>
<th>Coordinator</th><th>State</th><th>Progress</th><th>ETA</th><th>Waiting</th></tr></thead>
<tbody></tbody></table></div><p id="no-apps" class="mute">No app on the LAN.</p></section>
<section id="detail" hidden><h2 id="detail-title"></h2>
<p><span id="detail-info" class="mute"></span>
<button id="close-detail" type="button">close</button></p>
<div class="scroll"><table id="tasks"><thead><tr><th>Task</th><th>State</th><th>Attempts</th>
<th>Worker</th><th>Exit</th><th>Seconds</th><th>Started</th><th>Ended</th><th>Reason / stderr</th>
</tr></thead><tbody></tbody></table></div></section>
</main>
<script>{script}</script>
</body></html>
"""


def _sha256(text: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode()).digest()).decode() + "'"


HTML = BODY.replace("{style}", STYLE).replace("{script}", SCRIPT).encode("utf-8")

CSP = (
    "default-src 'self'; "
    f"script-src {_sha256(SCRIPT)}; "
    f"style-src {_sha256(STYLE)}; "
    "img-src 'self' data:; connect-src 'self'; object-src 'none'; "
    "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
"""The page's policy; every other answer gets ``API_CSP``."""

API_CSP = "default-src 'none'; frame-ancestors 'none'"
