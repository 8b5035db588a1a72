// Starlab service map: polls /api/v1/graph and draws it as SVG (no framework, no build step).
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
  const AUTO_COLLAPSE = 80; // more workloads than this: namespaces start collapsed
  const EXTERNAL = "(outside the cluster)";
  const TIERS = ["Admin", "NetworkPolicy", "Baseline", "Pass", "Default"];
  let graph = null, view = null, signature = "", scale = 1;
  let selected = null, detail = null;
  const collapsed = new Map(); // namespace -> true/false the user chose
  let autoCollapsed = null; // the default once the first graph arrived
  const perf = { renders: [] };
  window.starlabMap = perf; // read by the Chromium tests

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

  async function poll() {
    try {
      const t0 = performance.now();
      const r = await fetch("api/v1/graph?" + query(), { cache: "no-store" });
      if (!r.ok) throw new Error(await r.text());
      const text = await r.text();
      const t1 = performance.now();
      graph = JSON.parse(text);
      const t2 = performance.now();
      const drawn = render(false);
      if (drawn) {
        drawn.fetchMs = t1 - t0; drawn.parseMs = t2 - t1;
        perf.renders.push(drawn);
        if (perf.renders.length === 1) {
          performance.mark("map-first-render");
          // the frame after the first render is painted: when the map is first on screen
          requestAnimationFrame(() => setTimeout(() => { perf.firstPaintMs = performance.now(); performance.mark("map-first-paint"); }, 0));
        }
      }
      $("updated").textContent = "updated " + new Date().toLocaleTimeString();
      if (selected) loadDetail(selected);
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

  // ---- filters -------------------------------------------------------------------------------
  function policyText(p) {
    if (!p.name) return p.kind;
    if (p.kind === "ClusterNetworkPolicy") return `${p.kind} ${p.name}` + (p.rule || p.action ? ` [rule ${p.rule || ""}${p.action ? " " + p.action : ""}]` : "");
    return `${p.kind} ${p.namespace}/${p.name}`;
  }
  function filters() {
    return {
      search: $("search").value.trim().toLowerCase(),
      verdict: $("verdict").value,
      policy: $("policy").value.trim().toLowerCase(),
      tier: $("tier").value,
    };
  }
  function nodeMatches(n, s) {
    if (!s) return false;
    if (n.id.toLowerCase().includes(s) || n.name.toLowerCase().includes(s)) return true;
    return (n.pods || []).some((p) => p.toLowerCase().includes(s));
  }
  function edgePasses(e, f, match) {
    if (f.verdict === "drops" && !e.dropped) return false;
    if (f.verdict === "dropped" && e.verdict !== "dropped") return false;
    if (f.verdict === "forwarded" && e.verdict !== "forwarded") return false;
    if (f.tier && !(e.tiers && e.tiers[f.tier])) return false;
    if (f.policy && !(e.policies || []).some((p) => (p.namespace ? p.namespace + "/" : "") + (p.name || p.kind).toLowerCase() === f.policy ||
      policyText(p).toLowerCase().includes(f.policy))) return false;
    if (f.search && !match.has(e.source) && !match.has(e.target)) return false;
    return true;
  }

  // ---- the visible graph: collapsed namespaces bundle their workloads' edges ---------------
  function isCollapsed(ns) {
    if (collapsed.has(ns)) return collapsed.get(ns);
    return autoCollapsed;
  }
  function build(g) {
    const f = filters();
    const byId = new Map(g.nodes.map((n) => [n.id, n]));
    const match = new Set(f.search ? g.nodes.filter((n) => nodeMatches(n, f.search)).map((n) => n.id) : []);
    const filtering = !!(f.search || f.verdict || f.policy || f.tier);
    const edges = g.edges.filter((e) => edgePasses(e, f, match));
    const nsOf = (id) => { const n = byId.get(id); return (n && n.namespace) || EXTERNAL; };
    const shown = new Set();
    if (filtering) for (const e of edges) { shown.add(e.source); shown.add(e.target); }
    const groups = new Map();
    for (const n of g.nodes) {
      if (filtering && !shown.has(n.id)) continue;
      const key = n.namespace || EXTERNAL;
      if (!groups.has(key)) groups.set(key, { key, nodes: [], internal: 0, drops: false, match: false, agg: 0 });
      const grp = groups.get(key);
      grp.nodes.push(n);
      if (match.has(n.id)) grp.match = true;
    }
    // A search opens the namespaces it found something in, and a selected edge (?select= links) its
    // endpoints' namespaces, unless the user closed them.
    const sel = selected && !selected.startsWith("agg:") ? g.edges.find((e) => e.id === selected) : null;
    const selNs = new Set(sel ? [nsOf(sel.source), nsOf(sel.target)] : []);
    const closed = (ns) => !collapsed.has(ns) && (selNs.has(ns) || (f.search && groups.get(ns) && groups.get(ns).match)) ? false : isCollapsed(ns);
    const endpoint = (id) => (closed(nsOf(id)) ? "ns:" + nsOf(id) : id);
    const vis = new Map();
    const dropsInto = new Set();
    for (const e of edges) {
      if (e.dropped) { dropsInto.add(e.target); groups.get(nsOf(e.target)).drops = true; }
      const s = endpoint(e.source), t = endpoint(e.target);
      if (s === t && s.startsWith("ns:")) { groups.get(nsOf(e.source)).internal++; continue; }
      const ends = { source: s, target: t, fromNs: nsOf(e.source), toNs: nsOf(e.target) };
      if (s === e.source && t === e.target) { vis.set(e.id, { id: e.id, ...ends, raw: e, members: [e] }); continue; }
      const id = "agg:" + s + "->" + t;
      let a = vis.get(id);
      if (!a) { a = { id, ...ends, agg: true, members: [] }; vis.set(id, a); }
      a.members.push(e);
    }
    for (const v of vis.values()) {
      let fwd = 0, drop = 0, flows = 0;
      const tiers = {};
      for (const m of v.members) {
        fwd += m.forwarded; drop += m.dropped; flows += m.flows;
        for (const t in m.tiers || {}) tiers[t] = (tiers[t] || 0) + m.tiers[t];
      }
      let tier = "", best = 0;
      for (const t of TIERS) if ((tiers[t] || 0) > best) { tier = t; best = tiers[t]; }
      Object.assign(v, { forwarded: fwd, dropped: drop, flows, tiers, tier: v.raw ? v.raw.tier || "" : tier,
        verdict: v.raw ? v.raw.verdict : drop && fwd ? "mixed" : drop ? "dropped" : "forwarded" });
    }
    const keys = [...groups.keys()].sort((a, b) => (a === EXTERNAL) - (b === EXTERNAL) || a.localeCompare(b));
    return { groups: keys.map((k) => groups.get(k)), edges: [...vis.values()], closed, dropsInto, match, total: g.edges.length, passing: edges.length };
  }

  // ---- layout ----------------------------------------------------------------------------------
  function layout(v) {
    const width = Math.max(($("map-wrap").clientWidth || 1200) / scale - 10, BOX_W + 2 * GAP);
    const cols = Math.max(1, Math.floor((width - GAP) / (BOX_W + GAP)));
    const boxes = [], anchor = new Map(), rows = [];
    let y = TOP, rowH = 0, col = 0, row = 0;
    for (const g of v.groups) {
      const shut = v.closed(g.key);
      const nodes = shut ? [] : g.nodes.slice().sort((a, b) => a.name.localeCompare(b.name));
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

  // render draws the map; it skips the drawing when nothing that is drawn changed (force: always).
  function render(force) {
    const g = graph;
    if (!g) return null;
    const t0 = performance.now();
    if (autoCollapsed === null) autoCollapsed = g.nodes.length > AUTO_COLLAPSE; // the first graph decides
    view = build(g);
    const sig = JSON.stringify([scale, selected, $("colour").value, ($("map-wrap").clientWidth || 0), view.groups.map((x) => [x.key, view.closed(x.key), x.nodes.length, x.drops, x.match]),
      view.edges.map((e) => e.id + e.verdict + e.tier)]);
    $("counts").textContent = `${g.namespaces.length} namespaces · ${g.nodes.length} workloads · ${view.passing}/${view.total} edges shown` +
      (g.truncated ? ` · ${g.truncated} flows of untracked edges` : "");
    if (!force && sig === signature) return null;
    signature = sig;
    const t1 = performance.now();
    const L = layout(view);
    const svg = $("map");
    svg.setAttribute("width", Math.ceil(L.width * scale));
    svg.setAttribute("height", Math.ceil(L.height * scale));
    svg.setAttribute("viewBox", `0 0 ${L.width} ${L.height}`);
    svg.classList.toggle("by-tier", $("colour").value === "tier");
    $("empty").hidden = g.edges.length > 0;
    const ns = [], ed = [], no = [];
    for (const b of L.boxes) {
      const gr = b.g;
      const cls = "ns" + (b.shut ? " collapsed" : "") + (gr.drops ? " has-drops" : "") + (gr.match ? " match" : "");
      const title = b.key === EXTERNAL ? b.key : "namespace " + b.key;
      const sub = `${gr.nodes.length} workload${gr.nodes.length === 1 ? "" : "s"}` + (gr.internal ? ` · ${gr.internal} edges inside` : "");
      ns.push(`<g class="${cls}" data-namespace="${esc(b.key)}"><rect class="ns-box${b.key === EXTERNAL ? " external" : ""}" x="${b.x}" y="${b.y}" width="${b.w}" height="${b.h}" rx="8"/>` +
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
    const t2 = performance.now();
    $("layer-ns").innerHTML = ns.join("");
    $("layer-edges").innerHTML = ed.join("");
    $("layer-nodes").innerHTML = no.join("");
    svg.getBoundingClientRect(); // style and layout now, inside the measured render
    const t3 = performance.now();
    return { buildMs: t1 - t0, layoutMs: t2 - t1, domMs: t3 - t2, renderMs: t3 - t0, boxes: L.boxes.length, edges: ed.length, nodes: no.length };
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
    box.appendChild(h("b", {}, e.agg ? `${e.source.replace(/^ns:/, "namespace ")} → ${e.target.replace(/^ns:/, "namespace ")} (${e.members.length} edges)` : `${e.source} → ${e.target}`));
    box.appendChild(h("span", { class: "tier-" + (e.tier || "Default") }, tierLine(e)));
    box.appendChild(h("br"));
    const ports = e.raw ? (e.raw.ports || []).join(", ") : "";
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
    signature = ""; // the selection is part of what is drawn
    history.replaceState(null, "", "?select=" + encodeURIComponent(id));
    loadDetail(id);
  }

  async function loadDetail(id) {
    const e = findEdge(id);
    if (e && e.agg) { detail = null; showAggregate(e); return; }
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
    panel.appendChild(h("p", {}, `${e.members.length} edges · ✓${e.forwarded} connections · ✗${e.dropped} drops · ${e.flows} flows. Click one to open its namespaces.`));
    const t = h("table", { id: "agg-members" });
    for (const m of e.members.slice().sort((x, y) => y.flows - x.flows).slice(0, 100)) {
      const tr = h("tr");
      const a = h("a", { "data-member": m.id }, `${m.source} → ${m.target}`);
      a.addEventListener("click", () => {
        for (const id of [m.source, m.target]) {
          const n = graph.nodes.find((x) => x.id === id);
          collapsed.set((n && n.namespace) || EXTERNAL, false);
        }
        selected = m.id;
        render(true);
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

  function exportJSON() {
    const blob = new Blob([JSON.stringify(graph || {}, null, 2)], { type: "application/json" });
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
      collapsed.set(ns, !view.closed(ns));
      render(true);
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
  const setAll = (v) => { for (const g of view ? view.groups : []) collapsed.set(g.key, v); render(true); };
  $("expand-all").addEventListener("click", () => {
    const t0 = performance.now();
    setAll(false);
    perf.expandAllMs = performance.now() - t0;
    requestAnimationFrame(() => setTimeout(() => { perf.expandAllPaintMs = performance.now() - t0; }, 0));
  });
  $("collapse-all").addEventListener("click", () => setAll(true));
  $("zoom-in").addEventListener("click", () => { scale = Math.min(2, scale * 1.25); render(true); });
  $("zoom-out").addEventListener("click", () => { scale = Math.max(0.2, scale / 1.25); render(true); });
  $("zoom-fit").addEventListener("click", () => {
    const wrap = $("map-wrap"), vb = svg.viewBox.baseVal;
    if (vb && vb.width) scale = Math.max(0.2, Math.min(1, wrap.clientWidth / vb.width, wrap.clientHeight / vb.height));
    render(true);
  });
  $("export").addEventListener("click", exportJSON);
  $("ns").addEventListener("change", poll);
  $("since").addEventListener("change", poll);
  let typing = 0;
  for (const id of ["search", "policy"]) $(id).addEventListener("input", () => { clearTimeout(typing); typing = setTimeout(() => render(true), 120); });
  for (const id of ["verdict", "tier", "colour"]) $(id).addEventListener("change", () => render(true));
  window.addEventListener("resize", () => graph && render(false));
  // ?select=<edge id> preselects an edge (links, tests); ?search=, ?verdict=, ?policy=, ?tier=, ?colour= set the filters.
  const params = new URLSearchParams(location.search);
  selected = params.get("select");
  for (const k of ["search", "verdict", "policy", "tier", "colour", "ns"]) if (params.get(k)) $(k).value = params.get(k);
  poll();
  setInterval(poll, POLL_MS);
})();
