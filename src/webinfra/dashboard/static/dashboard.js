// webinfra dashboard: draws each frame of /api/stream (Server-Sent Events). No framework, no build step.
// Text from the cluster always goes through textContent, never innerHTML.
"use strict";

const $ = (id) => document.getElementById(id);
const cards = new Map(); // host name -> {root, parts...}

function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (key === "class") node.className = value;
    else if (key === "text") node.textContent = value;
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value);
  }
  for (const child of children) node.append(child);
  return node;
}

const num = (v, digits = 1) => (v === null || v === undefined ? "—" : v.toFixed(digits));
const ms = (s) => (s === null || s === undefined ? "—" : `${Math.round(s * 1000)} ms`);
const pct = (r) => (r === null || r === undefined ? "—" : `${(r * 100).toFixed(r > 0 && r < 0.01 ? 2 : 0)}%`);

function say(text, error = false) {
  const m = $("message");
  m.textContent = text;
  m.className = error ? "message error" : "message";
}

async function act(path, body, question) {
  if (!window.confirm(question)) return;
  say(`${question.replace(/\?$/, "")}…`);
  try {
    const response = await fetch(path, {
      method: "POST",
      credentials: "same-origin",
      headers: { "Content-Type": "application/json", "X-Webinfra-Action": "1" },
      body: JSON.stringify(body),
    });
    const answer = await response.json();
    if (response.ok) say(answer.message || "done");
    else say(answer.error || `failed (${response.status})`, true);
  } catch (err) {
    say(`failed: ${err}`, true);
  }
}

function card(host) {
  let c = cards.get(host.name);
  if (c) return c;
  const weight = el("input", { type: "number", min: "0", max: "256", "aria-label": `weight of ${host.name}` });
  const mode = el("select", { "aria-label": `fault mode for ${host.name}` },
    ...document.body.dataset.faultModes.split(",").map((m) => el("option", { value: m, text: m })));
  const actions = el("div", { class: "actions" });
  if (host.roles.includes("web")) {
    actions.append(weight, el("button", {
      text: "Set weight",
      onclick: () => act("/api/weight", { server: host.name, weight: Number(weight.value) },
        `Set the weight of ${host.name} to ${weight.value}?`),
    }));
  }
  actions.append(
    mode,
    el("button", { class: "danger", text: "Fail", onclick: () => act("/api/fail", { host: host.name, mode: mode.value },
      `Inject a fault (${mode.value}) into ${host.name}?`) }),
    el("button", { text: "Recover", onclick: () => act("/api/recover", { host: host.name },
      `Recover ${host.name} (undo faults, start its services)?`) }),
  );
  c = {
    root: el("article", { class: "host", id: `host-${host.name}`, "data-host": host.name }),
    title: el("h3"),
    roles: el("div", { class: "roles dim" }),
    services: el("ul", { class: "services" }),
    facts: el("div", { class: "facts" }),
    fault: el("div", { class: "fault" }),
    weight,
  };
  c.root.append(c.title, c.roles, c.services, c.facts, c.fault, actions);
  cards.set(host.name, c);
  $("hosts").append(c.root);
  return c;
}

function hostState(host, faults, backend, node) {
  if (!host.up || faults[host.name] || host.services.some((s) => s.state === "stopped")) return "bad";
  if (host.services.some((s) => s.state !== "running")) return "warn";
  if (backend && backend.state !== "up") return "warn";
  if (node && (!node.reachable || (node.role === "replica" && node.sql_running !== "Yes"))) return "warn";
  return "ok";
}

function drawHosts(frame) {
  const snap = frame.status;
  const faults = snap.faults || {};
  const holders = (snap.lb.vip_holder || "").split(",");
  const backends = Object.fromEntries(snap.lb.backends.map((b) => [b.name, b]));
  const nodes = Object.fromEntries(snap.db.nodes.map((n) => [n.name, n]));
  for (const host of snap.hosts) {
    const c = card(host);
    const backend = backends[host.name];
    const node = nodes[host.name];
    const state = hostState(host, faults, backend, node);
    const vip = snap.lb.vip && holders.includes(host.name);
    c.root.className = `host ${state}${vip ? " vip" : ""}`;
    c.root.dataset.state = state;
    c.title.replaceChildren(document.createTextNode(host.name), el("span", { class: "addr", text: host.address }));
    if (vip) c.title.append(el("span", { class: "badge vip", text: `VIP ${snap.lb.vip}` }));
    if (!host.up) c.title.append(el("span", { class: "badge bad", text: "no namespace" }));
    c.roles.textContent = host.roles.join(" · ");
    c.services.replaceChildren(...host.services.map((s) => el("li", { class: s.state, title: s.state, text: s.name })));
    const facts = [];
    if (backend) {
      facts.push(el("div", {},
        "backend ", el("span", { class: `state-${backend.state}`, text: backend.state }),
        ` · weight ${backend.weight}${backend.weight !== backend.configured_weight ? ` (file ${backend.configured_weight})` : ""}`,
        ` · ${num(backend.rps)} req/s · ${pct(backend.error_ratio)} 5xx · p99 ${ms(backend.p99_seconds)}`));
      if (document.activeElement !== c.weight) c.weight.value = backend.weight;
    }
    if (node) {
      let text = node.reachable ? node.role : `${node.role} (not answering)`;
      if (node.role === "replica" && node.reachable) {
        const streaming = node.io_running === "Yes" && node.sql_running === "Yes";
        text += streaming ? ` · lag ${node.lag_seconds ?? "—"} s` : ` · replication ${node.io_running}/${node.sql_running}`;
      }
      if (node.lease && node.lease.holder) text += ` · lease ${node.lease.holder}`;
      if (node.error) text += ` · ${node.error}`;
      facts.push(el("div", { text: `database ${text}` }));
    }
    c.facts.replaceChildren(...facts);
    c.fault.textContent = faults[host.name] ? `fault: ${faults[host.name]}` : "";
  }
}

function drawSummary(frame) {
  const snap = frame.status;
  $("site-url").textContent = snap.site_url;
  $("site-rps").textContent = num(frame.site.rps);
  $("site-p99").textContent = ms(frame.site.p99_seconds);
  $("vip").textContent = snap.lb.vip ? `VIP ${snap.lb.vip} on ${snap.lb.vip_holder || "nobody"}` : "";
  const alerts = frame.alerts;
  const firing = alerts ? alerts.filter((a) => a.state === "firing").length : 0;
  $("alert-count").textContent = alerts === null ? "no Prometheus" : `${firing} alert${firing === 1 ? "" : "s"} firing`;
  $("alert-count").className = firing ? "state-down" : "dim";
  const prometheus = (snap.monitoring || {}).prometheus_url;
  $("prometheus").textContent = prometheus ? "Prometheus" : "";
  if (prometheus) $("prometheus").href = prometheus;
  const alertmanager = (snap.monitoring || {}).alertmanager_url;
  $("alertmanager").textContent = alertmanager ? "Alertmanager" : "";
  if (alertmanager) $("alertmanager").href = alertmanager;
}

function drawLists(frame) {
  const alerts = frame.alerts;
  if (alerts === null) {
    $("alerts").replaceChildren(el("li", { class: "dim", text: frame.prometheus.error || "no monitoring host in this topology" }));
  } else if (alerts.length === 0) {
    $("alerts").replaceChildren(el("li", { class: "dim", text: "none" }));
  } else {
    $("alerts").replaceChildren(...alerts.map((a) => el("li", { class: `alert ${a.state}` },
      el("b", { text: a.name }), ` ${a.state}${a.host ? ` on ${a.host}` : ""}: ${a.summary}`)));
  }
  const events = (frame.events || []).slice().reverse();
  $("events").replaceChildren(...(events.length ? events.map((e) => el("li", {},
    el("time", { text: String(e.ts || "").slice(11, 19) }),
    el("b", { text: e.kind || "" }), ` ${e.host || ""} ${e.detail || ""}`)) : [el("li", { class: "dim", text: "none yet" })]));
}

function draw(frame) {
  if (frame.error) {
    say(`cannot read the cluster: ${frame.error}`, true);
    return;
  }
  drawSummary(frame);
  drawHosts(frame);
  drawLists(frame);
  drawTopology($("topology"), frame.status);
  document.body.dataset.frames = String(Number(document.body.dataset.frames || 0) + 1);
}

function connect() {
  const source = new EventSource("/api/stream");
  source.onopen = () => { $("live").textContent = "live"; $("live").className = "live on"; };
  source.onmessage = (event) => draw(JSON.parse(event.data));
  source.onerror = () => { $("live").textContent = "reconnecting…"; $("live").className = "live off"; };
}

// History: range queries through /api/history, redrawn every few seconds and when the range changes.
const HISTORY_EVERY_MS = 5000;
let historyMinutes = 15;

async function loadHistory() {
  try {
    const response = await fetch(`/api/history?minutes=${historyMinutes}`, { credentials: "same-origin" });
    const data = await response.json();
    if (!response.ok) {
      $("history").replaceChildren(el("p", { class: "dim", text: data.error || `history: ${response.status}` }));
      return;
    }
    drawHistory($("history"), data);
    document.body.dataset.historyLoads = String(Number(document.body.dataset.historyLoads || 0) + 1);
  } catch (err) {
    $("history").replaceChildren(el("p", { class: "state-down", text: `history: ${err}` }));
  }
}

for (const button of document.querySelectorAll("#ranges button")) {
  button.addEventListener("click", () => {
    historyMinutes = Number(button.dataset.minutes);
    for (const b of document.querySelectorAll("#ranges button")) b.classList.toggle("on", b === button);
    loadHistory();
  });
}

connect();
loadHistory();
setInterval(loadHistory, HISTORY_EVERY_MS);
