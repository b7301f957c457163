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

async function refresh() {
  try {
    const [routes, audit] = await Promise.all([api("/routes"), api("/audit?limit=50")]);
    renderRoutes(routes.routes);
    renderAudit(audit.entries);
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
  if (request.action === "release" || request.action === "release-all") {
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
