// Baton dashboard: renders GET /v1/events/stream (Server-Sent Events) from
// the agent that serves this page. No framework and no build step: the
// agent embeds these files as they are.
"use strict";

const TOKEN_KEY = "baton.apiToken"; // sessionStorage: gone when the tab closes
const DAY = 24 * 3600 * 1000;
const STALE_MS = 3000; // no status for this long: say the view may be stale

const state = {
  status: null,      // last status frame
  statusAt: 0,       // performance.now() when it arrived
  structure: "",     // what the last full render showed (see structureKey)
  history: new Map(),// seq → history entry
  connected: false,
  lostAt: null,
  windowMs: DAY,     // the window ending now; or
  range: null,       // {from, to}: a range dragged on the strip, or "fit"
};

const $ = (id) => document.getElementById(id);
const esc = (s) => String(s ?? "").replace(/[&<>"']/g, (c) => ({"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;"}[c]));
const token = () => sessionStorage.getItem(TOKEN_KEY) || "";

// ---- stream ---------------------------------------------------------------

function connect() {
  // EventSource reconnects by itself (retry: from the server) and sends
  // Last-Event-ID, so the server resends only the history we lack.
  const es = new EventSource("../v1/events/stream");
  es.onopen = () => { state.connected = true; state.lostAt = null; renderConn(); renderBanners(); };
  es.onerror = () => {
    if (state.connected || state.lostAt === null) state.lostAt = new Date();
    state.connected = false;
    renderConn(); renderBanners();
  };
  es.addEventListener("status", (e) => {
    state.status = JSON.parse(e.data);
    state.statusAt = performance.now();
    state.connected = true;
    render();
    if (token()) withFullChecks(state.status);
  });
  es.addEventListener("history", (e) => {
    const ev = JSON.parse(e.data);
    state.history.set(ev.seq, ev);
    renderTimeline();
  });
}

// withFullChecks: the stream carries only the public check details (an
// EventSource cannot send the token, and one stream serves every viewer);
// with a token the page asks /v1/status?stale=true for the full ones (a
// check URL's password and query, an exec check's output) and shows those.
let fullSeq = 0;
async function withFullChecks(st) {
  if (!st) return;
  const seq = ++fullSeq;
  try {
    const r = await fetch("../v1/status?stale=true", {headers: {"Authorization": "Bearer " + token()}});
    if (!r.ok) return;
    const full = await r.json();
    if (seq !== fullSeq || state.status !== st) return; // a newer frame is in
    for (const g of st.groups || []) {
      const fg = (full.groups || []).find((x) => x.name === g.name);
      if (fg) g.checks = fg.checks;
    }
    state.structure = "";
    render();
  } catch (_) { /* the stream's public details stay */ }
}

// ---- rendering ------------------------------------------------------------

function render() {
  const st = state.status;
  if (!st) return;
  $("cluster-name").textContent = "· " + st.cluster;
  $("served-by").textContent = st.node;
  const self = (st.nodes || []).find((n) => n.self);
  $("served-api").textContent = self ? "(" + self.api + ")" : "";
  document.title = "Baton · " + st.cluster + " · " + st.node;
  renderConn();
  renderBanners();
  const key = structureKey(st);
  if (key !== state.structure) {
    state.structure = key;
    renderNodes(st);
    renderGroups(st);
  } else {
    updateLastHeard(st);
  }
  updateLeases();
}

// structureKey is the status without the clocks that move on their own, so
// a lease renewal does not rebuild the page (and close an open menu).
function structureKey(st) {
  return JSON.stringify(st, (k, v) => (k === "generated" || k === "lease_remaining_ms" || k === "last_seen_ms" ||
    k === "applied_index" || k === "took" || k === "at" || k === "consecutive") ? undefined : v) + "|" + (token() ? 1 : 0);
}

function renderConn() {
  const c = $("conn");
  c.className = "conn " + (state.connected ? "live" : "down");
  c.textContent = state.connected ? "live" : "disconnected, retrying";
}

function quorumSize(st) { return Math.floor((st.nodes || []).length / 2) + 1; }

function renderBanners() {
  const st = state.status;
  const out = [];
  const others = (st && st.nodes || []).filter((n) => !n.self).map((n) =>
    `<a href="http://${esc(n.api)}/ui/">${esc(n.name)}</a>`).join(", ");
  if (!state.connected && state.lostAt) {
    out.push(`<div class="banner" id="banner-conn" role="alert"><strong>⚠ Lost the live connection</strong> to
      ${esc(st ? st.node : "this agent")} at ${esc(state.lostAt.toLocaleTimeString())}; retrying every second.
      What you see is the last state received. ${others ? "Other nodes' dashboards: " + others : ""}</div>`);
  }
  if (st) {
    const alive = st.nodes.filter((n) => n.alive).length;
    if (!st.leader) {
      out.push(`<div class="banner" id="banner-leader" role="alert"><strong>⚠ No quorum leader</strong> known to
        ${esc(st.node)}: no ownership change can be decided, and this view may be stale.
        ${others ? "Compare with " + others + "." : ""}</div>`);
    }
    if (alive < quorumSize(st)) {
      out.push(`<div class="banner" id="banner-partition" role="alert"><strong>⚠ ${esc(st.node)} may be partitioned</strong>:
        it hears ${alive} of ${st.nodes.length} nodes (itself included), fewer than a quorum of ${quorumSize(st)}.
        Its view may be stale. ${others ? "Try " + others + "." : ""}</div>`);
    }
    if (state.connected && performance.now() - state.statusAt > STALE_MS) {
      out.push(`<div class="banner warn" id="banner-stale" role="alert"><strong>⚠ No update for
        ${Math.round((performance.now() - state.statusAt) / 1000)} s</strong>: the agent may be overloaded or frozen.</div>`);
    }
    if (st.maintenance) {
      out.push(`<div class="banner warn" id="banner-maint"><strong>⚙ Cluster-wide maintenance</strong>: automatic
        failover is paused for every group.</div>`);
    }
  }
  const html = out.join("");
  if ($("banners").innerHTML !== html) $("banners").innerHTML = html;
}

function ago(ms) {
  if (ms < 0) return "never";
  if (ms < 1000) return ms + " ms ago";
  if (ms < 120000) return (ms / 1000).toFixed(1) + " s ago";
  return Math.round(ms / 60000) + " min ago";
}

function lastHeard(n) {
  if (n.self) return "this node";
  if (n.last_seen_ms < 0) return "never";
  // A dead node's silence grows by itself; a live one's is refreshed.
  const extra = n.alive ? 0 : Math.round(performance.now() - state.statusAt);
  return ago(n.last_seen_ms + extra);
}

function quorumRole(st, n) {
  const parts = [];
  if (n.name === st.leader) parts.push("★ leader");
  else if (n.raft_role) parts.push(n.raft_role);
  if (n.witness) parts.push("witness");
  if (n.leaving) parts.push("leaving");
  return parts.join(" · ") || "—";
}

function renderNodes(st) {
  $("nodes").tBodies[0].innerHTML = st.nodes.map((n) => `<tr data-node="${esc(n.name)}">
    <th scope="row">${esc(n.name)}${n.self ? ' <span class="pill">this page</span>' : ""}</th>
    <td>${n.alive ? '<span class="pill ok">● alive</span>' : '<span class="pill bad">✕ dead</span>'}</td>
    <td>${esc(quorumRole(st, n))}</td>
    <td class="last-heard">${esc(lastHeard(n))}</td>
    <td class="muted">${esc(n.address)}</td></tr>`).join("");
  const flags = [];
  if (st.maintenance) flags.push('<span class="pill warn">⚙ maintenance: cluster</span>');
  flags.push(`<span class="pill">profile ${esc(st.profile)}</span>`);
  $("cluster-flags").innerHTML = flags.join(" ");
}

function updateLastHeard(st) {
  for (const n of st.nodes) {
    const td = document.querySelector(`#nodes tr[data-node="${CSS.escape(n.name)}"] .last-heard`);
    if (td) td.textContent = lastHeard(n);
  }
}

function bytes(n) {
  if (!n) return "0 B";
  const u = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (n >= 1024 && i < u.length - 1) { n /= 1024; i++; }
  return (i ? n.toFixed(1) : n) + " " + u[i];
}

function leaseHTML(name, ms) {
  // Only the owner counts its own lease; others show who holds it.
  return `<div class="lease" data-lease="${esc(name)}" data-ms="${ms || 0}">
    <span>Lease</span>
    <div class="lease-bar" role="progressbar" aria-label="lease remaining for ${esc(name)}" aria-valuemin="0"
      aria-valuemax="${state.status.lease_ms}"><div class="lease-fill"></div></div>
    <span class="lease-text"></span></div>`;
}

function checksHTML(g) {
  if (!Array.isArray(g.checks) || g.checks.length === 0) {
    return g.role ? '<p class="muted">No health checks: always healthy.</p>' : "";
  }
  return `<ul class="checks" aria-label="health checks on ${esc(state.status.node)}">` + g.checks.map((c) => {
    const last = c.last || {}, fail = c.last_failure;
    let detail = "";
    if (!last.ok && last.detail) detail = ` <span class="detail">— ${esc(last.detail)}</span>`;
    else if (fail && fail.detail) detail = ` <span class="detail">— last failure${fail.at ? " " + esc(fmtTime(Date.parse(fail.at))) : ""}: ${esc(fail.detail)}</span>`;
    const flaps = c.falls ? ` <span class="muted">(${c.falls} failure${c.falls > 1 ? "s" : ""} since start)</span>` : "";
    return `<li>${c.healthy ? '<span class="pill ok">✓ pass</span>' : '<span class="pill bad">✗ fail</span>'}
      <code>${esc(c.name)}</code>${detail}${flaps}</li>`;
  }).join("") + "</ul>";
}

function membersHTML(g) {
  const data = !!g.sync_mode;
  const head = `<tr><th scope="col">Member</th><th scope="col">Priority</th><th scope="col">Role</th><th scope="col">Alive</th><th scope="col">Healthy</th>` +
    (data ? `<th scope="col">DB role</th><th scope="col">Position</th><th scope="col">Lag</th><th scope="col">Sync</th>` : "") + "</tr>";
  const rows = g.members.map((m) => `<tr data-member="${esc(m.node)}">
    <th scope="row">${esc(m.node)}</th><td>${m.priority}</td>
    <td>${m.role === "active" ? "<strong>▶ active</strong>" : esc(m.role)}</td>
    <td>${m.alive ? "● yes" : "✕ no"}</td><td>${m.healthy ? "✓ yes" : "✗ no"}</td>` +
    (data ? `<td>${esc(m.db || "—")}</td><td>${m.position ? esc(m.position) : "—"}</td>
      <td>${m.node === g.owner ? "—" : esc(bytes(m.lag_bytes))}</td><td>${m.synchronous ? "⇄ sync standby" : ""}</td>` : "") +
    "</tr>").join("");
  return `<div class="scroll"><table class="grid members">${head}${rows}</table></div>`;
}

// switchoverHTML is the target menu and button for a group or, in an
// active-active group, one unit (each unit moves on its own).
function switchoverHTML(name, members, owner) {
  return `<label for="to-${esc(name)}">Switch ${esc(name)} over to</label>
    <select id="to-${esc(name)}" data-target-for="${esc(name)}"><option value="">best standby</option>${
      members.filter((m) => m.node !== owner).map((m) => `<option>${esc(m.node)}</option>`).join("")}</select>
    <button type="button" data-action="switchover" data-group="${esc(name)}">Switchover…</button>`;
}

function unitsHTML(g, unlocked) {
  return `<div class="scroll"><table class="grid units"><tr><th scope="col">Unit</th><th scope="col">VIP</th><th scope="col">Owner</th><th scope="col">Epoch</th><th scope="col">Lease here</th>${
    unlocked ? '<th scope="col">Action</th>' : ""}</tr>` +
    g.units.map((u) => `<tr><th scope="row">${esc(u.name)}</th><td>${esc(u.vip || "—")}</td>
      <td class="owner" id="owner-${esc(u.name)}">${esc(u.owner || "none")}</td><td>${u.epoch}</td>
      <td>${u.role === "active" ? leaseHTML(u.name, u.lease_remaining_ms) : "—"}</td>${
        unlocked ? `<td class="group-actions">${switchoverHTML(u.name, g.members, u.owner)}</td>` : ""}</tr>`).join("") + "</table></div>";
}

function renderGroups(st) {
  const unlocked = !!token();
  // Without a token the action buttons are not in the page at all.
  $("cluster-actions").innerHTML = unlocked ? `<button type="button" id="cluster-maint" data-action="maintenance" data-group="">${
    st.maintenance ? "End cluster maintenance…" : "Cluster maintenance…"}</button>` : "";
  const keep = {}; // the switchover target each group's menu shows, kept across renders
  document.querySelectorAll("select[data-target-for]").forEach((s) => { keep[s.dataset.targetFor] = s.value; });
  $("groups").innerHTML = st.groups.map((g) => {
    const aa = g.units && g.units.length > 0;
    const owner = aa ? (g.owners || []).join(", ") : g.owner;
    const badges = [
      `<span class="pill">${esc(g.mode)}</span>`, `<span class="pill">standby: ${esc(g.standby)}</span>`,
      g.maintenance ? '<span class="pill warn">⚙ maintenance</span>' : "",
      g.failback ? '<span class="pill">failback on</span>' : "",
      g.sync_mode ? `<span class="pill">sync: ${esc(g.sync_mode)}</span>` : "",
      g.role ? `<span class="pill">${esc(st.node)}: ${esc(g.role)}</span>` : "",
    ].join("");
    let lease = "";
    if (!aa) {
      lease = g.role === "active" ? leaseHTML(g.name, g.lease_remaining_ms)
        : `<p class="muted">Lease: counted by its owner${g.owner ? ` (see <a href="http://${esc(apiOf(st, g.owner))}/ui/">${esc(g.owner)}'s dashboard</a>)` : ""}.</p>`;
    }
    const actions = unlocked ? `<div class="group-actions">
      ${aa ? "" : switchoverHTML(g.name, g.members, g.owner)}
      <button type="button" data-action="maintenance" data-group="${esc(g.name)}" data-on="${!g.maintenance}">${g.maintenance ? "End maintenance…" : "Maintenance…"}</button>
    </div>` : "";
    return `<article class="group${g.sync_mode || aa ? " wide" : ""}" data-group="${esc(g.name)}" aria-labelledby="g-${esc(g.name)}">
      <div class="group-head"><h3 id="g-${esc(g.name)}">${esc(g.name)}</h3><div class="badges">${badges}</div></div>
      <p class="owner-line">Owner: <span class="owner" id="owner-${esc(g.name)}">${esc(owner || "none")}</span>
        · epoch <span class="epoch" id="epoch-${esc(g.name)}">${g.epoch}</span>${g.handoff_to ? ` · handing off to ${esc(g.handoff_to)}` : ""}</p>
      ${g.note ? `<p class="note">ℹ ${esc(g.note)}</p>` : ""}
      ${g.db_error ? `<p class="note">⚠ database on ${esc(st.node)}: ${esc(g.db_error)}</p>` : ""}
      ${lease}
      ${aa ? unitsHTML(g, unlocked) : ""}
      ${membersHTML(g)}
      ${g.sync_mode ? `<p>Synchronous standby: <strong>${esc((g.sync || []).join(", ") || "none")}</strong></p>` : ""}
      ${checksHTML(g)}
      ${actions}
    </article>`;
  }).join("");
  for (const [g, v] of Object.entries(keep)) {
    const s = document.querySelector(`select[data-target-for="${CSS.escape(g)}"]`);
    if (s && [...s.options].some((o) => o.value === v)) s.value = v;
  }
}

function apiOf(st, node) {
  const n = st.nodes.find((x) => x.name === node);
  return n ? n.api : "";
}

// updateLeases animates each lease bar from the last status: the owner
// renews every heartbeat, and the stream sends a frame when a lease is no
// longer where this countdown says.
function updateLeases() {
  const st = state.status;
  if (!st) return;
  const elapsed = performance.now() - state.statusAt;
  const ms = {};
  for (const g of st.groups) {
    ms[g.name] = g.lease_remaining_ms || 0;
    for (const u of g.units || []) ms[u.name] = u.lease_remaining_ms || 0;
  }
  document.querySelectorAll(".lease[data-lease]").forEach((el) => {
    const left = Math.max(0, (ms[el.dataset.lease] || 0) - elapsed);
    const frac = Math.min(1, left / st.lease_ms);
    const fill = el.querySelector(".lease-fill");
    fill.style.width = (frac * 100).toFixed(1) + "%";
    fill.classList.toggle("low", frac < 0.35);
    el.querySelector(".lease-bar").setAttribute("aria-valuenow", Math.round(left));
    el.querySelector(".lease-text").textContent = left > 0 ? Math.round(left) + " ms left" + (frac < 0.35 ? " ⚠" : "") : "expired ✕";
  });
}

function fmtTime(ms) {
  const d = new Date(ms);
  const sameDay = new Date().toDateString() === d.toDateString();
  return (sameDay ? "" : d.toLocaleDateString() + " ") + d.toLocaleTimeString([], {hour12: false}) + "." + String(d.getMilliseconds()).padStart(3, "0");
}

// timeWindow is the span the timeline shows: never more than the last 24 h.
function timeWindow() {
  const now = Date.now();
  if (state.range === "fit") {
    const times = [...state.history.values()].map((e) => e.time_unix_ms).filter((t) => t >= now - DAY);
    const first = times.length ? Math.min(...times) : now - 60000;
    const span = Math.max(10000, now - first);
    return {from: Math.max(now - DAY, first - span * 0.05), to: now, live: true};
  }
  if (state.range) return {from: Math.max(now - DAY, state.range.from), to: state.range.to, live: false};
  return {from: now - state.windowMs, to: now, live: true};
}

function renderTimeline() {
  const w = timeWindow();
  const span = Math.max(1, w.to - w.from);
  const entries = [...state.history.values()].filter((e) => e.time_unix_ms >= w.from && e.time_unix_ms <= w.to)
    .sort((a, b) => b.seq - a.seq);
  $("axis-from").textContent = fmtTime(w.from);
  $("axis-to").textContent = w.live ? "now" : fmtTime(w.to);
  $("strip-marks").innerHTML = entries.map((e) => {
    const x = ((e.time_unix_ms - w.from) / span * 100).toFixed(2);
    return `<span class="mark ${esc(e.reason)}" style-left="${x}" title="${esc(fmtTime(e.time_unix_ms) + " " + e.group + ": " + (e.from || "—") + " → " + (e.to || "—") + " (" + e.reason + ")")}"></span>`;
  }).join("");
  // CSP forbids style attributes in markup; set positions through the CSSOM.
  $("strip-marks").querySelectorAll(".mark").forEach((m) => { m.style.left = m.getAttribute("style-left") + "%"; });
  const total = (e) => (e.detect_ms || 0) + (e.decide_ms || 0) + (e.takeover_ms || 0);
  const longest = Math.max(1, ...entries.map(total));
  $("timeline").innerHTML = entries.map((e) => {
    if (e.reason === "sync") {
      return `<li class="timeline-entry sync" data-seq="${e.seq}"><span class="when">${esc(fmtTime(e.time_unix_ms))}</span>
        <span class="what">${esc(e.group)}: synchronous standby ⇄ ${esc((e.sync || []).join(", ") || "none")} <span class="muted">epoch ${e.epoch}</span></span></li>`;
    }
    const seg = (cls, ms, label) => ms > 0 ? `<span class="seg ${cls}" data-w="${(ms / longest * 100).toFixed(2)}" title="${label} ${ms} ms"></span>` : "";
    const phases = [
      e.detect_ms ? `detect ${e.detect_ms} ms` : (e.from && e.reason !== "failure" ? "planned: no detection" : ""),
      e.from ? `decide ${e.decide_ms} ms` : "",
      e.takeover_recorded ? `takeover ${e.takeover_ms} ms` : "takeover: not reported yet",
    ].filter(Boolean).join(" · ");
    const lost = e.maybe_lost_bytes ? ` · ⚠ ${e.lost_measured ? "lost" : "may have lost"} ${esc(bytes(e.maybe_lost_bytes))}` : "";
    return `<li class="timeline-entry ${esc(e.reason)}" data-seq="${e.seq}" data-group="${esc(e.group)}" data-to="${esc(e.to)}">
      <span class="when">${esc(fmtTime(e.time_unix_ms))}</span>
      <span class="what">${esc(e.group)}: ${esc(e.from || "—")} → ${esc(e.to || "none")} <span class="pill">${esc(e.reason)}</span>
        <span class="muted">epoch ${e.epoch}</span></span>
      <div class="phases"><span class="phase-bar" aria-hidden="true">${seg("detect", e.detect_ms, "detection")}${seg("decide", e.decide_ms, "decision")}${seg("takeover", e.takeover_ms, "takeover")}</span>
        <span class="phase-text">${esc(phases)}${lost}</span>${e.detail ? `<span class="detail">${esc(e.detail)}</span>` : ""}</div>
    </li>`;
  }).join("");
  $("timeline").querySelectorAll(".seg[data-w]").forEach((s) => { s.style.width = s.dataset.w + "%"; });
  $("timeline-empty").hidden = entries.length > 0;
}

// ---- actions ----------------------------------------------------------------

function ask(text) {
  return new Promise((resolve) => {
    const d = $("confirm");
    $("confirm-text").textContent = text;
    d.returnValue = "";
    d.addEventListener("close", () => resolve(d.returnValue === "ok"), {once: true});
    d.showModal();
    $("confirm-ok").focus();
  });
}

function showResult(title, body, ok) {
  const r = $("result");
  r.hidden = false;
  r.className = "result" + (ok ? "" : " error");
  r.innerHTML = `<strong>${ok ? "✓" : "✕"} ${esc(title)}</strong><pre id="result-body">${esc(body)}</pre>
    <button type="button" id="result-close">Close</button>`;
  $("result-close").onclick = () => { r.hidden = true; };
}

async function post(path, body, title) {
  let text, ok = false;
  try {
    const resp = await fetch("../" + path, {
      method: "POST",
      headers: {"Authorization": "Bearer " + token(), "Content-Type": "application/json"},
      body: JSON.stringify(body),
    });
    text = await resp.text();
    ok = resp.ok;
    try { text = JSON.stringify(JSON.parse(text), null, 2); } catch (_) { /* not JSON: show as is */ }
    text = resp.status + " " + resp.statusText + "\n" + text;
  } catch (err) {
    text = "request failed: " + err;
  }
  showResult(title, text, ok);
}

document.addEventListener("click", async (ev) => {
  const b = ev.target.closest("button[data-action]");
  if (!b || !token()) return;
  const group = b.dataset.group;
  if (b.dataset.action === "switchover") {
    const to = document.querySelector(`select[data-target-for="${CSS.escape(group)}"]`).value;
    if (await ask(`Hand group "${group}" over to ${to || "the best standby"} now? Its owner steps down and the target takes over.`)) {
      await post(`v1/groups/${encodeURIComponent(group)}/switchover`, to ? {to} : {}, `switchover of ${group}`);
    }
  } else if (b.dataset.action === "maintenance") {
    const st = state.status;
    const on = group ? b.dataset.on === "true" : !st.maintenance;
    const what = group ? `group "${group}"` : "the whole cluster";
    if (await ask(`${on ? "Pause" : "Resume"} automatic failover for ${what}?`)) {
      await post("v1/maintenance", group ? {on, group} : {on}, `maintenance ${on ? "on" : "off"} for ${what}`);
    }
  }
});

$("token-form").addEventListener("submit", (ev) => {
  ev.preventDefault();
  const v = $("token-input").value.trim();
  $("token-input").value = "";
  if (v) sessionStorage.setItem(TOKEN_KEY, v);
  syncToken();
});
$("token-clear").addEventListener("click", () => { sessionStorage.removeItem(TOKEN_KEY); syncToken(); });

function syncToken() {
  const set = !!token();
  $("token-form").hidden = set;
  $("token-set").hidden = !set;
  state.structure = ""; // re-render with or without the buttons
  render();
  if (set) withFullChecks(state.status);
}

function setWindow(v) {
  state.range = v === "fit" ? "fit" : null;
  if (v !== "fit") state.windowMs = Number(v);
  $("window").value = String(v);
  renderTimeline();
}
const presets = () => [...$("window").options].map((o) => o.value).filter((v) => /^\d+$/.test(v)).map(Number);
// Zooming steps through the presets around the span shown now.
function zoom(dir) {
  const w = timeWindow(), span = w.to - w.from, p = presets();
  const next = dir < 0 ? [...p].reverse().find((v) => v < span * 0.99) : p.find((v) => v > span * 1.01);
  if (next) setWindow(next);
}
$("window").addEventListener("change", () => setWindow($("window").value));
$("zoom-in").addEventListener("click", () => zoom(-1));
$("zoom-out").addEventListener("click", () => zoom(1));

// Drag across the strip to zoom into that range.
(() => {
  const strip = $("strip"), sel = $("strip-sel");
  let x0 = null;
  const frac = (ev) => { const r = strip.getBoundingClientRect(); return Math.min(1, Math.max(0, (ev.clientX - r.left) / r.width)); };
  strip.addEventListener("pointerdown", (ev) => { x0 = frac(ev); strip.setPointerCapture(ev.pointerId); });
  strip.addEventListener("pointermove", (ev) => {
    if (x0 === null) return;
    const x1 = frac(ev);
    sel.hidden = false;
    sel.style.left = (Math.min(x0, x1) * 100) + "%";
    sel.style.width = (Math.abs(x1 - x0) * 100) + "%";
  });
  strip.addEventListener("pointerup", (ev) => {
    const x1 = frac(ev);
    sel.hidden = true;
    if (x0 !== null && Math.abs(x1 - x0) > 0.01) {
      const w = timeWindow(), span = w.to - w.from;
      state.range = {from: w.from + Math.min(x0, x1) * span, to: w.from + Math.max(x0, x1) * span};
      $("window").value = "custom";
      renderTimeline();
    }
    x0 = null;
  });
})();

// The lease bars move every frame; banners and "last heard" twice a second.
function frame() { updateLeases(); requestAnimationFrame(frame); }
requestAnimationFrame(frame);
setInterval(() => { renderBanners(); if (state.status) updateLastHeard(state.status); }, 500);
setInterval(renderTimeline, 10000); // slide the window

syncToken();
connect();
