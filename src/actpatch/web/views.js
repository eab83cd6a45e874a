// Inside the model: what a place found by patching does, on the prompts above (`POST /attention`,
// `/dla`, `/lens`; docs/views.md says how each is computed).
//
// - the attention pattern of one head, clean and corrupted side by side: opened by a click on a
//   head heatmap (the sweep's, or the DLA's), a largest-effect chip, or the single patch's
//   "Show attention" ("actpatch:head" and "actpatch:patch-shown" say which head);
// - direct logit attribution: each head's (layer x head), each MLP's and the embeddings' direct
//   share of the metric, beside the sweep's heatmap, so "important by patching" and "writes
//   directly to the answer" can be told apart;
// - the logit lens: the metric read from the residual stream at each layer, clean and corrupted.
// DLA and the lens run with every sweep of the prompts and from the card's button. A stored run of
// any of the three (the history's "Open") is drawn from its stored result (`showStoredView`).

import { api, renderWarnings, showApiError, showPageError } from "./api.js";
import { $, el, formatNumber, formatPct, formatProb, headName, show, showToken, modelTag } from "./dom.js";
import { TEXT_FIELDS, experimentBody, readState } from "./experiment.js";
import { DIVERGING, escapePlotly, loadPlotly } from "./plots.js";
import { headAnnotations } from "./roles.js";
import { noBehaviour, view } from "./state.js";

// Attention weights are not a signed effect: a white-to-purple scale, 0 to 1 on both runs, keeps
// them apart from the page's blue/red (raises/lowers the metric).
const WEIGHTS = [[0, "#ffffff"], [0.25, "#dadaeb"], [0.5, "#9e9ac8"], [0.75, "#6a51a3"], [1, "#3f007d"]];
const FONT = { family: "system-ui, -apple-system, Segoe UI, Roboto, sans-serif", size: 11, color: "#1f2937" };
const PLOT_CONFIG = { displaylogo: false, responsive: true, modeBarButtonsToRemove: ["lasso2d", "select2d"] };
const RUN_NAMES = { difference: "clean − corrupted", clean: "clean", corrupt: "corrupted" };

// The results drawn, and the experiment each was computed on (to say when it has changed).
const shown = { attention: null, dla: null, lens: null };
const drawnFor = { attention: null, dla: null, lens: null };
const patterns = new Map(); // request body (JSON) -> the pending or answered /attention request
let latestAttention = 0; // only the last head asked for is drawn

export function bindViews() {
  $("run-views").addEventListener("click", () => runViews());
  $("dla-run").addEventListener("change", () => drawDla().catch((err) => showPageError($("views-error"), err)));
  $("lens-sublayers").addEventListener("change", () => runViews({ dla: false }));
  $("show-attention").addEventListener("click", () => {
    const { layer, head } = $("show-attention").dataset;
    showAttention(Number(layer), Number(head));
  });
  document.addEventListener("actpatch:head", (event) => showAttention(event.detail.layer, event.detail.head));
  document.addEventListener("actpatch:patch-shown", (event) => offerAttention(event.detail));
  document.addEventListener("actpatch:swept", () => {
    if (!$("dataset").value.trim()) runViews(); // a dataset's sweep is not of the prompts above
  });
  for (const f of [...TEXT_FIELDS, "metric", "model"]) {
    $(f).addEventListener(f === "metric" || f === "model" ? "change" : "input", updateStale);
  }
  document.addEventListener("actpatch:inputs", updateStale); // an example, a reopened run
}

// The views' request: the experiment's prompts, answers and model (no component or direction).
function viewBody() {
  const { component, direction, metric, ...body } = experimentBody(readState());
  return body;
}

// A position's label on a pattern's axis: its index (which keeps labels apart) and its token,
// a long one cut short.
function tokenLabels(tokens) {
  return tokens.map((t, i) => {
    const shown = showToken(t);
    return `${i} ${escapePlotly(shown.length > 14 ? `${shown.slice(0, 13)}…` : shown)}`;
  });
}

// What a view depends on: the prompts, answers and model, and for the lens the metric too.
function experimentKey(view) {
  const key = viewBody();
  if (view === "lens") key.metric = readState().metric;
  return JSON.stringify(key);
}

// Once the experiment changes, a view drawn before no longer belongs to it: say so.
function updateStale() {
  const stale = Object.keys(drawnFor).some((v) => drawnFor[v] !== null && drawnFor[v] !== experimentKey(v));
  show($("views-stale"), stale);
}

// -- the attention pattern ---------------------------------------------------------------------------

// The single patch of a head offers its pattern; a patch of anything else does not.
function offerAttention(result) {
  const button = $("show-attention");
  const head = result && Number.isInteger(result.head) ? result.head : null;
  show(button, head !== null);
  if (head === null) return;
  button.dataset.layer = String(result.layer);
  button.dataset.head = String(head);
  button.textContent = `Show attention of ${headName(result.layer, head)}`;
}

function fetchPattern(body) {
  const key = JSON.stringify(body);
  if (!patterns.has(key)) {
    if (patterns.size >= 64) patterns.delete(patterns.keys().next().value);
    const request = api("POST", "/attention", body);
    request.catch(() => patterns.delete(key)); // an error is shown, not remembered
    patterns.set(key, request);
  }
  return patterns.get(key);
}

// Open head (layer, head)'s pattern on the prompts above, clean and corrupted side by side.
export async function showAttention(layer, head) {
  const ticket = beginAttention(layer, head);
  const body = { ...viewBody(), layer, head };
  const key = experimentKey("attention");
  let result;
  let Plotly;
  try {
    [result, Plotly] = await Promise.all([fetchPattern(body), loadPlotly()]);
  } catch (err) {
    if (ticket === latestAttention) {
      $("attn-panel").classList.remove("busy");
      showApiError($("attn-error"), err);
    }
    return;
  }
  if (ticket !== latestAttention) return; // a later click wins
  await drawAttention(Plotly, result, key);
}

// A new pattern is on its way: its title, the panel busy; the ticket says whether it is still
// the latest asked for when it arrives.
function beginAttention(layer, head) {
  show($("attn-error"), false);
  $("attn-title").textContent = `Attention pattern · ${headName(layer, head)}`;
  $("attn-panel").classList.add("busy");
  return ++latestAttention;
}

// Draw an answered (or stored) pattern, computed on the experiment `key` names.
async function drawAttention(Plotly, result, key) {
  shown.attention = result;
  drawnFor.attention = key;
  updateStale();
  show($("attn-empty"), false);
  show($("attn-plots"), true);
  renderWarnings("attn-warnings", result.warnings);
  const panel = $("attn-panel");
  try {
    await Promise.all([
      drawPattern(Plotly, $("attn-clean"), result.clean, result.tokens, "clean"),
      drawPattern(Plotly, $("attn-corrupt"), result.corrupt, result.corrupt_tokens, "corrupted"),
    ]);
    renderAttentionSummary(result);
  } catch (err) {
    showPageError($("attn-error"), err);
    return;
  } finally {
    panel.classList.remove("busy");
  }
  panel.dataset.head = headName(result.layer, result.head); // what is drawn (tests, benchmarks)
  panel.dataset.drawn = String(Number(panel.dataset.drawn || 0) + 1);
  if (shown.dla) outlineHead(result.layer, result.head);
}

// One run's pattern. The axes are categorical, each position's label (its index and token) its
// own category: Plotly then needs no tick arrays and no per-cell hover data, which halves the
// time it takes to draw (the click-to-pattern time is in benchmarks/bench_page_views.py).
function drawPattern(Plotly, node, pattern, tokens, run) {
  const n = tokens.length;
  const labels = tokenLabels(tokens);
  const trace = {
    type: "heatmap",
    z: pattern,
    x: labels,
    y: labels,
    colorscale: WEIGHTS,
    zmin: 0,
    zmax: 1,
    showscale: false, // the summary says: white 0, dark purple 1
    hovertemplate: `${run}<br>query %{y}<br>key %{x}<br>weight %{z:.4g}<extra></extra>`,
  };
  const size = n > 24 ? (n > 36 ? 7 : 8) : 10;
  // every token labelled (Plotly would skip some when they crowd), unless there are very many
  const ticks = n <= 48 ? { tickmode: "linear", tick0: 0, dtick: 1 } : {};
  const axis = { type: "category", showgrid: false, zeroline: false, tickfont: { size }, ...ticks };
  const longest = Math.max(...tokens.map((t, i) => `${i} ${showToken(t)}`.length).map((c) => Math.min(c, 18)));
  const room = Math.ceil(longest * size * 0.62); // the longest label's width, about
  const layout = {
    title: { text: run, font: { size: 12 }, x: 0.02, y: 0.995, xanchor: "left", yanchor: "top" },
    margin: { l: 24 + room, r: 4, t: 22, b: 28 + Math.ceil(room * 0.87) },
    height: Math.max(280, Math.min(560, 50 + room + n * 15)),
    xaxis: { ...axis, title: { text: "key", standoff: 2 }, tickangle: -60 },
    yaxis: { ...axis, title: { text: "query", standoff: 2 }, autorange: "reversed" },
    plot_bgcolor: "#eef0f3",
    paper_bgcolor: "rgba(0,0,0,0)",
    font: FONT,
  };
  return Plotly.react(node, [trace], layout, PLOT_CONFIG);
}

// Where the final position (which predicts the answer) looks, in each run.
function renderAttentionSummary(r) {
  const box = $("attn-summary");
  box.textContent = "";
  const last = (pattern, tokens) => {
    const row = pattern[pattern.length - 1];
    const k = row.indexOf(Math.max(...row));
    return `${k} ${showToken(tokens[k])} (${formatNumber(row[k], 3)})`;
  };
  const kv = r.kv_head !== r.head ? ` · reads key/value head ${r.kv_head}` : "";
  box.append(
    modelTag(r),
    el("span", {
      text:
        ` · ${headName(r.layer, r.head)}${kv} on the prompts above · the final position attends most` +
        ` to ${last(r.clean, r.tokens)} clean, ${last(r.corrupt, r.corrupt_tokens)} corrupted · each` +
        " row (query) sums to 1 over the keys it may read (later keys are masked: 0), white 0 to dark" +
        " purple 1 · hover for each weight",
    }),
  );
  show(box, true);
}

// -- direct logit attribution and the logit lens -----------------------------------------------------

let latestViews = 0; // only the last run's answers are drawn

export async function runViews({ dla = true, lens = true } = {}) {
  const ticket = ++latestViews;
  const body = viewBody();
  const button = $("run-views");
  button.disabled = true;
  button.classList.add("busy");
  show($("views-error"), false);
  loadPlotly().catch(() => {});
  const lensBody = { ...body, sublayers: $("lens-sublayers").checked };
  const { metric } = readState();
  if (metric) lensBody.metric = metric;
  const keys = { dla: experimentKey("dla"), lens: experimentKey("lens") };
  try {
    const [dlaResult, lensResult] = await Promise.all([
      dla ? api("POST", "/dla", body) : null,
      lens ? api("POST", "/lens", lensBody) : null,
    ]);
    if (ticket !== latestViews) return; // a later run (another sweep, the button) draws
    if (dlaResult) [shown.dla, drawnFor.dla] = [dlaResult, keys.dla];
    if (lensResult) [shown.lens, drawnFor.lens] = [lensResult, keys.lens];
    updateStale();
    renderWarnings("views-warnings", (dlaResult || lensResult).warnings);
    if (dlaResult) await drawDla();
    if (lensResult) await drawLens();
  } catch (err) {
    if (ticket !== latestViews) return;
    if (err.status !== undefined) showApiError($("views-error"), err);
    else showPageError($("views-error"), err);
  } finally {
    if (ticket === latestViews) {
      button.disabled = false;
      button.classList.remove("busy");
    }
  }
}

// The sweep's largest effects, when a head sweep is shown: the heads important by patching.
function patchingTop(n) {
  const sweep = view.sweep;
  if (!sweep || view.sweepStale || sweep.axes.length !== 2 || sweep.axes[1] !== "head") return [];
  if (noBehaviour(sweep)) return []; // without the behaviour, the largest effects are noise
  const grid = sweep.note ? sweep.raw : sweep.normalized;
  const noising = sweep.direction === "noising";
  const unpatched = sweep.note ? (noising ? sweep.clean : sweep.corrupt) : noising ? 1 : 0;
  const cells = [];
  grid.forEach((row, l) => row.forEach((v, h) => v !== null && cells.push([Math.abs(v - unpatched), l, h, v])));
  const shown = (v) => (sweep.note ? formatNumber(v, 2) : formatPct(v)); // normalized: in %
  return cells.sort((a, b) => b[0] - a[0]).slice(0, n).map(([, l, h, v]) => ({ layer: l, head: h, value: shown(v) }));
}

async function drawDla() {
  const r = shown.dla;
  if (!r) return;
  const Plotly = await loadPlotly();
  const run = $("dla-run").value;
  const parts = r[run];
  const heads = parts.heads;
  const nLayers = heads.length;
  const nHeads = heads[0].length;
  let maxAbs = 0;
  for (const v of [...heads.flat(), ...parts.mlp]) maxAbs = Math.max(maxAbs, Math.abs(v));
  maxAbs = maxAbs || 1;
  const what = `direct share of ${escapePlotly(r.metric)} (${RUN_NAMES[run]})`;
  const scale = { colorscale: DIVERGING, zmid: 0, zmin: -maxAbs, zmax: maxAbs, xgap: 1, ygap: 1 };
  const headTrace = {
    type: "heatmap",
    z: heads,
    x: Array.from({ length: nHeads }, (_, h) => h),
    y: Array.from({ length: nLayers }, (_, l) => l),
    customdata: heads.map((row, l) => row.map((_, h) => headName(l, h))),
    ...scale,
    hovertemplate: `%{customdata}<br>${what} %{z:.4g}<extra></extra>`,
    colorbar: { title: { text: escapePlotly(r.metric), side: "right" }, thickness: 12, len: 0.9 },
  };
  const mlpTrace = {
    type: "heatmap",
    z: parts.mlp.map((v) => [v]),
    x: [0],
    y: Array.from({ length: nLayers }, (_, l) => l),
    xaxis: "x2",
    ...scale,
    showscale: false,
    customdata: parts.mlp.map((_, l) => [`MLP ${l}`]),
    hovertemplate: `%{customdata}<br>${what} %{z:.4g}<extra></extra>`,
  };
  const layout = {
    margin: { l: 48, r: 8, t: 8, b: 40 },
    height: Math.max(240, Math.min(520, 60 + nLayers * 28)),
    xaxis: { domain: [0, 0.86], title: { text: "head" }, tickmode: "array", tickvals: headTrace.x, ticktext: headTrace.x.map((h) => `H${h}`), showgrid: false, zeroline: false },
    xaxis2: { domain: [0.89, 0.97], tickmode: "array", tickvals: [0], ticktext: ["MLP"], showgrid: false, zeroline: false },
    yaxis: { title: { text: "layer" }, autorange: "reversed", dtick: 1, showgrid: false, zeroline: false },
    plot_bgcolor: "#eef0f3",
    paper_bgcolor: "rgba(0,0,0,0)",
    font: FONT,
    annotations: headAnnotations({ model: r.model, axes: ["layer", "head"] }),
    shapes: [],
  };
  show($("dla-empty"), false);
  const node = $("dla-heatmap");
  show(node, true);
  await Plotly.react(node, [headTrace, mlpTrace], layout, PLOT_CONFIG);
  if (!node.dataset.bound) {
    node.on("plotly_click", (event) => {
      const point = event.points[0];
      if (point.data.xaxis !== "x2") showAttention(point.y, point.x);
    });
    node.dataset.bound = "1";
  }
  if (shown.attention) outlineHead(shown.attention.layer, shown.attention.head);
  renderDlaSummary(r, run, parts);
}

// The head whose pattern is open, outlined on the DLA heatmap.
function outlineHead(layer, head) {
  const node = $("dla-heatmap");
  if (!node.data || !window.Plotly) return;
  const rect = { type: "rect", xref: "x", yref: "y", x0: head - 0.5, x1: head + 0.5, y0: layer - 0.5, y1: layer + 0.5, line: { color: "#3f007d", width: 2.5 } };
  window.Plotly.relayout(node, { shapes: [rect] });
}

function renderDlaSummary(r, run, parts) {
  const box = $("dla-summary");
  box.textContent = "";
  box.append(
    modelTag(r),
    el("span", { text: ` · ${r.metric} at the final position · ${RUN_NAMES[run]} · blue raises the metric (writes toward the target), red lowers it · click a head for its attention` }),
  );
  show(box, true);

  // The parts that are not heads, and how well the parts add up to the model's own metric.
  const table = $("dla-parts");
  table.textContent = "";
  const cell = (label, value, title = "") => el("div", { class: "part", title }, [el("span", { class: "part-label", text: label }), el("b", { class: "part-value", text: formatNumber(value, 4) })]);
  table.append(cell("embeddings", parts.embed, "token and position embeddings"));
  parts.mlp.forEach((v, l) => table.append(cell(`MLP ${l}`, v)));
  if (parts.attn_bias) table.append(cell("attention biases", parts.attn_bias.reduce((a, b) => a + b, 0), "the attention outputs' biases, which no head owns (summed over layers)"));
  if (parts.const !== undefined) table.append(cell("norm + unembed biases", parts.const, "the final norm's and the unembedding's biases"));
  table.append(
    cell("sum of parts (total)", parts.total, "every head, MLP, the embeddings and the biases"),
    cell("model's own (actual)", parts.actual, `the model's own ${r.metric}`),
  );
  const unexplained = parts.actual - parts.total;
  table.append(el("div", { class: "part-note muted", text: `unexplained (actual − total) ${formatNumber(unexplained, 3)}: ${r.norm || "the final norm's scale is frozen from the run"}` }));
  show(table, true);

  // Important by patching, or writing directly to the answer?
  const top = $("dla-top");
  top.textContent = "";
  const direct = [];
  parts.heads.forEach((row, l) => row.forEach((v, h) => direct.push([Math.abs(v), l, h, v])));
  direct.sort((a, b) => b[0] - a[0]);
  const chip = (label, layer, head) => {
    const button = el("button", { type: "button", class: "chip-button", text: label });
    button.addEventListener("click", () => showAttention(layer, head));
    return button;
  };
  const directRow = el("div", { class: "top-cells" }, [el("span", { class: "muted", text: "Largest direct shares: " })]);
  for (const [, l, h, v] of direct.slice(0, 5)) directRow.append(chip(`${headName(l, h)} ${formatNumber(v, 3)}`, l, h));
  top.append(directRow);
  const byPatching = patchingTop(5);
  if (byPatching.length) {
    const row = el("div", { class: "top-cells" }, [el("span", { class: "muted", text: "Largest by patching (the sweep), with their direct share: " })]);
    for (const { layer, head, value } of byPatching) {
      row.append(chip(`${headName(layer, head)} ${value} · direct ${formatNumber(parts.heads[layer][head], 3)}`, layer, head));
    }
    top.append(row);
  }
  show(top, true);
}

async function drawLens() {
  const r = shown.lens;
  const Plotly = await loadPlotly();
  const target = escapePlotly(showToken(r.target || ""));
  const trace = (run, name, color, dash) => ({
    type: "scatter",
    mode: "lines+markers",
    name,
    x: r.labels,
    y: r[run].metric,
    line: { color, width: 2, dash },
    marker: { size: 6 },
    customdata: r[run].metric.map((_, i) => [
      r[run].target_rank[i],
      r[run].target_prob ? formatProb(r[run].target_prob[i]) : "–",
      r[run].top[i].map((t) => escapePlotly(showToken(t))).join(" "),
    ]),
    hovertemplate: `${name} · %{x}<br>${escapePlotly(r.metric)} %{y:.4g}<br>rank of ${target}: %{customdata[0]} · P %{customdata[1]}<br>top: %{customdata[2]}<extra></extra>`,
  });
  const layout = {
    margin: { l: 52, r: 8, t: 8, b: 70 },
    height: 280,
    xaxis: { tickangle: -35, showgrid: false },
    yaxis: { title: { text: escapePlotly(r.metric) }, zeroline: true, zerolinecolor: "#c7ccd4" },
    legend: { orientation: "h", x: 0, y: 1.12 },
    plot_bgcolor: "#fafbfc",
    paper_bgcolor: "rgba(0,0,0,0)",
    font: FONT,
    hovermode: "closest",
  };
  show($("lens-empty"), false);
  show($("lens-chart"), true);
  await Plotly.react($("lens-chart"), [trace("clean", "clean", "#0f766e", "solid"), trace("corrupt", "corrupted", "#b45309", "dot")], layout, PLOT_CONFIG);
  renderLensRanks(r);
}

// The target's rank at each read-out point, in both runs: where the answer appears.
function renderLensRanks(r) {
  const box = $("lens-ranks");
  box.textContent = "";
  const head = el("tr", {}, [el("th", { text: `rank of ${showToken(r.target || "")}` }), ...r.labels.map((label) => el("th", { text: label }))]);
  const row = (run, name) => el("tr", { "data-run": run }, [el("th", { text: name }), ...r[run].target_rank.map((rank) => el("td", { text: String(rank) }))]);
  box.append(el("thead", {}, [head]), el("tbody", {}, [row("clean", "clean"), row("corrupt", "corrupted")]));
  show($("lens-ranks-box"), true);
  const summary = $("lens-summary");
  summary.textContent = "";
  summary.append(
    modelTag(r),
    el("span", { text: ` · ${r.metric} read from the residual stream at the final position through the final norm and the unembedding; the last point is the model's own output · hover for the top tokens` }),
  );
  show(summary, true);
}

// -- a stored run, reopened ----------------------------------------------------------------------

// A view's stored run (the history's "Open": kind "attention", "dla" or "lens"), drawn from its
// stored result as it was drawn when it ran, nothing recomputed. Its request is already back in
// the form, so the drawing belongs to the form's experiment (not stale); the lens's "after
// attention too" is set as the run asked.
export async function showStoredView(kind, result, request) {
  if (kind === "attention") {
    const ticket = beginAttention(result.layer, result.head);
    const key = experimentKey("attention");
    try {
      const Plotly = await loadPlotly();
      if (ticket === latestAttention) await drawAttention(Plotly, result, key);
    } catch (err) {
      $("attn-panel").classList.remove("busy");
      showPageError($("attn-error"), err);
    }
    return;
  }
  latestViews++; // an answer still on its way (a sweep's DLA and lens) must not draw over it
  const button = $("run-views");
  button.disabled = false;
  button.classList.remove("busy");
  show($("views-error"), false);
  if (kind === "lens") $("lens-sublayers").checked = Boolean(request.sublayers);
  shown[kind] = result;
  drawnFor[kind] = experimentKey(kind);
  updateStale();
  renderWarnings("views-warnings", result.warnings);
  try {
    await (kind === "dla" ? drawDla() : drawLens());
  } catch (err) {
    showPageError($("views-error"), err);
  }
}
