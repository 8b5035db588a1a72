// Starlab service map: polls /api/v1/graph and draws it as SVG (no framework, no build step). The
// graph is fetched, parsed and reduced to what is drawn in a worker (view-worker.js); this thread
// lays out and draws that view only when it changed.
//
// Layout (docs/BENCHMARKS.md "Service map at scale" says why it is not a general graph layout
// library): namespaces are boxes on a grid with free gutters between columns and rows; a box is
// collapsed (one row: its workloads' edges are bundled into namespace edges) or expanded (one row
// per workload). Edges are routed orthogonally: out of the source's right side into the gutter
// right of its column, along a row gutter, and down the gutter left of the target's column into
// its left side. Gutters hold no boxes, so an edge never crosses a box it does not connect, and
// the only labels drawn are names in fixed slots of their boxes, so labels cannot overlap; an
// edge's numbers are shown on hover and in the panel.
"use strict";
(function () {
  const POLL_MS = 2000;
  const TOP = 36, GAP = 64, ROW_GAP = 44, BOX_W = 210, HEAD = 40, NODE_H = 34, NODE_GAP = 8, PAD = 10;
  let view = null, scale = 1;
  let selected = null;
  const collapsed = new Map(); // namespace -> true/false the user chose
  const worker = new Worker("view-worker.js");
  let stateVersion = 0, pending = null; // pending: the user action waiting for its redraw
  const perf = { renders: [], interactions: [] };
  window.starlabMap = perf; // read by the Chromium tests

  const policyText = self.starlabPolicyText; // policy-text.js
  const $ = (id) => document.getElementById(id);
  const esc = (s) => String(s).replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]);
  function h(tag, attrs, text) {
    const e = document.createElement(tag);
    for (const k in attrs || {}) e.setAttribute(k, attrs[k]);
    if (text !== undefined) e.textContent = text;
    return e;
  }
  function clear(n) { while (n.firstChild) n.removeChild(n.firstChild); }
  function hash(s) { let x = 2166136261; for (let i = 0; i < s.length; i++) x = Math.imul(x ^ s.charCodeAt(i), 16777619); return x >>> 0; }
  function fit(s, n) { return s.length > n ? s.slice(0, n - 1) + "…" : s; }

  function query() {
    const p = new URLSearchParams();
    const ns = $("ns").value.trim();
    if (ns) p.set("namespace", ns);
    const since = $("since").value;
    if (since) p.set("since", since);
    return p.toString();
  }

  // poll asks the worker for the graph (it fetches, parses and builds the view off this thread and
  // posts a view only when what is drawn changed), then reads the status line.
  async function poll() {
    worker.postMessage({ type: "poll", query: query() });
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
  // sendState tells the worker what the user chose; kind names a user action whose time until the
  // map is redrawn lands in perf.interactions.
  function sendState(kind) {
    stateVersion++;
    if (kind) pending = { version: stateVersion, kind, since: performance.now() };
    worker.postMessage({ type: "state", version: stateVersion, state: { filters: filters(), collapsed: [...collapsed], selected } });
  }
  function received(ev) {
    const m = ev.data;
    if (m.type === "error") { setStatus(m.message, true); return; }
    if (m.version !== stateVersion) return; // built for an older state: the view for the newest is on its way
    const c = m.counts;
    $("counts").textContent = `${c.namespaces} namespaces · ${c.nodes} workloads · ${c.passing}/${c.total} edges shown` +
      (c.truncated ? ` · ${c.truncated} flows of untracked edges` : "");
    $("empty").hidden = c.total > 0;
    if (m.timings.fetchMs !== undefined) {
      $("updated").textContent = "updated " + new Date().toLocaleTimeString();
      if (selected) loadDetail(selected);
    }
    if (!m.view) return;
    view = m.view;
    view.dropsInto = new Set(view.dropsInto);
    view.match = new Set(view.match);
    const drawn = render();
    Object.assign(drawn, m.timings);
    perf.renders.push(drawn);
    const painted = (f) => requestAnimationFrame(() => setTimeout(f, 0)); // the frame after a render is on screen
    if (perf.renders.length === 1) {
      performance.mark("map-first-render");
      painted(() => { perf.firstPaintMs = performance.now(); performance.mark("map-first-paint"); });
    }
    if (pending && pending.version === m.version) {
      const p = pending;
      pending = null;
      painted(() => perf.interactions.push({ kind: p.kind, ms: performance.now() - p.since }));
    }
  }
  function setStatus(text, bad) {
    const s = $("status");
    s.textContent = text;
    s.classList.toggle("bad", !!bad);
  }

  // ---- filters -------------------------------------------------------------------------------
  function filters() {
    return {
      search: $("search").value.trim().toLowerCase(),
      verdict: $("verdict").value,
      policy: $("policy").value.trim().toLowerCase(),
      tier: $("tier").value,
    };
  }
  // ---- layout ----------------------------------------------------------------------------------
  function layout(v) {
    const width = Math.max(($("map-wrap").clientWidth || 1200) / scale - 10, BOX_W + 2 * GAP);
    const cols = Math.max(1, Math.floor((width - GAP) / (BOX_W + GAP)));
    const boxes = [], anchor = new Map(), rows = [];
    let y = TOP, rowH = 0, col = 0, row = 0;
    for (const g of v.groups) {
      const shut = g.shut;
      const nodes = shut ? [] : g.nodes; // sorted by name in the worker
      const hgt = shut ? HEAD : HEAD + nodes.length * (NODE_H + NODE_GAP) + PAD - NODE_GAP + 2;
      if (col === cols) { rows.push({ y: y, h: rowH }); col = 0; y += rowH + ROW_GAP; rowH = 0; row++; }
      const x = GAP + col * (BOX_W + GAP);
      const b = { g, key: g.key, x, y, w: BOX_W, h: hgt, col, row, shut };
      boxes.push(b);
      if (shut) anchor.set("ns:" + g.key, { box: b, y: y + HEAD / 2, x1: x, x2: x + BOX_W });
      nodes.forEach((n, i) => {
        const ny = y + HEAD + i * (NODE_H + NODE_GAP);
        anchor.set(n.id, { box: b, node: n, y: ny + NODE_H / 2, x1: x + PAD, x2: x + BOX_W - PAD, ny });
      });
      rowH = Math.max(rowH, hgt);
      col++;
    }
    rows.push({ y, h: rowH });
    return { boxes, anchor, rows, cols, width: GAP + cols * (BOX_W + GAP), height: y + rowH + ROW_GAP };
  }

  // route draws an edge through the gutters: lanes spread edges of different sources and targets.
  function route(L, a, b, e) {
    const lane = (key, span) => 6 + (hash(key) % Math.max(1, Math.floor((span - 12) / 3))) * 3;
    const right = (box) => box.x + box.w; // the gutter right of a box starts here
    if (a.box === b.box) { // inside one namespace: out right, along its right gutter, back in right
      const gx = right(a.box) + lane(e.source + "|" + e.target, GAP / 2);
      return `M${a.x2},${a.y - 4}H${gx}V${b.y + 4}H${b.x2}`;
    }
    const gxA = right(a.box) + lane("s" + e.source, GAP / 2);
    const gxB = b.box.x - lane("t" + e.target, GAP / 2);
    if (b.box.col === a.box.col + 1) return `M${a.x2},${a.y}H${gxA}V${b.y}H${b.x1}`; // the shared gutter
    const ra = a.box.row, rb = b.box.row;
    const gutterAbove = (r) => L.rows[r].y - ROW_GAP + lane("r" + e.target + e.source, ROW_GAP);
    const gy = rb > ra ? gutterAbove(rb) : rb < ra ? gutterAbove(rb + 1) : gutterAbove(rb);
    const top = Math.max(4, gy);
    return `M${a.x2},${a.y}H${gxA}V${top}H${gxB}V${b.y}H${b.x1}`;
  }

  // render lays out and draws the current view.
  function render() {
    if (!view) return null;
    const t0 = performance.now();
    const L = layout(view);
    const svg = $("map");
    svg.setAttribute("width", Math.ceil(L.width * scale));
    svg.setAttribute("height", Math.ceil(L.height * scale));
    svg.setAttribute("viewBox", `0 0 ${L.width} ${L.height}`);
    svg.classList.toggle("by-tier", $("colour").value === "tier");
    const ns = [], ed = [], no = [];
    for (const b of L.boxes) {
      const gr = b.g;
      const cls = "ns" + (b.shut ? " collapsed" : "") + (gr.drops ? " has-drops" : "") + (gr.match ? " match" : "");
      const title = gr.external ? b.key : "namespace " + b.key;
      const sub = `${gr.nodes.length} workload${gr.nodes.length === 1 ? "" : "s"}` + (gr.internal ? ` · ${gr.internal} edges inside` : "");
      ns.push(`<g class="${cls}" data-namespace="${esc(b.key)}"><rect class="ns-box${gr.external ? " external" : ""}" x="${b.x}" y="${b.y}" width="${b.w}" height="${b.h}" rx="8"/>` +
        `<g class="ns-head" data-toggle="${esc(b.key)}"><rect x="${b.x}" y="${b.y}" width="${b.w}" height="${HEAD - 6}" fill="transparent"/>` +
        `<text class="ns-toggle" x="${b.x + 8}" y="${b.y + 16}">${b.shut ? "▸" : "▾"}</text>` +
        `<text class="ns-title" x="${b.x + 22}" y="${b.y + 16}">${esc(fit(title, 25))}</text>` +
        `<text class="ns-sub" x="${b.x + 22}" y="${b.y + 30}">${esc(sub)}</text></g>` +
        `<title>${esc(title)}: click to ${b.shut ? "expand" : "collapse"}</title></g>`);
    }
    for (const e of view.edges) {
      const a = L.anchor.get(e.source), b = L.anchor.get(e.target);
      if (!a || !b) continue;
      const d = route(L, a, b, e);
      const cls = "edge " + e.verdict + (e.agg ? " agg" : "") + (selected === e.id ? " selected" : "");
      ed.push(`<g class="${cls}" data-id="${esc(e.id)}" data-tier="${esc(e.tier)}" data-verdict="${e.verdict}" data-source="${esc(e.source)}" data-target="${esc(e.target)}" data-from-ns="${esc(e.fromNs)}" data-to-ns="${esc(e.toNs)}">` +
        `<path class="line" d="${d}" marker-end="url(#arrow-${e.verdict})"/><path class="hit" d="${d}"/></g>`);
    }
    for (const [id, p] of L.anchor) {
      if (!p.node) continue;
      const n = p.node;
      const cls = "node kind-" + n.kind + (view.dropsInto.has(id) ? " has-drops" : "") + (view.match.has(id) ? " match" : "");
      const sub = n.kind + (n.services && n.services.length ? " · svc " + n.services.join(",") : "");
      no.push(`<g class="${cls}" data-id="${esc(id)}"><rect x="${p.x1}" y="${p.ny}" width="${p.x2 - p.x1}" height="${NODE_H}" rx="6"/>` +
        `<text x="${p.x1 + 8}" y="${p.ny + 14}">${esc(fit(n.name, 26))}</text><text class="kind" x="${p.x1 + 8}" y="${p.ny + 27}">${esc(fit(sub, 34))}</text>` +
        `<title>${esc(id + (n.pods ? "\npods: " + n.pods.join(", ") : ""))}</title></g>`);
    }
    const t1 = performance.now();
    $("layer-ns").innerHTML = ns.join("");
    $("layer-edges").innerHTML = ed.join("");
    $("layer-nodes").innerHTML = no.join("");
    svg.getBoundingClientRect(); // style and layout now, inside the measured render
    const t2 = performance.now();
    return { layoutMs: t1 - t0, domMs: t2 - t1, renderMs: t2 - t0, boxes: L.boxes.length, edges: ed.length, nodes: no.length };
  }

  // ---- hover and selection ---------------------------------------------------------------------
  function findEdge(id) { return view && view.edges.find((e) => e.id === id); }
  function tierLine(e) {
    const t = Object.entries(e.tiers || {}).sort((x, y) => y[1] - x[1]).map(([k, v]) => `${k} ×${v}`).join(", ");
    return t ? `decided by tier ${e.tier || "?"} (${t})` : "no policy decision seen";
  }
  function showHover(ev, e) {
    const box = $("hover");
    clear(box);
    box.appendChild(h("b", {}, e.agg ? `${e.source.replace(/^ns:/, "namespace ")} → ${e.target.replace(/^ns:/, "namespace ")} (${e.memberCount} edges)` : `${e.source} → ${e.target}`));
    box.appendChild(h("span", { class: "tier-" + (e.tier || "Default") }, tierLine(e)));
    box.appendChild(h("br"));
    const ports = e.ports.join(", ");
    box.appendChild(h("span", {}, `✓${e.forwarded} connections · ✗${e.dropped} drops · ${e.flows} flows` + (ports ? " · " + ports : "")));
    const wrap = $("map-wrap").getBoundingClientRect();
    box.style.left = Math.min(ev.clientX - wrap.left + $("map-wrap").scrollLeft + 14, $("map-wrap").scrollWidth - 370) + "px";
    box.style.top = (ev.clientY - wrap.top + $("map-wrap").scrollTop + 14) + "px";
    box.hidden = false;
  }

  function select(id) {
    selected = id;
    $("map").querySelectorAll(".edge.selected").forEach((x) => x.classList.remove("selected"));
    const g = [...$("map").querySelectorAll(".edge")].find((x) => x.getAttribute("data-id") === id);
    if (g) g.classList.add("selected");
    history.replaceState(null, "", "?select=" + encodeURIComponent(id));
    sendState("select"); // the selection opens its namespaces
    loadDetail(id);
  }

  async function loadDetail(id) {
    const e = findEdge(id);
    if (e && e.agg) { showAggregate(e); return; }
    try {
      const [gr, cr] = await Promise.all([
        fetch("api/v1/graph?" + new URLSearchParams({ edge: id, recent: "true" }), { cache: "no-store" }),
        fetch("api/v1/connections?" + new URLSearchParams({ edge: id, last: "50" }), { cache: "no-store" }),
      ]);
      if (!gr.ok) throw new Error(await gr.text());
      if (!cr.ok) throw new Error(await cr.text());
      const g = await gr.json(), c = await cr.json();
      if (selected !== id) return;
      const edge = g.edges.find((x) => x.id === id);
      if (!edge) { clear($("panel")); $("panel").appendChild(h("p", { class: "hint" }, `edge ${id} is not in the graph (any more)`)); return; }
      showEdge(edge, c);
    } catch (err) {
      setStatus("edge " + id + ": " + err.message, true);
    }
  }

  function showAggregate(e) {
    const panel = $("panel");
    clear(panel);
    panel.appendChild(h("h2", {}, `${e.source.replace(/^ns:/, "namespace ")} → ${e.target.replace(/^ns:/, "namespace ")}`));
    panel.appendChild(h("p", { class: "tier-" + (e.tier || "Default") }, tierLine(e)));
    panel.appendChild(h("p", {}, `${e.memberCount} edges · ✓${e.forwarded} connections · ✗${e.dropped} drops · ${e.flows} flows. Click one to open its namespaces.`));
    const t = h("table", { id: "agg-members" });
    for (const m of e.members) { // the busiest 100, sorted by the worker
      const tr = h("tr");
      const a = h("a", { "data-member": m.id }, `${m.source} → ${m.target}`);
      a.addEventListener("click", () => {
        collapsed.set(m.fromNs, false);
        collapsed.set(m.toNs, false);
        selected = m.id;
        sendState("open-edge");
        loadDetail(m.id);
      });
      tr.appendChild(h("td", {})).appendChild(a);
      tr.appendChild(h("td", { class: m.dropped ? "denied" : "allowed" }, m.verdict));
      tr.appendChild(h("td", { class: "tier-" + (m.tier || "Default") }, m.tier || ""));
      t.appendChild(tr);
    }
    panel.appendChild(t);
  }

  function showEdge(e, conns) {
    const panel = $("panel");
    clear(panel);
    panel.appendChild(h("h2", {}, `${e.source} → ${e.target}`));
    const facts = h("table", { id: "edge-facts" });
    const row = (k, v, cls) => { const tr = h("tr"); tr.appendChild(h("th", {}, k)); tr.appendChild(h("td", cls ? { class: cls } : {}, v)); facts.appendChild(tr); };
    row("verdict", e.verdict, e.dropped ? "denied" : "allowed");
    row("deciding tier", e.tier ? e.tier + " (" + Object.entries(e.tiers || {}).map(([k, v]) => `${k} ×${v}`).join(", ") + ")" +
      (e.passed ? `, ${e.passed} through an Admin Pass` : "") : "none seen", "tier-" + (e.tier || "Default"));
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
      tr.appendChild(h("td", { class: "tier-" + (p.tier || "NetworkPolicy") }, (p.tier || "") + (p.action === "Pass" ? " (pass)" : p.deciding ? " (decided " + p.deciding + ")" : "")));
      tr.appendChild(h("td", {}, p.flows + " flows"));
      pol.appendChild(tr);
    }
    panel.appendChild(pol);

    panel.appendChild(h("h3", {}, `Connections (${conns.connections.length}${conns.more ? " newest of " + (conns.connections.length + conns.more) : ""}, ${conns.events} events folded)`));
    const ft = h("table", { id: "edge-connections" });
    const hd = h("tr");
    for (const c of ["last", "verdict", "client", "server", "events", "policy"]) hd.appendChild(h("th", {}, c));
    ft.appendChild(hd);
    const ep = (x, port) => (x.pod_name ? `${x.namespace}/${x.pod_name}` : x.ip || "identity " + x.identity) + (port ? ":" + port : "");
    for (const c of conns.connections) {
      const tr = h("tr");
      tr.appendChild(h("td", {}, new Date(c.last).toLocaleTimeString()));
      tr.appendChild(h("td", { class: "v-" + c.verdict }, c.verdict + (c.drop_reason_desc ? " " + c.drop_reason_desc : "") + (c.closed ? " closed" : "")));
      tr.appendChild(h("td", {}, ep(c.client, c.client_port)));
      tr.appendChild(h("td", {}, ep(c.server, c.server_port)));
      tr.appendChild(h("td", {}, `${c.events} (${c.replies} replies)` + (c.packets ? ` ${c.packets} pkts` : "")));
      tr.appendChild(h("td", {}, (c.policies || []).map(policyText).join("; ")));
      ft.appendChild(tr);
    }
    panel.appendChild(ft);
  }

  async function exportJSON() {
    const r = await fetch("api/v1/graph?" + query(), { cache: "no-store" });
    if (!r.ok) { setStatus("export: " + (await r.text()), true); return; }
    const blob = new Blob([await r.text()], { type: "application/json" });
    const a = h("a", { href: URL.createObjectURL(blob), download: "starlab-graph-" + new Date().toISOString().replace(/[:.]/g, "-") + ".json" });
    document.body.appendChild(a);
    a.click();
    setTimeout(() => { URL.revokeObjectURL(a.href); a.remove(); }, 1000);
  }

  // ---- wiring ----------------------------------------------------------------------------------
  const svg = $("map");
  svg.addEventListener("click", (ev) => {
    const t = ev.target.closest("[data-toggle]");
    if (t) {
      const ns = t.getAttribute("data-toggle");
      const g = view.groups.find((x) => x.key === ns);
      collapsed.set(ns, !(g && g.shut));
      sendState("toggle-namespace");
      return;
    }
    const e = ev.target.closest(".edge");
    if (e) select(e.getAttribute("data-id"));
  });
  svg.addEventListener("mouseover", (ev) => {
    const g = ev.target.closest(".edge");
    const e = g && findEdge(g.getAttribute("data-id"));
    if (e) showHover(ev, e); else $("hover").hidden = true;
  });
  svg.addEventListener("mouseleave", () => { $("hover").hidden = true; });
  const setAll = (v, kind) => { for (const g of view ? view.groups : []) collapsed.set(g.key, v); sendState(kind); };
  $("expand-all").addEventListener("click", () => setAll(false, "expand-all"));
  $("collapse-all").addEventListener("click", () => setAll(true, "collapse-all"));
  $("zoom-in").addEventListener("click", () => { scale = Math.min(2, scale * 1.25); render(); });
  $("zoom-out").addEventListener("click", () => { scale = Math.max(0.2, scale / 1.25); render(); });
  $("zoom-fit").addEventListener("click", () => {
    const wrap = $("map-wrap"), vb = svg.viewBox.baseVal;
    if (vb && vb.width) scale = Math.max(0.2, Math.min(1, wrap.clientWidth / vb.width, wrap.clientHeight / vb.height));
    render();
  });
  $("export").addEventListener("click", exportJSON);
  $("ns").addEventListener("change", poll);
  $("since").addEventListener("change", poll);
  let typing = 0;
  for (const id of ["search", "policy"]) $(id).addEventListener("input", () => { clearTimeout(typing); typing = setTimeout(() => sendState(id), 120); });
  for (const id of ["verdict", "tier"]) $(id).addEventListener("change", () => sendState(id));
  $("colour").addEventListener("change", () => render());
  window.addEventListener("resize", () => render());
  // ?select=<edge id> preselects an edge (links, tests); ?search=, ?verdict=, ?policy=, ?tier=, ?colour= set the filters.
  const params = new URLSearchParams(location.search);
  selected = params.get("select");
  for (const k of ["search", "verdict", "policy", "tier", "colour", "ns"]) if (params.get(k)) $(k).value = params.get(k);
  worker.onmessage = received;
  worker.onerror = (e) => setStatus("map worker: " + (e.message || "failed to start"), true);
  sendState();
  poll();
  setInterval(poll, POLL_MS);
})();
