// Starlab service map: polls /api/v1/graph and draws every namespace at once (plain SVG, no framework).
"use strict";
(function () {
  const SVG = "http://www.w3.org/2000/svg";
  const POLL_MS = 2000;
  const TOP = 80, BOX_W = 230, NODE_W = 190, NODE_H = 40, NODE_GAP = 22, BOX_PAD = 20, BOX_TITLE = 26, BOX_GAP = 90, ROW_GAP = 60;
  const EXTERNAL = "(outside the cluster)";
  let graph = null;
  let selected = null;

  const $ = (id) => document.getElementById(id);
  function el(tag, attrs, text) {
    const e = document.createElementNS(SVG, tag);
    for (const k in attrs || {}) e.setAttribute(k, attrs[k]);
    if (text !== undefined) e.textContent = text;
    return e;
  }
  function h(tag, attrs, text) {
    const e = document.createElement(tag);
    for (const k in attrs || {}) e.setAttribute(k, attrs[k]);
    if (text !== undefined) e.textContent = text;
    return e;
  }
  function clear(n) { while (n.firstChild) n.removeChild(n.firstChild); }

  function query() {
    const p = new URLSearchParams({ recent: "true" });
    const ns = $("ns").value.trim();
    if (ns) p.set("namespace", ns);
    const since = $("since").value;
    if (since) p.set("since", since);
    return p.toString();
  }

  async function poll() {
    try {
      const r = await fetch("api/v1/graph?" + query(), { cache: "no-store" });
      if (!r.ok) throw new Error(await r.text());
      graph = await r.json();
      render();
      $("updated").textContent = "updated " + new Date().toLocaleTimeString();
    } catch (e) {
      setStatus("graph: " + e.message, true);
    }
    try {
      const r = await fetch("api/v1/status", { cache: "no-store" });
      if (r.ok) {
        const s = await r.json();
        const total = s.connected + s.unavailable;
        const down = s.nodes.filter((n) => n.state !== "connected").map((n) => n.name + " (" + (n.error || n.state) + ")");
        setStatus(s.connected + "/" + total + " nodes connected" + (down.length ? ": unavailable " + down.join(", ") : "") +
          " · " + s.flows_per_second.toFixed(1) + " flows/s · " + s.flows_total + " flows · lost " + s.lost_events, down.length > 0);
      }
    } catch (e) {
      setStatus("status: " + e.message, true);
    }
  }
  function setStatus(text, bad) {
    const s = $("status");
    s.textContent = text;
    s.classList.toggle("bad", !!bad);
  }

  // layout places namespace boxes in rows and nodes in columns inside them.
  function layout(g) {
    const groups = new Map();
    for (const n of g.nodes) {
      const key = n.namespace || EXTERNAL;
      if (!groups.has(key)) groups.set(key, []);
      groups.get(key).push(n);
    }
    const keys = [...groups.keys()].sort((a, b) => (a === EXTERNAL) - (b === EXTERNAL) || a.localeCompare(b));
    const width = Math.max(($("map-wrap").clientWidth || 1200) - 20, BOX_W + 40);
    const perRow = Math.max(1, Math.floor((width - 20 + BOX_GAP) / (BOX_W + BOX_GAP)));
    const pos = new Map(), boxes = [];
    let x = 20, y = TOP, rowH = 0, col = 0, maxX = 0;
    for (const key of keys) {
      const nodes = groups.get(key).sort((a, b) => a.name.localeCompare(b.name));
      const hgt = BOX_TITLE + BOX_PAD + nodes.length * (NODE_H + NODE_GAP) - NODE_GAP + BOX_PAD;
      if (col === perRow) { col = 0; x = 20; y += rowH + ROW_GAP; rowH = 0; }
      boxes.push({ key, x, y, w: BOX_W, h: hgt });
      nodes.forEach((n, i) => pos.set(n.id, { x: x + (BOX_W - NODE_W) / 2, y: y + BOX_TITLE + BOX_PAD + i * (NODE_H + NODE_GAP), node: n }));
      rowH = Math.max(rowH, hgt);
      maxX = Math.max(maxX, x + BOX_W);
      x += BOX_W + BOX_GAP;
      col++;
    }
    return { pos, boxes, width: maxX + 140, height: y + rowH + 40 };
  }

  function edgePath(a, b) {
    const ay = a.y + NODE_H / 2, by = b.y + NODE_H / 2;
    if (a === b) { // a workload talking to itself
      const x = a.x + NODE_W, y = a.y + 8;
      return { d: `M${x},${y} C${x + 50},${y - 30} ${x + 50},${y + 40} ${x},${y + NODE_H - 14}`, mx: x + 40, my: y + 10 };
    }
    let x1, x2;
    if (Math.abs(a.x - b.x) < 1) { // same column: bend out to the right
      x1 = a.x + NODE_W; x2 = b.x + NODE_W;
      const bend = 60 + Math.abs(ay - by) / 4;
      return { d: `M${x1},${ay} C${x1 + bend},${ay} ${x2 + bend},${by} ${x2},${by}`, mx: x1 + bend * 0.75, my: (ay + by) / 2 };
    }
    if (a.x < b.x) { x1 = a.x + NODE_W; x2 = b.x; } else { x1 = a.x; x2 = b.x + NODE_W; }
    const dx = (x2 - x1) / 2;
    if (Math.abs(x2 - x1) > BOX_W + BOX_GAP && Math.abs(ay - by) < 4 * NODE_H) {
      // Skips over boxes in between: arc above (left to right) or below (right to left) them.
      const up = x1 < x2;
      const top = Math.min(ay, by), bottom = Math.max(ay, by);
      const cy = up ? Math.max(8, top - 60 - Math.abs(x2 - x1) / 12) : bottom + 60 + Math.abs(x2 - x1) / 12;
      const ctl = up ? (cy - 0.25 * top) / 0.75 : (cy - 0.25 * bottom) / 0.75;
      return { d: `M${x1},${ay} C${x1 + dx / 2},${ctl} ${x2 - dx / 2},${ctl} ${x2},${by}`, mx: (x1 + x2) / 2, my: cy + (up ? 0 : 14) };
    }
    return { d: `M${x1},${ay} C${x1 + dx},${ay} ${x2 - dx},${by} ${x2},${by}`, mx: (x1 + x2) / 2, my: (ay + by) / 2 };
  }

  function render() {
    const g = graph;
    const svg = $("map");
    const L = layout(g);
    svg.setAttribute("width", L.width);
    svg.setAttribute("height", L.height);
    $("empty").hidden = g.edges.length > 0;
    const lns = $("layer-ns"), led = $("layer-edges"), lno = $("layer-nodes");
    clear(lns); clear(led); clear(lno);
    for (const b of L.boxes) {
      const grp = el("g", { class: "ns", "data-namespace": b.key });
      grp.appendChild(el("rect", { class: "ns-box" + (b.key === EXTERNAL ? " external" : ""), x: b.x, y: b.y, width: b.w, height: b.h, rx: 8 }));
      grp.appendChild(el("text", { class: "ns-title", x: b.x + 10, y: b.y + 18 }, b.key === EXTERNAL ? b.key : "namespace " + b.key));
      lns.appendChild(grp);
    }
    const dropsInto = new Set(g.edges.filter((e) => e.dropped > 0).map((e) => e.target));
    for (const e of g.edges) {
      const a = L.pos.get(e.source), b = L.pos.get(e.target);
      if (!a || !b) continue;
      const p = edgePath(a, b);
      const grp = el("g", { class: "edge " + e.verdict + (selected === e.id ? " selected" : ""), "data-id": e.id, "data-verdict": e.verdict });
      grp.appendChild(el("path", { class: "line", d: p.d, "marker-end": `url(#arrow-${e.verdict})` }));
      grp.appendChild(el("path", { class: "hit", d: p.d }));
      const label = [];
      if (e.forwarded) label.push("✓" + e.forwarded);
      if (e.dropped) label.push("✗" + e.dropped);
      grp.appendChild(el("text", { x: p.mx, y: p.my - 4, "text-anchor": "middle" }, label.join(" ") + " " + (e.ports || []).join(",")));
      const t = el("title", {}, `${e.source} → ${e.target}: ${e.forwarded} forwarded, ${e.dropped} dropped`);
      grp.appendChild(t);
      grp.addEventListener("click", () => { selected = e.id; showEdge(e); render(); });
      led.appendChild(grp);
    }
    for (const [id, p] of L.pos) {
      const n = p.node;
      const grp = el("g", { class: "node kind-" + n.kind + (dropsInto.has(id) ? " has-drops" : ""), "data-id": id });
      grp.appendChild(el("rect", { x: p.x, y: p.y, width: NODE_W, height: NODE_H, rx: 6 }));
      grp.appendChild(el("text", { x: p.x + 10, y: p.y + 17 }, n.name.length > 26 ? n.name.slice(0, 25) + "…" : n.name));
      const sub = n.kind + (n.services && n.services.length ? " · svc " + n.services.join(",") : "");
      grp.appendChild(el("text", { class: "kind", x: p.x + 10, y: p.y + 32 }, sub));
      grp.appendChild(el("title", {}, id + (n.pods ? "\npods: " + n.pods.join(", ") : "")));
      lno.appendChild(grp);
    }
    if (selected) {
      const e = g.edges.find((x) => x.id === selected);
      if (e) showEdge(e);
    }
  }

  function policyText(p) { return p.name ? `${p.kind} ${p.namespace}/${p.name}` : p.kind; }

  function showEdge(e) {
    const panel = $("panel");
    clear(panel);
    panel.appendChild(h("h2", {}, `${e.source} → ${e.target}`));
    const facts = h("table", { id: "edge-facts" });
    const row = (k, v, cls) => { const tr = h("tr"); tr.appendChild(h("th", {}, k)); tr.appendChild(h("td", cls ? { class: cls } : {}, v)); facts.appendChild(tr); };
    row("verdict", e.verdict, e.dropped ? "denied" : "allowed");
    row("connections forwarded", String(e.forwarded));
    row("drops", String(e.dropped));
    row("flow events", String(e.flows));
    row("ports", (e.ports || []).join(", "));
    if (e.service) row("service", e.service);
    if (e.drop_reasons) row("drop reasons", Object.entries(e.drop_reasons).map(([k, v]) => `${k} ×${v}`).join(", "), "denied");
    row("last seen", new Date(e.last_seen).toLocaleString());
    panel.appendChild(facts);

    panel.appendChild(h("h3", {}, "Deciding policies"));
    const pol = h("table", { id: "edge-policies" });
    if (!e.policies || !e.policies.length) {
      pol.appendChild(h("tr")).appendChild(h("td", {}, "no policy selects these endpoints (allowed by default)"));
    }
    for (const p of e.policies || []) {
      const tr = h("tr");
      tr.appendChild(h("td", { class: p.decision }, p.decision));
      tr.appendChild(h("td", {}, policyText(p)));
      tr.appendChild(h("td", {}, p.flows + " flows"));
      pol.appendChild(tr);
    }
    panel.appendChild(pol);

    panel.appendChild(h("h3", {}, "Recent flows"));
    const ft = h("table", { id: "edge-flows" });
    const hd = h("tr");
    for (const c of ["time", "verdict", "from", "to", "where", "policy"]) hd.appendChild(h("th", {}, c));
    ft.appendChild(hd);
    for (const f of (e.recent || []).slice().reverse()) {
      const tr = h("tr");
      const ep = (x, port) => (x.pod_name ? `${x.namespace}/${x.pod_name}` : x.ip || "identity " + x.identity) + (port ? ":" + port : "");
      tr.appendChild(h("td", {}, new Date(f.time).toLocaleTimeString()));
      tr.appendChild(h("td", { class: "v-" + f.verdict }, f.verdict + (f.drop_reason_desc ? " " + f.drop_reason_desc : "") + " " + (f.event_type || "")));
      tr.appendChild(h("td", {}, ep(f.source, f.l4.source_port)));
      tr.appendChild(h("td", {}, ep(f.destination, f.l4.destination_port)));
      tr.appendChild(h("td", {}, (f.traffic_direction || "").toLowerCase() + " on " + (f.node_name || "?")));
      const by = (f.allowed_by || []).map((p) => "allowed by " + policyText(p)).concat((f.denied_by || []).map((p) => "denied by " + policyText(p)));
      tr.appendChild(h("td", {}, by.join("; ")));
      ft.appendChild(tr);
    }
    panel.appendChild(ft);
  }

  function exportJSON() {
    const blob = new Blob([JSON.stringify(graph || {}, null, 2)], { type: "application/json" });
    const a = h("a", { href: URL.createObjectURL(blob), download: "starlab-graph-" + new Date().toISOString().replace(/[:.]/g, "-") + ".json" });
    document.body.appendChild(a);
    a.click();
    setTimeout(() => { URL.revokeObjectURL(a.href); a.remove(); }, 1000);
  }

  $("export").addEventListener("click", exportJSON);
  $("ns").addEventListener("change", poll);
  $("since").addEventListener("change", poll);
  window.addEventListener("resize", () => graph && render());
  // ?select=<edge id> preselects an edge (links, tests).
  selected = new URLSearchParams(location.search).get("select");
  poll();
  setInterval(poll, POLL_MS);
})();
