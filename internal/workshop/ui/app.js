// Presenter page of `starlab demo`: polls /api/state, draws the step, sends key presses.
"use strict";
(function () {
  const $ = (id) => document.getElementById(id);
  const NS = "http://www.w3.org/2000/svg";
  let script = null, state = null, graph = null, flows = [], showFlows = false;

  function esc(s) { return String(s == null ? "" : s).replace(/[&<>"]/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;" }[c])); }

  // highlightYAML colours comments, keys, strings, numbers and document separators.
  function highlightYAML(text) {
    return text.split("\n").map((line) => {
      if (/^\s*#/.test(line)) return '<span class="c">' + esc(line) + "</span>";
      if (/^---/.test(line)) return '<span class="d">' + esc(line) + "</span>";
      const m = line.match(/^(\s*-?\s*)([\w.\/-]+)(:)(.*)$/);
      if (!m) return esc(line);
      let rest = esc(m[4]);
      rest = rest.replace(/(&quot;[^&]*&quot;|'[^']*')/g, '<span class="s">$1</span>')
        .replace(/\b(\d+)\b/g, '<span class="n">$1</span>');
      if (!/span/.test(rest) && /\S/.test(m[4]) && !/[{\[]/.test(m[4])) rest = '<span class="s">' + esc(m[4]) + "</span>";
      return esc(m[1]) + '<span class="k">' + esc(m[2]) + "</span>" + m[3] + rest;
    }).join("\n");
  }

  async function getJSON(path) {
    const r = await fetch(path, { cache: "no-store" });
    if (!r.ok) throw new Error(path + ": " + r.status);
    return r.json();
  }

  async function press(action) {
    const r = await fetch("/api/" + action, { method: "POST" });
    if (r.status === 409) flash("programming… wait for the step to finish");
    poll();
  }
  function flash(msg) { $("status").textContent = msg; }

  document.addEventListener("keydown", (e) => {
    if (e.key === "ArrowRight") press("next");
    else if (e.key === "ArrowLeft") press("back");
    else if (e.key === "r") press("reset");
    else if (e.key === "f") { showFlows = !showFlows; $("flows").classList.toggle("hidden", !showFlows); drawFlows(); }
  });

  function drawNav() {
    $("parts").innerHTML = script.parts.map((p, i) => '<span class="' + (state && state.part === i ? "on" : "") + '">' + esc(p.title) + "</span>").join("");
    let h = "";
    script.parts.forEach((p, i) => {
      h += '<div class="part">' + esc(p.title) + "</div>";
      p.steps.forEach((s, j) => {
        let cls = "step";
        if (state && i === state.part && j === state.step) cls += " on";
        else if (state && (i < state.part || (i === state.part && j < state.step))) cls += " past";
        h += '<div class="' + cls + '">' + (j + 1) + ". " + esc(s.title) + "</div>";
      });
    });
    $("steps").innerHTML = h;
  }

  function drawStatus() {
    const r = state.result, el = $("status");
    const now = new Date(state.now).getTime();
    const since = (t) => ((now - new Date(t).getTime()) / 1000).toFixed(1) + " s";
    let text, cls = r.phase || "";
    if (state.busy) {
      text = { applying: "applying… ", programming: "programming… ", probing: "probing… " }[r.phase] + since(r.phaseStarted) + " (step " + since(r.started) + ")";
    } else if (r.phase === "done") {
      text = "✓ programmed in " + r.programmedMs.toFixed(0) + " ms · verdicts in " + r.totalMs.toFixed(0) + " ms";
    } else if (r.phase === "failed") {
      text = "✗ step differs: see below · " + r.totalMs.toFixed(0) + " ms";
    } else { text = "starting…"; }
    if (state.error) text += " · " + state.error;
    el.textContent = text;
    el.className = "status " + cls;
  }

  function drawStory() {
    const p = script.parts[state.part], s = p.steps[state.step];
    $("title").textContent = s.title;
    $("narrative").textContent = s.narrative;
    $("kubectl").textContent = s.kubectl || "(nothing applied: the lab as it is)";
    const yaml = (s.objects || []).map((o) => "# " + o.path + "\n" + o.yaml.trim()).join("\n---\n");
    $("yaml").innerHTML = yaml ? highlightYAML(yaml) : '<span class="c"># no objects: this step looks at the lab</span>';
    $("yaml").style.display = "block";
    const checks = state.result.checks || [];
    $("checks").innerHTML = checks.map((c) => '<div class="line ' + (c.ok ? "ok" : "fail") + '">' + (c.ok ? "✓ " : "✗ ") + esc(c.subject) + ": " + esc(c.detail) + "</div>").join("");
  }

  function matrixTable(caption, m, other) {
    let h = '<table class="m"><caption>' + esc(caption) + "</caption><tr><th>from \\ to</th>" + m.cols.map((c) => "<th>" + esc(c) + "</th>").join("") + "</tr>";
    m.rows.forEach((r, i) => {
      h += "<tr><th>" + esc(r) + "</th>";
      m.cols.forEach((c, j) => {
        const v = m.cells[i][j];
        const bad = other && other.cells[i] && other.cells[i][j] !== v && v !== "ignored" && v !== "absent" ? " bad" : "";
        const sym = { yes: "✓", no: "✗", ignored: "·", absent: "–", error: "!" }[v] || v;
        h += '<td class="' + v + bad + '" title="' + esc(r + " → " + c + ": " + v) + '">' + sym + "</td>";
      });
      h += "</tr>";
    });
    return h + "</table>";
  }

  function drawMatrix() {
    const r = state.result;
    if (!r.expected) { $("matrix").innerHTML = '<span class="hint">no matrix in this part: the checks on the left are the verdict</span>'; $("diffs").innerHTML = ""; return; }
    let h = '<div class="matrices">' + matrixTable("expected", r.expected, null);
    h += r.probed ? matrixTable("probed", r.probed, r.expected) : '<span class="hint">probing…</span>';
    $("matrix").innerHTML = h + "</div>";
    $("diffs").innerHTML = (r.diffs || []).map((d) => "≠ " + esc(d)).join("<br>") + (r.error ? '<div class="fail">' + esc(r.error) + "</div>" : "");
  }

  function el(tag, attrs, text) {
    const e = document.createElementNS(NS, tag);
    for (const k in attrs) e.setAttribute(k, attrs[k]);
    if (text != null) e.textContent = text;
    return e;
  }

  function arrowDefs(svg) {
    const defs = el("defs", {});
    [["g", "#5fd38d"], ["r", "#ff6b7a"], ["o", "#ffd45c"]].forEach(([id, c]) => {
      const m = el("marker", { id: "a" + id, viewBox: "0 0 10 10", refX: 10, refY: 5, markerWidth: 6, markerHeight: 6, orient: "auto-start-reverse" });
      m.appendChild(el("path", { d: "M0,0 L10,5 L0,10 z", fill: c }));
      defs.appendChild(m);
    });
    svg.appendChild(defs);
  }

  function edge(svg, a, b, color, mark, label, dashed, radius) {
    const dx = b.x - a.x, dy = b.y - a.y, len = Math.hypot(dx, dy) || 1, r = radius || 26;
    const off = 5, nx = -dy / len * off, ny = dx / len * off; // two directions side by side
    const x1 = a.x + dx / len * r + nx, y1 = a.y + dy / len * r + ny, x2 = b.x - dx / len * r + nx, y2 = b.y - dy / len * r + ny;
    svg.appendChild(el("line", { x1, y1, x2, y2, stroke: color, "stroke-width": 2, "marker-end": "url(#a" + mark + ")", "stroke-dasharray": dashed ? "5,4" : "" }));
    // A count only where the edge is long enough to carry it without covering the nodes.
    if (label && len > 80) svg.appendChild(el("text", { x: (x1 + x2) / 2 + nx * 2, y: (y1 + y2) / 2 + ny * 2, class: "cnt", "text-anchor": "middle" }, label));
  }

  function node(svg, n, color, radius, noNs) {
    const r = radius || 24;
    svg.appendChild(el("circle", { cx: n.x, cy: n.y, r: r, fill: color, stroke: "#0f1420", "stroke-width": 2 }));
    svg.appendChild(el("text", { x: n.x, y: n.y + r + 14, "text-anchor": "middle" }, n.label));
    if (n.ns && !noNs) svg.appendChild(el("text", { x: n.x, y: n.y + r + 27, "text-anchor": "middle", class: "ns" }, n.ns));
  }

  function circle(items, w, h, start) {
    const cx = w / 2, cy = h / 2 - 10, rx = w / 2 - 70, ry = h / 2 - 55;
    items.forEach((it, i) => { const a = (start == null ? -Math.PI / 2 : start) + (2 * Math.PI * i) / items.length; it.x = cx + rx * Math.cos(a); it.y = cy + ry * Math.sin(a); });
  }

  const COLORS = ["#3451b2", "#8a4fd1", "#1f8a8a", "#b2573a", "#5a7a1f", "#a03a72"];

  // drawStars: the part's workloads; a green arrow for each probed-reachable pair, a dashed red one
  // where the oracle expected reachable but the probe failed.
  function drawStars(svg, p, r) {
    const nodes = p.workloads.map((w) => ({ id: w.name, label: w.name, ns: w.namespace }));
    circle(nodes, 560, 300);
    const by = {}; nodes.forEach((n) => (by[n.id] = n));
    const nsColor = {}; p.namespaces.forEach((ns, i) => (nsColor[ns] = COLORS[i % COLORS.length]));
    if (r.probed) r.probed.rows.forEach((row, i) => r.probed.cols.forEach((col, j) => {
      const v = r.probed.cells[i][j], e = r.expected.cells[i][j];
      if (v === "yes" && e === "no") edge(svg, by[row], by[col], "#ffd45c", "o", "unexpected", true);
      else if (v === "yes") edge(svg, by[row], by[col], "#5fd38d", "g");
      else if (v === "no" && e === "yes") edge(svg, by[row], by[col], "#ff6b7a", "r", "", true);
    }));
    nodes.forEach((n) => node(svg, n, nsColor[n.ns] || "#3451b2"));
    $("picture-title").textContent = "the stars: an arrow for every connection that got through";
  }

  // drawMap: the observer's service map, one box per namespace (a grid), its workloads inside.
  function drawMap(svg, p) {
    $("picture-title").textContent = "service map (observer): who talks to whom, how often, with what result";
    if (!graph || !graph.nodes || graph.nodes.length === 0) {
      svg.appendChild(el("text", { x: 280, y: 150, "text-anchor": "middle", class: "ns" }, graph ? "no flows yet" : "waiting for the observer…"));
      return;
    }
    const nodes = graph.nodes.slice(0, 24).map((n) => ({ id: n.id, label: n.name.length > 16 ? n.name.slice(0, 15) + "…" : n.name, ns: n.namespace || n.kind }));
    const nss = [...new Set(nodes.map((n) => n.ns))].sort();
    const cols = Math.ceil(Math.sqrt(nss.length)), rows = Math.ceil(nss.length / cols);
    const W = 560, H = 330, cw = W / cols, ch = H / rows;
    nss.forEach((ns, i) => {
      const bx = (i % cols) * cw, by = Math.floor(i / cols) * ch;
      svg.appendChild(el("rect", { x: bx + 4, y: by + 4, width: cw - 8, height: ch - 8, rx: 8, fill: "#1a2236", stroke: COLORS[i % COLORS.length], "stroke-opacity": 0.6 }));
      svg.appendChild(el("text", { x: bx + 12, y: by + 18, class: "ns" }, ns));
      const inNs = nodes.filter((n) => n.ns === ns);
      const maxLines = Math.max(1, Math.floor((ch - 34) / 46));
      const per = Math.max(1, Math.min(inNs.length, Math.ceil(inNs.length / maxLines)));
      const lines = Math.ceil(inNs.length / per);
      inNs.forEach((n, j) => {
        const c = j % per, r = Math.floor(j / per);
        n.x = bx + (c + 0.5) * (cw / per);
        n.y = by + 22 + (r + 0.5) * ((ch - 34) / lines) - 6;
        n.color = COLORS[i % COLORS.length];
      });
    });
    const by = {}; nodes.forEach((n) => (by[n.id] = n));
    (graph.edges || []).forEach((e) => {
      const a = by[e.source], b = by[e.target];
      if (!a || !b || a === b) return;
      const c = e.verdict === "forwarded" ? ["#5fd38d", "g"] : e.verdict === "dropped" ? ["#ff6b7a", "r"] : ["#ffd45c", "o"];
      edge(svg, a, b, c[0], c[1], e.forwarded + "✓" + (e.dropped ? " " + e.dropped + "✗" : ""), false, 16);
    });
    nodes.forEach((n) => node(svg, n, n.color, 14, true));
  }

  // drawFigure: a step with a figure (part 1's closing slide: the recorded bench chart) shows it, served
  // by /api/figure, in place of the part's picture. Returns whether it did.
  function drawFigure(svg) {
    const fig = $("figure"), st = script.parts[state.part].steps[state.step];
    const has = !!(st && st.figure);
    fig.classList.toggle("hidden", !has);
    svg.classList.toggle("hidden", has);
    if (!has) return false;
    const src = "/api/figure/" + state.part + "/" + state.step;
    if (fig.getAttribute("src") !== src) { fig.setAttribute("src", src); fig.alt = st.figure; }
    $("picture-title").textContent = "recorded: " + st.figure;
    return true;
  }

  function drawPicture() {
    const svg = $("picture");
    if (drawFigure(svg)) return;
    while (svg.firstChild) svg.removeChild(svg.firstChild);
    arrowDefs(svg);
    const p = script.parts[state.part];
    if (p.picture === "stars") drawStars(svg, p, state.result); else drawMap(svg, p);
  }

  function drawFlows() {
    const rows = (flows.length ? flows : state && state.result.flows) || [];
    const dir = (d) => ({ INGRESS: "in", EGRESS: "out" }[d] || d || "");
    $("flowrows").innerHTML = rows.slice(-60).reverse().map((f) => '<tr title="' + esc(f.direction + " on " + f.node) + '"><td>' + esc(new Date(f.time).toLocaleTimeString()) +
      '</td><td class="' + esc(f.verdict) + '">' + esc(f.verdict) + "</td><td>" + dir(f.direction) + "</td><td>" + esc(f.from) + " → " + esc(f.to) + "</td><td>" + esc(f.port) +
      "</td><td>" + esc([f.dropReason, f.policy].filter(Boolean).join(" · ")) + "</td></tr>").join("") || '<tr><td colspan="6" class="hint">no flows yet</td></tr>';
  }

  function draw() {
    if (!script || !state) return;
    drawNav(); drawStatus(); drawStory(); drawMatrix(); drawPicture(); if (showFlows) drawFlows();
  }

  let tick = 0;
  async function poll() {
    try {
      state = await getJSON("/api/state");
      if (tick % 4 === 0 && script.parts[state.part].picture === "map") graph = await getJSON("/api/graph").catch(() => graph);
      if (showFlows && tick % 4 === 0) flows = await getJSON("/api/flows").catch(() => flows);
      draw();
    } catch (e) { flash("lost the starlab demo server: " + e.message); }
    tick++;
  }

  async function start() {
    const q = new URLSearchParams(location.search);
    if (q.get("flows") === "1") { showFlows = true; $("flows").classList.remove("hidden"); }
    script = await getJSON("/api/script");
    await poll();
    setInterval(poll, 500);
  }
  start();
})();
