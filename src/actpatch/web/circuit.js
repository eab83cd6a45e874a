// The circuit view: edge attribution (EAP, EAP-IG) over the whole graph, drawn layer by layer as
// SVG (written by hand: no library, nothing from a CDN). Edges are weighted by score; hovering
// shows the numbers; clicking an edge patches it exactly (POST /circuit/verify); the top-n
// edges' faithfulness curve comes from POST /circuit/evaluate. The graph exports as JSON, SVG
// and PNG. Heads of GPT-2 small carry Wang et al. 2022's role labels (roles.js). Heads are
// shown as L3H4; edges keep the engine's names (a3.h4->a5.h1<v>), which is how one is asked for.
// The graph is tied to the request that made it (stale.js): change an input and it greys.

import { api, renderWarnings, showApiError } from "./api.js";
import { $, el, resultSlots, fillSelect, formatNumber, formatPct, headName, show, modelTag } from "./dom.js";
import { experimentFields } from "./experiment.js";
import { rememberRoles, roleOf, rolesOf } from "./roles.js";
import { madeFrom, tieResults } from "./stale.js";
import { server } from "./state.js";

const SVG_NS = "http://www.w3.org/2000/svg";
// One colour convention with the heatmaps (ColorBrewer's RdBu): blue raises the metric (a
// patch restores the clean behaviour), red lowers it.
const POSITIVE = "#2166ac";
const NEGATIVE = "#b2182b";
const CURVE_SIZES = [0, 5, 10, 20, 50, 100, 200, 500, 1000, 2000];
// The page's names for the server's edge methods (GET /models's options.edge_method).
const METHOD_LABELS = { eap: "EAP", "eap-ig": "EAP-IG", "eap-ig-act": "EAP-IG (activations)" };
const state = { result: null, request: null, curve: null, verified: {}, selected: null };

// -- the card ------------------------------------------------------------------------------

// The card, after the others (its method select is filled from the server: fillCircuitChoices).
export function buildCircuitCard() {
  const card = el("section", { class: "card circuit", id: "circuit-card", "aria-labelledby": "circuit-title" });
  const method = el("select", { id: "circuit-method" });
  const steps = el("input", { id: "circuit-steps", type: "number", min: "1", max: "100", step: "1", value: "5" });
  const top = el("input", { id: "circuit-top", type: "number", min: "1", max: "2000", step: "1", value: "40" });
  card.append(
    el("div", { class: "card-head" }, [
      el("h2", { id: "circuit-title", text: "Circuit" }),
      el("div", { class: "controls" }, [
        el("label", { class: "inline", for: "circuit-method" }, ["Method ", method]),
        el("label", { class: "inline", id: "circuit-steps-box", for: "circuit-steps" }, ["Steps ", steps]),
        el("label", { class: "inline", for: "circuit-top" }, ["Edges shown ", top]),
        el("button", { type: "button", id: "run-edges", class: "primary", text: "Find edges" }),
        el("button", { type: "button", id: "run-curve", text: "Faithfulness curve", disabled: "" }),
        el("button", { type: "button", id: "export-json", class: "ghost", text: "JSON", disabled: "" }),
        el("button", { type: "button", id: "export-svg", class: "ghost", text: "SVG", disabled: "" }),
        el("button", { type: "button", id: "export-png", class: "ghost", text: "PNG", disabled: "" }),
      ]),
    ]),
    ...resultSlots(
      "circuit",
      "Score every edge of the model's graph (each head's output into each later head's query, key or value, " +
        "each MLP, the logits) with edge attribution. EAP-IG integrates the gradient between the runs; " +
        "EAP takes it at the corrupted run. Click an edge to patch it exactly.",
    ),
    el("div", { class: "circuit-body" }, [
      el("div", { id: "circuit-graph", class: "circuit-graph hidden" }),
      el("div", { class: "circuit-side" }, [
        el("div", { id: "circuit-edge", class: "circuit-edge hidden" }),
        el("div", { id: "circuit-curve", class: "circuit-curve hidden" }),
      ]),
    ]),
    el("div", { id: "circuit-tooltip", class: "circuit-tooltip hidden", role: "tooltip" }),
  );
  document.querySelector("main.layout").append(card);
  method.addEventListener("change", showSteps);
  top.addEventListener("change", () => state.result && renderGraph());
  $("run-edges").addEventListener("click", runEdges);
  $("run-curve").addEventListener("click", runCurve);
  $("export-json").addEventListener("click", exportJson);
  $("export-svg").addEventListener("click", exportSvg);
  $("export-png").addEventListener("click", exportPng);
  tieResults("circuit", {
    parts: ["circuit-warnings", "circuit-summary", "circuit-graph", "circuit-edge", "circuit-curve"],
    request: edgesRequest,
  });
}

// The method select, from the server's choices; the steps box for the methods that take steps.
export function fillCircuitChoices() {
  fillSelect($("circuit-method"), server.options.edge_method, METHOD_LABELS);
  showSteps();
}

function showSteps() {
  show($("circuit-steps-box"), $("circuit-method").value !== "eap");
}

// The experiment's fields, as the circuit routes take them (no component: every edge counts).
function body() {
  return experimentFields((metric) => Object.hasOwn(server.options.gradient_metric.choices, metric)); // rank has no gradient
}

// The /circuit/edges request the form and the card's controls ask for now.
function edgesRequest() {
  const request = { ...body(), method: $("circuit-method").value, top: 2000 };
  if (request.method !== "eap") request.steps = Number($("circuit-steps").value || 5); // eap takes none
  return request;
}

function setBusy(busy, label) {
  $("run-edges").disabled = busy;
  $("run-curve").disabled = busy || !state.result;
  $("run-edges").textContent = busy ? label : "Find edges";
}

// -- edge attribution ------------------------------------------------------------------------

async function runEdges() {
  show($("circuit-error"), false);
  setBusy(true, "Scoring edges…");
  const request = edgesRequest();
  try {
    state.result = await api("POST", "/circuit/edges", request);
    state.request = request;
    madeFrom("circuit", request);
    state.verified = {};
    state.selected = null;
    state.curve = null;
    rememberRoles(state.result.model, state.result.known_roles);
    show($("circuit-curve"), false);
    show($("circuit-edge"), false);
    renderGraph();
  } catch (err) {
    showApiError($("circuit-error"), err);
  } finally {
    setBusy(false);
  }
  for (const id of ["export-json", "export-svg", "export-png"]) $(id).disabled = !state.result;
}

// A stored edge attribution (the history panel), drawn as it was computed; its inputs (the
// experiment, the method and its steps) are put back into the form and the card first.
export function showEdges(result, request) {
  $("circuit-method").value = result.method;
  if (request.steps) $("circuit-steps").value = String(request.steps);
  showSteps();
  state.result = result;
  state.request = edgesRequest();
  state.verified = {};
  state.selected = null;
  state.curve = null;
  rememberRoles(result.model, result.known_roles);
  madeFrom("circuit");
  show($("circuit-curve"), false);
  show($("circuit-edge"), false);
  renderGraph();
  for (const id of ["export-json", "export-svg", "export-png"]) $(id).disabled = false;
  $("run-curve").disabled = false;
  $("circuit-card").scrollIntoView({ behavior: "smooth" });
}

// A stored faithfulness curve (the history panel), drawn as it was computed.
export function showCurve(result) {
  state.curve = result;
  renderCurve();
  $("circuit-card").scrollIntoView({ behavior: "smooth" });
}

function shownEdges() {
  const n = Math.max(1, Math.min(2000, Number($("circuit-top").value || 40)));
  return state.result.edges.slice(0, n);
}

function gap() {
  const r = state.result;
  return r.clean !== null && r.corrupt !== null ? r.clean - r.corrupt : null;
}

// -- the graph, as SVG ------------------------------------------------------------------------

function svg(tag, attrs = {}) {
  const node = document.createElementNS(SVG_NS, tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, String(v));
  return node;
}

// Where a node sits: input at the bottom, layers upwards, logits on top; heads left to right,
// each layer's MLP after its heads; a key/value head's reader (a{L}.kv{G}<k>, the grouped
// convention) in the middle of the query heads that share it.
function layout(nLayers, nHeads, nKv = nHeads) {
  const col = Math.max(34, Math.min(64, Math.floor(860 / (nHeads + 1)))), row = 46;
  const left = 70, width = left + (nHeads + 1) * col + 40, height = (nLayers + 2) * row + 40;
  const y = (layer) => height - 30 - (layer + 1) * row; // input is layer -1
  return {
    width,
    height,
    node(name) {
      const writer = name.split("<")[0];
      if (writer === "input") return { x: left + (nHeads * col) / 2, y: y(-1) };
      if (writer === "logits") return { x: left + (nHeads * col) / 2, y: y(nLayers) };
      if (writer[0] === "m") return { x: left + nHeads * col + col / 2, y: y(Number(writer.slice(1))) };
      if (writer.includes(".kv")) {
        const [l, g] = writer.slice(1).split(".kv").map(Number);
        const size = nHeads / nKv;
        return { x: left + (g * size + (size - 1) / 2) * col, y: y(l) };
      }
      const [l, h] = writer.slice(1).split(".h").map(Number);
      return { x: left + h * col, y: y(l) };
    },
    rowY: y,
    col,
    left,
  };
}

function renderGraph() {
  const r = state.result;
  const edges = shownEdges();
  const geo = layout(r.n_layers, r.n_heads, (r.graph && r.graph.n_kv_heads) || r.n_heads);
  const root = svg("svg", { xmlns: SVG_NS, width: geo.width, height: geo.height, viewBox: `0 0 ${geo.width} ${geo.height}`, id: "circuit-svg", "font-family": "system-ui, sans-serif", "font-size": "10" });
  root.append(svg("rect", { x: 0, y: 0, width: geo.width, height: geo.height, fill: "#ffffff" }));
  // layer rows and every head, faintly, for orientation
  for (let l = -1; l <= r.n_layers; l++) {
    const label = l === -1 ? "input" : l === r.n_layers ? "logits" : `L${l}`;
    const text = svg("text", { x: 8, y: geo.rowY(l) + 4, fill: "#6b7280" });
    text.textContent = label;
    root.append(text);
    if (l < 0 || l >= r.n_layers) continue;
    for (let h = 0; h < r.n_heads; h++) {
      const p = geo.node(`a${l}.h${h}`);
      root.append(svg("circle", { cx: p.x, cy: p.y, r: 2, fill: "#d1d5db" }));
    }
    const m = geo.node(`m${l}`);
    root.append(svg("rect", { x: m.x - 3, y: m.y - 3, width: 6, height: 6, fill: "#d1d5db" }));
  }
  const strongest = Math.max(1e-12, ...edges.map((e) => Math.abs(e.score)));
  const used = new Set(["input", "logits"]);
  const group = svg("g", { id: "circuit-edges" });
  for (const e of [...edges].reverse()) { // strongest drawn last, on top
    const name = `${e.source}->${e.target}`;
    const a = geo.node(e.source);
    const b = geo.node(e.target);
    const qkv = e.target.endsWith(">") ? e.target.slice(-2, -1) : null;
    const bx = b.x + (qkv === "q" ? -6 : qkv === "v" ? 6 : 0);
    const by = b.y + (e.target === "logits" ? 8 : qkv ? 7 : 6);
    const bend = Math.max(-60, Math.min(60, (bx - a.x) * 0.15));
    const weight = Math.abs(e.score) / strongest;
    const path = svg("path", {
      d: `M ${a.x} ${a.y - 6} Q ${(a.x + bx) / 2 + bend} ${(a.y + by) / 2} ${bx} ${by}`,
      fill: "none",
      stroke: e.score >= 0 ? POSITIVE : NEGATIVE,
      "stroke-width": (0.6 + 5 * weight).toFixed(2),
      "stroke-opacity": (0.3 + 0.7 * weight).toFixed(2),
      "stroke-dasharray": qkv === "q" ? "2 2" : qkv === "k" ? "6 3" : "none",
      "data-edge": name,
      class: "circuit-edge-path",
    });
    const title = svg("title");
    title.textContent = `${name}: ${formatNumber(e.score, 4)}`;
    path.append(title);
    path.addEventListener("mousemove", (event) => showTooltip(event, e));
    path.addEventListener("mouseleave", () => show($("circuit-tooltip"), false));
    path.addEventListener("click", () => verify(name));
    group.append(path);
    used.add(e.source);
    used.add(e.target.split("<")[0]);
  }
  root.append(group);
  for (const name of used) {
    const p = geo.node(name);
    const isMlp = name[0] === "m";
    root.append(isMlp
      ? svg("rect", { x: p.x - 6, y: p.y - 6, width: 12, height: 12, fill: "#374151", rx: 2 })
      : svg("circle", { cx: p.x, cy: p.y, r: name === "input" || name === "logits" ? 7 : 5, fill: name === "input" || name === "logits" ? "#6b7280" : "#374151" }));
    const label = svg("text", { x: p.x + 7, y: p.y - 7, fill: "#111827", "font-size": "10" });
    label.textContent = nodeName(name);
    root.append(label);
    const role = roleOf(r.model, name);
    if (role) {
      const tag = svg("text", { x: p.x + 7, y: p.y + 12, fill: "#7c3aed", "font-size": "9", class: "circuit-role" });
      tag.textContent = role.label;
      root.append(tag);
    }
  }
  const legend = svg("text", { x: 8, y: geo.height - 8, fill: "#6b7280", "font-size": "10" });
  const roles = rolesOf(r.model);
  legend.textContent = `top ${edges.length} of ${r.n_edges} edges by |${r.method} score| · blue raises the metric, red lowers it (as in the heatmaps) · q dotted, k dashed, v solid${roles && roles.citation ? ` · head roles: ${roles.citation}` : ""}`;
  root.append(legend);
  const holder = $("circuit-graph");
  holder.textContent = "";
  holder.append(root);
  show(holder, true);
  show($("circuit-empty"), false);
  renderSummary();
  highlight();
}

// A node as people read it: a head as L3H4; the input, the logits, MLPs (m3) and key/value
// heads (a3.kv1) by the engine's names.
function nodeName(name) {
  const head = /^a(\d+)\.h(\d+)$/.exec(name);
  return head ? headName(head[1], head[2]) : name;
}

function renderSummary() {
  const r = state.result;
  const box = $("circuit-summary");
  box.textContent = "";
  renderWarnings("circuit-warnings", r.warnings);
  const steps = r.method !== "eap" ? `, ${r.steps} steps` : "";
  box.append(
    modelTag(r),
    el("span", { text: ` · ${r.method}${steps} · ${r.direction} · ${r.metric}: clean ${formatNumber(r.clean)}, corrupted ${formatNumber(r.corrupt)} · ${r.n_edges} edges scored in ${r.seconds.toFixed(2)} s` }),
  );
  show(box, true);
}

function showTooltip(event, e) {
  const tip = $("circuit-tooltip");
  const name = `${e.source}->${e.target}`;
  const g = gap();
  const lines = [name, `score ${formatNumber(e.score, 4)}${g ? ` (${formatPct(e.score / g)} of clean − corrupted)` : ""}`];
  const role = roleOf(state.result.model, e.source);
  if (role) lines.push(`${nodeName(e.source)}: ${role.role}`);
  const check = state.verified[name];
  lines.push(check ? `exact effect ${formatNumber(check.effect, 4)}` : "click to patch it exactly");
  tip.textContent = "";
  for (const line of lines) tip.append(el("div", { text: line }));
  tip.style.left = `${event.pageX + 12}px`;
  tip.style.top = `${event.pageY + 12}px`;
  show(tip, true);
}

function highlight() {
  for (const path of document.querySelectorAll(".circuit-edge-path")) {
    path.classList.toggle("selected", path.dataset.edge === state.selected);
  }
}

// -- exact edge patching ----------------------------------------------------------------------

async function verify(name) {
  state.selected = name;
  highlight();
  const panel = $("circuit-edge");
  const e = state.result.edges.find((x) => `${x.source}->${x.target}` === name);
  panel.textContent = "";
  panel.append(el("h3", { text: name }), el("div", { class: "muted", text: "patching this edge alone…" }));
  show(panel, true);
  try {
    const answer = await api("POST", "/circuit/verify", { ...state.request, method: undefined, steps: undefined, top: undefined, edges: [name] });
    const check = answer.edges[0];
    state.verified[name] = check;
    panel.textContent = "";
    panel.append(
      el("h3", { text: name }),
      el("div", { class: "circuit-numbers" }, [
        el("div", { text: `${state.result.method} score: ${formatNumber(e.score, 4)}` }),
        el("div", { id: "circuit-exact", text: `exact effect: ${formatNumber(check.effect, 4)} (${formatPct(check.normalized)} of clean − corrupted)` }),
        el("div", { class: "muted", text: `${answer.direction}: the ${answer.direction === "denoising" ? "corrupted" : "clean"} run with this edge's writer output taken from the ${answer.direction === "denoising" ? "clean" : "corrupted"} run, seen by this reader only; ${answer.metric} ${formatNumber(check.metric, 4)}` }),
      ]),
    );
  } catch (err) {
    panel.textContent = "";
    panel.append(el("h3", { text: name }), el("div", { class: "alert", text: err.message }));
  }
}

// -- the faithfulness curve -------------------------------------------------------------------

async function runCurve() {
  if (!state.result) return;
  show($("circuit-error"), false);
  setBusy(true, "Evaluating…");
  const ranked = state.result.edges.map((e) => `${e.source}->${e.target}`);
  const sizes = CURVE_SIZES.filter((n) => n < ranked.length).concat([ranked.length]);
  // The experiment that ranked the edges (the form may have changed since): the curve is the graph's.
  // No direction: the circuit runs on the clean prompt, its outside from the corrupted.
  const request = { ...state.request, ranked, sizes };
  for (const key of ["method", "steps", "top", "direction"]) delete request[key];
  try {
    state.curve = await api("POST", "/circuit/evaluate", request);
    renderCurve();
  } catch (err) {
    showApiError($("circuit-error"), err);
  } finally {
    setBusy(false);
  }
}

function renderCurve() {
  const c = state.curve;
  const W = 380, H = 230, L = 44, B = 36, T = 14, R = 12;
  const xs = c.points.map((p) => Math.log10(1 + p.n_edges));
  const xmax = Math.max(...xs, 1);
  const ys = c.points.map((p) => (p.faithfulness === null ? 0 : p.faithfulness));
  const ymin = Math.min(-0.1, ...ys), ymax = Math.max(1.1, ...ys);
  const X = (x) => L + ((W - L - R) * x) / xmax;
  const Y = (y) => T + ((H - T - B) * (ymax - y)) / (ymax - ymin);
  const root = svg("svg", { xmlns: SVG_NS, width: W, height: H, id: "curve-svg", "font-family": "system-ui, sans-serif", "font-size": "10" });
  for (const level of [0, 1]) {
    root.append(svg("line", { x1: L, x2: W - R, y1: Y(level), y2: Y(level), stroke: "#9ca3af", "stroke-dasharray": "4 3" }));
    const t = svg("text", { x: L - 6, y: Y(level) + 3, "text-anchor": "end", fill: "#6b7280" });
    t.textContent = formatPct(level, 0);
    root.append(t);
  }
  const d = c.points.map((p, i) => `${i ? "L" : "M"} ${X(xs[i]).toFixed(1)} ${Y(ys[i]).toFixed(1)}`).join(" ");
  root.append(svg("path", { d, fill: "none", stroke: POSITIVE, "stroke-width": 2 }));
  let lastLabel = -Infinity;
  let lastText = null;
  c.points.forEach((p, i) => {
    const dot = svg("circle", { cx: X(xs[i]), cy: Y(ys[i]), r: 3, fill: POSITIVE, class: "curve-point" });
    const title = svg("title");
    title.textContent = `top ${p.n_edges} edges: faithfulness ${formatPct(p.faithfulness)} (${c.metric} ${formatNumber(p.metric, 4)})`;
    dot.append(title);
    root.append(dot);
    const last = i === c.points.length - 1;
    if (X(xs[i]) - lastLabel < 24) { // labels must not overlap; the last one always shows
      if (!last) return;
      lastText.remove();
    }
    const t = svg("text", { x: X(xs[i]), y: H - B + 14, "text-anchor": "middle", fill: "#6b7280" });
    t.textContent = String(p.n_edges);
    root.append(t);
    lastLabel = X(xs[i]);
    lastText = t;
  });
  const xl = svg("text", { x: (L + W - R) / 2, y: H - 6, "text-anchor": "middle", fill: "#374151" });
  xl.textContent = `edges kept, best first (of ${c.total_edges})`;
  root.append(xl);
  const box = $("circuit-curve");
  box.textContent = "";
  box.append(
    el("h3", { text: "Faithfulness of the top-n edges" }),
    root,
    el("div", { class: "muted small", text: `Clean run with every other edge ablated (${c.ablation} ablation); faithfulness = (metric − corrupted) / (clean − corrupted), in % (clean = 100%). ${c.seconds.toFixed(2)} s on ${c.model}.` }),
  );
  show(box, true);
}

// -- exports ------------------------------------------------------------------------------------

function download(blob, name) {
  const a = el("a", { href: URL.createObjectURL(blob), download: name });
  document.body.append(a);
  a.click();
  setTimeout(() => {
    URL.revokeObjectURL(a.href);
    a.remove();
  }, 0);
}

function exportJson() {
  download(new Blob([JSON.stringify(state.result, null, 2)], { type: "application/json" }), "circuit.json");
}

function svgText() {
  return new XMLSerializer().serializeToString($("circuit-svg"));
}

function exportSvg() {
  download(new Blob([svgText()], { type: "image/svg+xml" }), "circuit.svg");
}

function exportPng() {
  const node = $("circuit-svg");
  const image = new Image();
  const scale = 2;
  image.onload = () => {
    const canvas = el("canvas", { width: node.width.baseVal.value * scale, height: node.height.baseVal.value * scale });
    const ctx = canvas.getContext("2d");
    ctx.scale(scale, scale);
    ctx.drawImage(image, 0, 0);
    canvas.toBlob((blob) => download(blob, "circuit.png"), "image/png");
  };
  image.src = `data:image/svg+xml;charset=utf-8,${encodeURIComponent(svgText())}`;
}
