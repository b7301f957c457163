// The ops console: talks only to the gateway's admin API with the admin token kept in session storage.
"use strict";
const API = "/_gateway/admin";
const $ = (selector) => document.querySelector(selector);
let refreshTimer = null;

function token() { return sessionStorage.getItem("gateway-admin-token") || ""; }

function say(text, isError = false) {
  const status = $("#status");
  status.textContent = text;
  status.classList.toggle("error", isError);
}

async function api(path, options = {}) {
  const response = await fetch(API + path, {
    ...options,
    headers: { "Authorization": "Bearer " + token(), "Content-Type": "application/json", ...(options.headers || {}) },
  });
  const body = await response.json().catch(() => ({}));
  if (!response.ok) {
    const message = (body.error && body.error.message) || ("HTTP " + response.status);
    const error = new Error(message);
    error.status = response.status;
    throw error;
  }
  return body;
}

function cell(row, text, className) {
  const td = document.createElement("td");
  td.textContent = text;
  if (className) td.className = className;
  row.appendChild(td);
  return td;
}

function liveText(stats) {
  if (!stats) return "–";
  return `${stats.rps} · ${(stats.error_rate * 100).toFixed(1)} % · ${stats.p99_ms} ms`;
}

function when(seconds) { return new Date(seconds * 1000).toISOString().replace("T", " ").slice(0, 19) + "Z"; }

function renderRoutes(routes) {
  const body = $("#routes tbody");
  body.replaceChildren();
  for (const route of routes) {
    const row = document.createElement("tr");
    row.dataset.route = route.route;
    cell(row, route.route);
    const path = cell(row, route.path);
    path.title = route.methods.join(", ");
    cell(row, route.backend, "backend " + route.backend);
    cell(row, route.percent === null ? "targeting" : route.percent + " %");
    cell(row, route.source + " · " + route.reason);
    cell(row, liveText(route.live.legacy));
    cell(row, liveText(route.live.candidate));
    cell(row, route.breaker, "breaker " + route.breaker);
    cell(row, route.shadow_match_rate === null ? "–" : (route.shadow_match_rate * 100).toFixed(1) + " %");
    const change = route.last_change;
    cell(row, change ? `${change.actor}, ${when(change.at)}: ${change.reason}` : "–");
    const move = cell(row, "", "move");
    for (const [label, name, action, to] of [["→ cand.", "→ candidate", "route", "candidate"],
                                             ["→ legacy", "→ legacy", "route", "legacy"],
                                             ["% split…", "% split", "percent", "candidate"],
                                             ["release", "release", "release", null]]) {
      const button = document.createElement("button");
      button.type = "button";
      button.textContent = label;
      button.setAttribute("aria-label", `${name} ${route.route}`);
      button.addEventListener("click", () => ask({ action, route: route.route, to }));
      move.appendChild(button);
    }
    body.appendChild(row);
  }
}

function renderAudit(entries) {
  const body = $("#audit tbody");
  body.replaceChildren();
  const show = (value) => value ? value.backend + (value.percent !== null && value.percent !== undefined ? " " + value.percent + " %" : "") : "–";
  for (const entry of entries) {
    const row = document.createElement("tr");
    cell(row, when(entry.at));
    cell(row, entry.route);
    cell(row, `${show(entry.before)} → ${show(entry.after)}`);
    cell(row, entry.actor);
    cell(row, entry.reason);
    body.appendChild(row);
  }
}

// --- Rollouts (GET /rollouts) and the next routes to strangle (GET /candidates). ---
function gateText(gates) {
  if (!gates || gates.compared === undefined) return "no window judged yet";
  const rate = (side) => side.error_rate_percent === null ? "–" : side.error_rate_percent.toFixed(2) + " %";
  const p99 = (side) => side.p99_ms === null ? "–" : side.p99_ms + " ms";
  const parity = gates.parity_percent === null ? "–" : gates.parity_percent.toFixed(2) + " %";
  return `parity ${parity} of ${gates.compared}/${gates.min_samples} (${gates.gates.parity}) · ` +
    `errors ${rate(gates.candidate)} vs ${rate(gates.legacy)} (${gates.gates.errors}) · ` +
    `p99 ${p99(gates.candidate)} vs ${p99(gates.legacy)} (${gates.gates.latency}) · ` +
    `${gates.window_seconds} of ${gates.every_seconds} s counted, ${gates.workers} worker(s)`;
}

const ROLLOUT_ACTIONS = { running: ["pause", "abort"], paused: ["resume", "abort"], rolling_back: ["abort"], queued: ["abort"] };

function renderRollouts(doc) {
  const body = $("#rollouts tbody");
  body.replaceChildren();
  for (const rollout of doc.rollouts) {
    const row = document.createElement("tr");
    row.dataset.route = rollout.route;
    row.dataset.state = rollout.state;
    cell(row, rollout.route);
    cell(row, rollout.state, "state " + rollout.state);
    const progress = cell(row, "", "progress");
    const bar = document.createElement("progress");
    bar.max = 100;
    bar.value = rollout.percent;
    bar.setAttribute("aria-label", `${rollout.route}: ${rollout.percent} % to the candidate`);
    progress.appendChild(bar);
    progress.append(` ${rollout.percent} % · step ${rollout.step}/${rollout.steps.length} (${rollout.steps.join(", ")} %)`);
    cell(row, gateText(rollout.gates), "gates");
    cell(row, rollout.reason, "why");
    const act = cell(row, "", "move");
    for (const action of ROLLOUT_ACTIONS[rollout.state] || []) {
      const button = document.createElement("button");
      button.type = "button";
      button.textContent = action;
      button.setAttribute("aria-label", `${action} rollout ${rollout.route}`);
      button.addEventListener("click", () => ask({ action: "rollout-" + action, route: rollout.route }));
      act.appendChild(button);
    }
    body.appendChild(row);
  }
  const decider = doc.decider.leader ? `decided by ${doc.decider.leader}` : "no decider right now (nothing to decide, or the store is unreachable)";
  $("#rollouts-note").textContent = doc.rollouts.length ? decider : "No rollout yet.";
}

function renderCandidates(doc) {
  const body = $("#candidates tbody");
  body.replaceChildren();
  const rows = doc.candidates.concat(doc.other ? [doc.other] : []);
  rows.forEach((candidate, index) => {
    const row = document.createElement("tr");
    cell(row, candidate.method === "*" ? "" : String(index + 1));
    cell(row, candidate.method);
    cell(row, candidate.template);
    cell(row, candidate.hot_route || "", candidate.hot_route ? "hot" : "");
    cell(row, String(candidate.requests));
    cell(row, (candidate.share * 100).toFixed(1) + " %");
    cell(row, candidate.legacy_seconds.toFixed(candidate.legacy_seconds < 10 ? 2 : 1) + " s");
    cell(row, `${candidate.p50_ms} · ${candidate.p99_ms} ms`);
    cell(row, (candidate.error_rate * 100).toFixed(1) + " %");
    cell(row, (candidate.signed_in_share * 100).toFixed(0) + " %");
    body.appendChild(row);
  });
}

// --- Charts: GET /timeline (the whole gateway, one point per second) drawn as SVG, no library. ---
// Colours and strokes come from console.css classes (the CSP allows no inline style).
const SVG_NS = "http://www.w3.org/2000/svg";
const BOX = { width: 600, height: 170, left: 44, right: 44, top: 8, bottom: 20 };
const TICKS = { 900: 300, 300: 60, 60: 15 };  // span → seconds between time-axis ticks
let timelineDoc = null;
let span = 900;

function svgNode(name, attributes, parent) {
  const node = document.createElementNS(SVG_NS, name);
  for (const [key, value] of Object.entries(attributes)) node.setAttribute(key, String(value));
  if (parent) parent.appendChild(node);
  return node;
}

function roundUp(value) {  // 1, 2, 2.5, 5 × 10^n: axis tops that read well
  if (!(value > 0)) return 1;
  const power = 10 ** Math.floor(Math.log10(value));
  return [1, 2, 2.5, 5, 10].map((m) => m * power).find((top) => top >= value);
}

function figure(value, unit = "") {
  if (value === null || value === undefined) return "–";
  const text = value >= 10000 ? (value / 1000).toFixed(0) + "k" : value >= 1000 ? (value / 1000).toFixed(1) + "k"
    : Number.isInteger(value) ? String(value) : value >= 10 ? value.toFixed(0) : value.toFixed(value >= 1 ? 1 : 2);
  return text + unit;
}

function ago(seconds) { return seconds === 0 ? "now" : seconds % 60 === 0 ? `−${seconds / 60} min` : `−${seconds} s`; }

// lines: [{ name, values, axis: "left" | "right", unit }]; values[i] is second doc.start + i.
function drawChart(svg, doc, lines, markers) {
  svg.replaceChildren();
  const { width, height, left, right, top, bottom } = BOX;
  const from = doc.now - span;
  const x = (second) => left + ((second - from) / span) * (width - left - right);
  const first = Math.max(0, Math.ceil(from - doc.start));
  const scales = {};
  for (const line of lines) {
    const visible = line.values.slice(first).filter((v) => v !== null);
    scales[line.axis] = Math.max(scales[line.axis] || 0, ...visible, 0);
  }
  for (const axis of Object.keys(scales)) scales[axis] = roundUp(scales[axis]);
  const y = (value, axis) => height - bottom - (value / scales[axis]) * (height - top - bottom);
  const axes = [...new Set(lines.map((line) => line.axis))];
  for (const fraction of [0, 0.5, 1]) {  // gridlines, and each axis labelled in its line's colour
    const at = height - bottom - fraction * (height - top - bottom);
    svgNode("line", { x1: left, x2: width - right, y1: at, y2: at, class: "grid" }, svg);
    for (const axis of axes) {
      const line = lines.find((candidate) => candidate.axis === axis);
      const onRight = axis === "right";
      const label = svgNode("text", { x: onRight ? width - right + 4 : left - 4, y: at + 4,
                                      "text-anchor": onRight ? "start" : "end",
                                      class: "axis" + (axes.length > 1 ? " " + line.name : "") }, svg);
      label.textContent = figure(scales[axis] * fraction, line.unit);
    }
  }
  const step = TICKS[span] || span / 4;
  for (let back = 0; back <= span; back += step) {
    const tick = svgNode("text", { x: x(doc.now - back), y: height - 5, "text-anchor": back === 0 ? "end" : back === span ? "start" : "middle", class: "axis" }, svg);
    tick.textContent = ago(back);
  }
  for (const line of lines) {
    let path = "";
    let pen = "M";
    line.values.forEach((value, i) => {
      if (i < first || value === null) { pen = "M"; return; }
      // "h0" after each move: a second on its own (no neighbour) still shows, as a dot (round caps).
      path += `${pen}${x(doc.start + i).toFixed(1)},${y(value, line.axis).toFixed(1)}${pen === "M" ? "h0" : ""}`;
      pen = "L";
    });
    if (path) svgNode("path", { d: path, class: "line " + line.name }, svg);
  }
  for (const marker of markers) {
    if (marker.at < from || marker.at > doc.now) continue;
    const group = svgNode("g", { class: "marker" + (marker.actor === "autopilot" ? " autopilot" : "") }, svg);
    const title = svgNode("title", {}, group);
    const change = marker.action === "release" ? "released" : "→ " + marker.to;
    title.textContent = `${when(marker.at)} · ${marker.actor}: ${marker.route} ${change} · ${marker.reason}`;
    const at = x(marker.at).toFixed(1);
    svgNode("line", { x1: at, x2: at, y1: top, y2: height - bottom, class: "marker-line" }, group);
    svgNode("line", { x1: at, x2: at, y1: top, y2: height - bottom, class: "marker-hit" }, group);
    svgNode("path", { d: `M${at},${top}l-4,-6h8z`, class: "marker-flag" }, group);
  }
}

function latest(values) {
  for (let i = values.length - 1; i >= 0; i--) if (values[i] !== null) return values[i];
  return null;
}

function renderCharts(doc) {
  const backends = doc.backends;
  const pair = (key, scale = 1) => ["legacy", "candidate"].map((name) => ({
    name, axis: "left",
    values: backends[name][key].map((v) => (v === null ? null : v * scale)),
  }));
  const cluster = doc.clusters[doc.legacy_cluster] || { limit: doc.backends.legacy.requests.map(() => null), shed: [] };
  const charts = [
    ["#chart-rps", pair("requests"), ""],
    ["#chart-errors", pair("error_rate", 100), " %"],
    ["#chart-p99", pair("p99_ms"), " ms"],
    ["#chart-limit", [{ name: "limit", axis: "left", values: cluster.limit },
                      { name: "shed", axis: "right", values: cluster.shed, unit: "/s" }], ""],
  ];
  for (const [selector, lines, unit] of charts) {
    for (const line of lines) if (line.unit === undefined) line.unit = unit;
    const chart = $(selector);
    if (chart.querySelector(".marker:hover")) continue;  // redrawing would close the who/why tooltip
    drawChart(chart.querySelector("svg"), doc, lines, doc.markers);
    chart.dataset.end = doc.end;
    chart.dataset.markers = doc.markers.length;
    const now = [];
    for (const line of lines) {
      const value = latest(line.values);
      chart.dataset[line.name + "Latest"] = value === null ? "" : value;
      now.push(`${line.name} ${figure(value, line.unit)}`);
    }
    chart.querySelector(".now").textContent = "· now: " + now.join(" · ");
  }
  const notes = [`One point per second, summed over ${doc.workers} gateway worker(s); the newest is 2 s old.`];
  if (doc.markers_error) notes.push("Override changes are not marked: " + doc.markers_error);
  if (!doc.clusters[doc.legacy_cluster]) notes.push(`${doc.legacy_cluster} has no adaptive limit configured.`);
  $("#charts-note").textContent = notes.join(" ");
  $("#charts-note").classList.toggle("error", Boolean(doc.markers_error));
}

for (const button of document.querySelectorAll("[data-span]")) {
  button.addEventListener("click", () => {
    span = Number(button.dataset.span);
    for (const other of document.querySelectorAll("[data-span]")) other.setAttribute("aria-pressed", String(other === button));
    if (timelineDoc) renderCharts(timelineDoc);
  });
}

let refreshes = 0;
async function refresh() {
  try {
    // A failing timeline must not take the table with it: its error is shown under the charts.
    const charts = api("/timeline").catch((error) => error);
    const rollouts = api("/rollouts").catch((error) => error);
    const candidates = refreshes++ % 5 === 0 ? api("/candidates?since=1h&limit=15").catch((error) => error) : null;
    const [routes, audit] = await Promise.all([api("/routes"), api("/audit?limit=50")]);
    renderRoutes(routes.routes);
    renderAudit(audit.entries);
    const rolloutsDoc = await rollouts;
    if (rolloutsDoc instanceof Error) $("#rollouts-note").textContent = "Rollouts not updated: " + rolloutsDoc.message;
    else renderRollouts(rolloutsDoc);
    const candidatesDoc = await candidates;
    if (candidatesDoc && !(candidatesDoc instanceof Error)) renderCandidates(candidatesDoc);
    const doc = await charts;
    if (doc instanceof Error) {
      $("#charts-note").textContent = "Charts not updated: " + doc.message;
      $("#charts-note").classList.add("error");
    } else {
      timelineDoc = doc;
      renderCharts(doc);
    }
    $("#console").hidden = false;
    $("#login").hidden = true;
    say(`Updated ${new Date().toLocaleTimeString()}`);
  } catch (error) {
    if (error.status === 401) {
      sessionStorage.removeItem("gateway-admin-token");
      stop();
      $("#console").hidden = true;
      $("#login").hidden = false;
      say("That admin token was refused. Enter the gateway's GATEWAY_ADMIN_TOKEN.", true);
    } else {
      say("Could not reach the admin API: " + error.message, true);
    }
  }
}

function start() { stop(); refresh(); refreshTimer = setInterval(refresh, 2000); }
function stop() { if (refreshTimer) clearInterval(refreshTimer); refreshTimer = null; }

let pending = null;
function ask(request) {
  pending = request;
  const what = {
    "route": `Send ${request.route} to ${request.to}.`,
    "percent": `Send a share of ${request.route}'s users to the candidate.`,
    "release": `Release the override of ${request.route} (back to Unleash / the flags file).`,
    "flip-all": `Send every hot route to ${request.to}.`,
    "release-all": "Release every override.",
    "rollout-pause": `Pause the rollout of ${request.route} where it is.`,
    "rollout-resume": `Resume the rollout of ${request.route} from its step, with a fresh window.`,
    "rollout-abort": `Abort the rollout of ${request.route}: back to legacy at once.`,
  }[request.action];
  $("#confirm-what").textContent = what;
  const percent = request.action === "percent";
  $("#percent").hidden = !percent;
  $("#percent-label").hidden = !percent;
  $("#percent").required = percent;
  $("#reason").value = "";
  $("#confirm").showModal();
  (percent ? $("#percent") : $("#reason")).focus();
}

async function carryOut(request, reason) {
  const actor = "console";
  if (request.action.startsWith("rollout-")) {
    const action = request.action.slice("rollout-".length);
    await api("/rollouts", { method: "POST", body: JSON.stringify({ action, route: request.route, reason, actor }) });
  } else if (request.action === "release" || request.action === "release-all") {
    const route = request.action === "release" ? request.route : "*";
    await api(`/overrides?route=${encodeURIComponent(route)}&reason=${encodeURIComponent(reason)}&actor=${actor}`,
              { method: "DELETE" });
  } else {
    const body = { route: request.action === "flip-all" ? "*" : request.route, backend: request.to, reason, actor };
    if (request.action === "percent") body.percent = Number($("#percent").value);
    await api("/overrides", { method: "POST", body: JSON.stringify(body) });
  }
}

$("#confirm").addEventListener("close", async () => {
  if ($("#confirm").returnValue !== "confirm" || !pending) return;
  const request = pending;
  pending = null;
  try {
    await carryOut(request, $("#reason").value.trim());
    say("Done: " + $("#confirm-what").textContent);
    await refresh();
  } catch (error) {
    say("Not done: " + error.message, true);
  }
});

// Cancel is not a submit button, so Enter in the dialog confirms (implicit submission takes the first submitter).
$("#cancel-button").addEventListener("click", () => $("#confirm").close("cancel"));
$("#login").addEventListener("submit", (event) => {
  event.preventDefault();
  sessionStorage.setItem("gateway-admin-token", $("#token").value);
  $("#token").value = "";
  start();
});
$("#logout").addEventListener("click", () => {
  sessionStorage.removeItem("gateway-admin-token");
  stop();
  $("#console").hidden = true;
  $("#login").hidden = false;
  say("Token forgotten.");
});
for (const button of document.querySelectorAll("[data-action]")) {
  button.addEventListener("click", () => ask({ action: button.dataset.action, to: button.dataset.to }));
}
if (token()) start();
