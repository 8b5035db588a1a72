// Starlab service map, the worker: fetches /api/v1/graph, parses it and builds the visible graph off
// the page's main thread, so a poll of a 5,000-edge graph under a steady flow stream costs the page
// nothing when what is drawn did not change (docs/BENCHMARKS.md "Service map at scale").
//
// Messages from the page:
//   {type: "state", version, state}  the filters, collapsed namespaces and selection: build and post the view
//   {type: "poll", query}            fetch the graph; post the view only when what is drawn changed
// Messages to the page:
//   {type: "view", version, view, sig, timings}  a view to draw (view is null when nothing drawn changed)
//   {type: "error", message}
"use strict";
const EXTERNAL = "(outside the cluster)";
const TIERS = ["Admin", "NetworkPolicy", "Baseline", "Pass", "Default"];
const AUTO_COLLAPSE = 80; // more workloads than this: namespaces start collapsed
const MEMBERS_POSTED = 100; // an aggregate edge's panel lists its busiest members
let graph = null, state = null, version = 0, autoCollapsed = null, posted = "";

importScripts("policy-text.js");
const policyText = self.starlabPolicyText;
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

// build is the visible graph: collapsed namespaces bundle their workloads' edges. It holds only what
// the page draws, hovers and lists, so posting it is cheap.
function build(g, st) {
  const f = st.filters;
  const collapsed = new Map(st.collapsed);
  if (autoCollapsed === null) autoCollapsed = g.nodes.length > AUTO_COLLAPSE; // the first graph decides
  const isCollapsed = (ns) => (collapsed.has(ns) ? collapsed.get(ns) : autoCollapsed);
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
    if (!groups.has(key)) groups.set(key, { key, external: key === EXTERNAL, nodes: [], internal: 0, drops: false, match: false, shut: false });
    const grp = groups.get(key);
    grp.nodes.push({ id: n.id, name: n.name, kind: n.kind, services: n.services, pods: n.pods });
    if (match.has(n.id)) grp.match = true;
  }
  // A search opens the namespaces it found something in, and a selected edge (?select= links) its
  // endpoints' namespaces, unless the user closed them.
  const sel = st.selected && !st.selected.startsWith("agg:") ? g.edges.find((e) => e.id === st.selected) : null;
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
  const out = [];
  for (const v of vis.values()) {
    let fwd = 0, drop = 0, flows = 0;
    const tiers = {};
    for (const m of v.members) {
      fwd += m.forwarded; drop += m.dropped; flows += m.flows;
      for (const t in m.tiers || {}) tiers[t] = (tiers[t] || 0) + m.tiers[t];
    }
    let tier = "", best = 0;
    for (const t of TIERS) if ((tiers[t] || 0) > best) { tier = t; best = tiers[t]; }
    const e = { id: v.id, source: v.source, target: v.target, fromNs: v.fromNs, toNs: v.toNs, agg: !!v.agg,
      forwarded: fwd, dropped: drop, flows, tiers, tier: v.raw ? v.raw.tier || "" : tier,
      verdict: v.raw ? v.raw.verdict : drop && fwd ? "mixed" : drop ? "dropped" : "forwarded",
      ports: v.raw ? v.raw.ports || [] : [], memberCount: v.members.length };
    if (v.agg) {
      e.members = v.members.slice().sort((x, y) => y.flows - x.flows).slice(0, MEMBERS_POSTED).map((m) => ({
        id: m.id, source: m.source, target: m.target, fromNs: nsOf(m.source), toNs: nsOf(m.target),
        verdict: m.verdict, dropped: m.dropped, tier: m.tier || "" }));
    }
    out.push(e);
  }
  const keys = [...groups.keys()].sort((a, b) => (a === EXTERNAL) - (b === EXTERNAL) || a.localeCompare(b));
  const grps = keys.map((k) => groups.get(k));
  for (const grp of grps) {
    grp.shut = closed(grp.key);
    grp.nodes.sort((a, b) => a.name.localeCompare(b.name));
  }
  return {
    groups: grps, edges: out, dropsInto: [...dropsInto], match: [...match], total: g.edges.length, passing: edges.length,
    namespaces: g.namespaces.length, nodes: g.nodes.length, truncated: g.truncated || 0,
  };
}

// signature is what is drawn: a view with the same signature needs no redraw.
function signature(v) {
  return JSON.stringify([v.groups.map((x) => [x.key, x.shut, x.nodes.length, x.drops, x.match]), v.edges.map((e) => e.id + e.verdict + e.tier)]);
}

// post builds the view for the current state and posts it when force is set or what is drawn changed;
// otherwise it posts only the counts the footer shows.
function post(force, timings) {
  const t0 = performance.now();
  const v = build(graph, state);
  const sig = signature(v);
  timings.buildMs = performance.now() - t0;
  const changed = force || sig !== posted;
  posted = sig;
  const counts = { namespaces: v.namespaces, nodes: v.nodes, total: v.total, passing: v.passing, truncated: v.truncated };
  self.postMessage({ type: "view", version, view: changed ? v : null, counts, timings });
}

async function poll(query) {
  try {
    const t0 = performance.now();
    const r = await fetch("api/v1/graph?" + query, { cache: "no-store" });
    if (!r.ok) throw new Error(await r.text());
    const text = await r.text();
    const t1 = performance.now();
    graph = JSON.parse(text);
    const t2 = performance.now();
    if (state) post(false, { fetchMs: t1 - t0, parseMs: t2 - t1 });
  } catch (e) {
    self.postMessage({ type: "error", message: "graph: " + e.message });
  }
}

self.onmessage = (ev) => {
  const m = ev.data;
  if (m.type === "state") {
    state = m.state;
    version = m.version;
    if (graph) post(true, {});
  } else if (m.type === "poll") {
    poll(m.query);
  }
};
