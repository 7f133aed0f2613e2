// webinfra dashboard: the history panels (line charts from /api/history) and the picture of the flows
// (client -> VIP -> LB -> web -> app -> dbproxy -> primary/replica), both hand-drawn SVG: no library, no build.
// Text from the cluster goes through textContent, never innerHTML.
"use strict";

const SVG = "http://www.w3.org/2000/svg";
const PALETTE = ["#0969da", "#1a7f37", "#bf3989", "#b7791f", "#6f42c1", "#cf222e", "#0a7ea4", "#57606a"];

function svg(tag, attrs = {}, ...children) {
  const node = document.createElementNS(SVG, tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (key === "text") node.textContent = value;
    else node.setAttribute(key, String(value));
  }
  for (const child of children) node.append(child);
  return node;
}

function shortValue(v, unit) {
  if (v === null || v === undefined || Number.isNaN(v)) return "—";
  if (unit === "s") return v >= 1 ? `${v.toFixed(1)} s` : `${Math.round(v * 1000)} ms`;
  return v >= 100 ? v.toFixed(0) : v >= 10 ? v.toFixed(1) : v.toFixed(2);
}

// ---- history: one line chart per panel ----

const CHART = { w: 460, h: 170, left: 50, right: 10, top: 10, bottom: 22 };

function lineChart(panel, markers, start, end) {
  const { w, h, left, right, top, bottom } = CHART;
  const root = svg("svg", { viewBox: `0 0 ${w} ${h}`, class: "chart", role: "img", "aria-label": panel.title });
  const values = panel.series.flatMap((s) => s.points.map((p) => p[1]));
  const ymax = Math.max(...values, 0) || (panel.unit === "s" ? 0.01 : 1);
  const x = (t) => left + ((t - start) / (end - start)) * (w - left - right);
  const y = (v) => top + (1 - v / ymax) * (h - top - bottom);
  root.append(
    svg("line", { x1: left, y1: y(0), x2: w - right, y2: y(0), class: "axis" }),
    svg("line", { x1: left, y1: top, x2: left, y2: y(0), class: "axis" }),
    svg("text", { x: left - 4, y: top + 8, class: "tick end", text: shortValue(ymax, panel.unit) }),
    svg("text", { x: left - 4, y: y(0), class: "tick end", text: "0" }),
    svg("text", { x: left, y: h - 6, class: "tick", text: `-${Math.round((end - start) / 60)} min` }),
    svg("text", { x: w - right, y: h - 6, class: "tick end", text: "now" }),
  );
  panel.series.forEach((s, i) => {
    if (!s.points.length) return;
    const points = s.points.map(([t, v]) => `${x(t).toFixed(1)},${y(v).toFixed(1)}`).join(" ");
    root.append(svg("polyline", { points, class: "series", stroke: PALETTE[i % PALETTE.length],
      "data-series": s.name, "data-points": s.points.length }));
  });
  for (const m of markers) {
    const mx = x(m.t);
    const line = svg("line", { x1: mx, y1: top, x2: mx, y2: y(0), class: `marker marker-${m.kind}`,
      "data-kind": m.kind, "data-host": m.host });
    line.append(svg("title", { text: `${new Date(m.t * 1000).toLocaleTimeString()} ${m.text}` }));
    root.append(line, svg("circle", { cx: mx, cy: top + 2, r: 3, class: `marker-dot marker-${m.kind}` }));
  }
  return root;
}

function drawHistory(container, data) {
  const figures = data.panels.map((panel) => {
    const legend = el("div", { class: "legend" });
    panel.series.forEach((s, i) => {
      const last = s.points.length ? s.points[s.points.length - 1][1] : null;
      const swatch = el("span", { class: "swatch" });
      swatch.style.background = PALETTE[i % PALETTE.length];
      legend.append(el("span", {}, swatch, `${s.name} ${shortValue(last, panel.unit)}`));
    });
    if (panel.error) legend.append(el("span", { class: "state-down", text: panel.error }));
    else if (!panel.series.length) legend.append(el("span", { class: "dim", text: "no data yet" }));
    const points = panel.series.reduce((n, s) => n + s.points.length, 0);
    const max = Math.max(0, ...panel.series.flatMap((s) => s.points.map((p) => p[1])));
    return el("figure", { class: "panel", id: `panel-${panel.id}`, "data-points": points, "data-max": max,
      "data-markers": data.markers.length },
      el("figcaption", { text: `${panel.title} (${panel.unit})` }),
      lineChart(panel, data.markers, data.start, data.end), legend);
  });
  container.replaceChildren(...figures);
}

// ---- the flows: client -> VIP -> LB -> web -> app -> dbproxy -> DB ----

function serviceState(host, name) {
  if (!host || !host.up) return "bad";
  const svc = host.services.find((s) => s.name === name);
  if (!svc) return "ok";
  return svc.state === "running" ? "ok" : svc.state === "stopped" ? "bad" : "warn";
}

// Nodes in columns, edges between node ids; each node and edge says its state.
function flowGraph(snap) {
  const hosts = Object.fromEntries(snap.hosts.map((h) => [h.name, h]));
  const withRole = (role) => snap.hosts.filter((h) => h.roles.includes(role));
  const backends = Object.fromEntries(snap.lb.backends.map((b) => [b.name, b]));
  const holders = (snap.lb.vip_holder || "").split(",").filter(Boolean);
  const lbs = withRole("lb");
  const ha = snap.hosts.some((h) => h.services.some((s) => s.name === "dbproxy"));
  const columns = [[{ id: "client", label: "clients", state: "ok" }]];
  if (snap.lb.vip) columns.push([{ id: "vip", label: `VIP ${snap.lb.vip}`, state: holders.length === 1 ? "ok" : "bad" }]);
  columns.push(lbs.map((h) => ({ id: `lb:${h.name}`, label: `${h.name} haproxy`, state: serviceState(h, "haproxy") })));
  columns.push(withRole("web").map((h) => {
    const b = backends[h.name];
    const state = serviceState(h, "nginx") === "ok" && (!b || b.state === "up") ? "ok" : serviceState(h, "nginx") === "bad" ? "bad" : "warn";
    return { id: `web:${h.name}`, label: `${h.name} nginx`, state };
  }));
  const apps = withRole("app");
  columns.push(apps.map((h) => ({ id: `app:${h.name}`, label: `${h.name} app`, state: serviceState(h, "app") })));
  if (ha) columns.push(apps.map((h) => ({ id: `proxy:${h.name}`, label: `${h.name} dbproxy`, state: serviceState(h, "dbproxy") })));
  const dbs = snap.db.nodes.map((n) => ({ id: `db:${n.name}`, label: `${n.name} ${n.role || "db"}`, role: n.role,
    state: !n.reachable ? "bad" : serviceState(hosts[n.name], "mariadb") }));
  columns.push(dbs);

  const edges = [];
  const state = Object.fromEntries(columns.flat().map((n) => [n.id, n.state]));
  const edge = (from, to, label = "", flowing = true) => {
    const down = state[from] === "bad" || state[to] === "bad";
    edges.push({ from, to, label, state: down ? "down" : flowing ? "active" : "idle" });
  };
  const serving = snap.lb.vip ? holders : lbs.map((h) => h.name).slice(0, 1);
  for (const lb of lbs) {
    if (snap.lb.vip) {
      edge("client", "vip");
      edge("vip", `lb:${lb.name}`, "", serving.includes(lb.name));
    } else edge("client", `lb:${lb.name}`);
    for (const web of withRole("web")) {
      const b = backends[web.name];
      const rps = b && b.rps !== null && b.rps !== undefined ? `${b.rps.toFixed(1)}/s` : "";
      const live = serving.includes(lb.name);
      edge(`lb:${lb.name}`, `web:${web.name}`, live ? rps : "", live && (!b || b.state === "up"));
    }
  }
  for (const web of withRole("web")) {
    const upstreams = web.roles.includes("app") ? [web] : apps.filter((a) => !a.roles.includes("web"));
    for (const app of upstreams) edge(`web:${web.name}`, `app:${app.name}`);
  }
  for (const app of apps) {
    const from = ha ? `proxy:${app.name}` : `app:${app.name}`;
    if (ha) edge(`app:${app.name}`, from);
    for (const db of dbs) edge(from, db.id, db.role === "primary" ? "writes" : "reads", db.role === "primary" || db.role === "replica");
  }
  return { columns, edges };
}

function drawTopology(container, snap) {
  const { columns, edges } = flowGraph(snap);
  const rows = Math.max(...columns.map((c) => c.length));
  const w = 1100;
  const nodeW = 130;
  const nodeH = 30;
  const h = Math.max(120, rows * 52 + 20);
  const pos = {};
  columns.forEach((column, i) => {
    const cx = 10 + nodeW / 2 + (i * (w - 20 - nodeW)) / Math.max(1, columns.length - 1);
    column.forEach((node, j) => { pos[node.id] = { x: cx, y: ((j + 1) * h) / (column.length + 1) }; });
  });
  const root = svg("svg", { viewBox: `0 0 ${w} ${h}`, class: "flows", role: "img", "aria-label": "flows" });
  for (const e of edges) {
    const a = pos[e.from];
    const b = pos[e.to];
    if (!a || !b) continue;
    const g = svg("g", { class: `edge ${e.state}`, "data-from": e.from, "data-to": e.to, "data-state": e.state });
    g.append(svg("line", { x1: a.x + nodeW / 2, y1: a.y, x2: b.x - nodeW / 2, y2: b.y }));
    if (e.label) g.append(svg("text", { x: (a.x + b.x) / 2, y: (a.y + b.y) / 2 - 4, class: "edge-label", text: e.label }));
    root.append(g);
  }
  for (const node of columns.flat()) {
    const p = pos[node.id];
    const g = svg("g", { class: `node ${node.state}`, "data-node": node.id, "data-state": node.state });
    g.append(
      svg("rect", { x: p.x - nodeW / 2, y: p.y - nodeH / 2, width: nodeW, height: nodeH, rx: 5 }),
      svg("text", { x: p.x, y: p.y + 4, text: node.label }),
    );
    root.append(g);
  }
  container.replaceChildren(root);
}
