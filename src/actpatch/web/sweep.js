// The sweep: every cell of the component patched (or ablated) as a background job with
// progress, drawn as a Plotly heatmap that fills in while it computes; a clicked cell becomes
// the single patch, and the cell patched is outlined. The heatmap is tied to the request that
// made it (stale.js): change an input and it greys.

import { cancelJob, clearFieldErrors, renderWarnings, runJob, showPageError } from "./api.js";
import { $, el, formatNumber, formatPct, headName, show, showToken, modelTag } from "./dom.js";
import { experimentBody, readState, saveUrl, updateIndexInputs } from "./experiment.js";
import { runPatch } from "./patch.js";
import { DIVERGING, escapePlotly, loadPlotly } from "./plots.js";
import { headAnnotations } from "./roles.js";
import { madeFrom, tieResults } from "./stale.js";
import { isThreeAxis, noBehaviour, server, view } from "./state.js";

const JOBS = "/sweep/jobs";
let running = null; // the id of the sweep job being computed
let pendingSlice; // a link's head slice, applied once its sweep is drawn

export function bindSweep() {
  $("run-sweep").addEventListener("click", () => runSweep());
  $("cancel-sweep").addEventListener("click", cancelSweep);
  $("view").addEventListener("change", () => {
    renderSweep();
    saveUrl();
  });
  $("slice").addEventListener("change", () => {
    renderSweep();
    saveUrl();
  });
  $("grey-ci").addEventListener("change", () => renderSweep());
  document.addEventListener("actpatch:patched", highlightCell);
  tieResults("sweep", {
    parts: ["sweep-warnings", "sweep-summary", "heatmap", "sweep-top"],
    request: sweepRequest,
    onChange(stale) {
      view.sweepStale = stale; // a link carries the sweep only while it is the form's
    },
  });
}

// The /sweep request the form asks for now: the prompts (or a dataset), the component, and
// the ablation when one is chosen.
export function sweepRequest() {
  const state = readState();
  let body = experimentBody(state);
  const dataset = $("dataset").value.trim();
  if (dataset) {
    // A dataset replaces the prompts: its pairs, averaged, with an interval per cell.
    body = { dataset, component: body.component, direction: body.direction, positions: server.options.positions.default };
    if (state.metric) body.metric = state.metric;
    if (state.model) body.model = state.model;
  }
  if (state.ablate) {
    body.ablate = state.ablate; // ablations act on the clean run: no direction
    delete body.direction;
  }
  return body;
}

export async function runSweep({ slice } = {}) {
  if (running) return;
  if (slice !== undefined) pendingSlice = slice;
  const body = sweepRequest();
  show($("sweep-error"), false);
  $("sweep-error").classList.remove("info");
  $("run-sweep").disabled = true;
  setProgress(0, 0);
  show($("sweep-progress"), true);
  loadPlotly().catch(() => {}); // in parallel with the sweep; renderSweep reports a failure
  const result = await runJob(JOBS, body, {
    box: $("sweep-error"),
    what: "sweep",
    beside: ["dataset"], // a bad dataset is said under its box, not again above the heatmap
    started(id) {
      clearFieldErrors();
      running = id;
    },
    progress(job) {
      setProgress(job.done, job.total);
      if (job.partial) {
        // The heatmap fills in while the sweep computes (unfinished cells are empty).
        view.sweep = job.partial;
        madeFrom("sweep", body);
        renderSweep().catch(() => {});
      }
    },
    ended() {
      running = null;
      $("run-sweep").disabled = false;
      show($("sweep-progress"), false);
    },
  });
  if (!result) return;
  view.sweep = result;
  madeFrom("sweep", body);
  try {
    await renderSweep();
  } catch (err) {
    showPageError($("sweep-error"), err);
  }
  saveUrl();
  document.dispatchEvent(new CustomEvent("actpatch:run"));
  document.dispatchEvent(new CustomEvent("actpatch:swept")); // views.js: DLA and lens beside it
}

function setProgress(done, total) {
  $("sweep-fill").style.width = total ? `${(100 * done) / total}%` : "0%";
  $("sweep-count").textContent = total ? `${done} / ${total} cells` : "starting…";
}

async function cancelSweep() {
  if (!running) return;
  $("sweep-count").textContent = "cancelling…";
  await cancelJob(JOBS, running);
}

// A stored sweep (the history panel, the start-up's head sweep), shown as it was computed;
// `request` is what made it (by default the form's request: its inputs are in the form).
export async function showSweep(result, request) {
  view.sweep = result;
  $("component").value = result.component;
  updateIndexInputs();
  madeFrom("sweep", request);
  await renderSweep();
}

// The heatmap's matrix for the current view: (layer, x) values, x = head or position.
function sweepMatrix(result) {
  const which = $("view").value === "raw" || result.note ? "raw" : "normalized";
  let grid = result[which];
  if (isThreeAxis(result)) {
    const h = Number($("slice").value || 0);
    grid = grid.map((row) => row.map((cell) => cell[h]));
  }
  return { which, grid };
}

function xLabels(result) {
  const axis = result.axes[1];
  const n = result.raw[0].length;
  if (axis === "head") return { title: "head", text: Array.from({ length: n }, (_, i) => `H${i}`), tokens: null };
  if (result.position_convention === "role") {
    return { title: "role (positions named by each pair)", text: result.position_labels.map((r) => escapePlotly(r)), tokens: result.position_labels };
  }
  const unpatched = new Set(result.unpatched_positions);
  const text = result.tokens.map((t, i) => `${i} ${escapePlotly(showToken(t))}${unpatched.has(i) ? " ✕" : ""}`);
  return { title: "position (token of the patched run)", text, tokens: result.tokens };
}

export async function renderSweep() {
  const result = view.sweep;
  if (!result) return;
  const Plotly = await loadPlotly();
  show($("sweep-empty"), false);
  show($("heatmap"), true);
  const three = isThreeAxis(result);
  show($("slice-box"), three);
  if (three && $("slice").options.length !== result.raw[0][0].length) {
    const slice = $("slice");
    slice.textContent = "";
    for (let h = 0; h < result.raw[0][0].length; h++) slice.append(el("option", { value: String(h), text: `H${h}` }));
  }
  if (three && pendingSlice !== undefined) {
    $("slice").value = pendingSlice;
    pendingSlice = undefined;
  }
  const { which, grid } = sweepMatrix(result);
  const labels = xLabels(result);
  const nLayers = grid.length;
  const nX = grid[0].length;
  let maxAbs = 0;
  for (const row of grid) for (const v of row) if (v !== null && Math.abs(v) > maxAbs) maxAbs = Math.abs(v);
  maxAbs = maxAbs || 1;
  const custom = [];
  for (let l = 0; l < nLayers; l++) {
    const row = [];
    for (let x = 0; x < nX; x++) {
      const rawGrid = three ? result.raw[l][x][Number($("slice").value || 0)] : result.raw[l][x];
      const normGrid = three ? result.normalized[l][x][Number($("slice").value || 0)] : result.normalized[l][x];
      const where = result.axes[1] === "head" ? headName(l, x) : `${headName(l, three ? $("slice").value : null)} · pos ${labels.text[x]}`;
      const value = normGrid === null ? (rawGrid === null ? "not patched (no counterpart in the other prompt)" : "normalized undefined") : `normalized ${escapePlotly(result.metric)} ${formatPct(normGrid)} (of the clean − corrupted gap)`;
      row.push([where, value, rawGrid === null ? "–" : formatNumber(rawGrid, 4), intervalText(result, l, x)]);
    }
    custom.push(row);
  }
  const trace = {
    type: "heatmap",
    z: greyed(result, grid, which),
    x: Array.from({ length: nX }, (_, i) => i),
    y: Array.from({ length: nLayers }, (_, i) => i),
    customdata: custom,
    colorscale: DIVERGING,
    zmid: 0,
    zmin: -maxAbs,
    zmax: maxAbs,
    xgap: 1,
    ygap: 1,
    hoverongaps: false,
    hovertemplate: `%{customdata[0]}<br>%{customdata[1]}<br>raw ${escapePlotly(result.metric)} %{customdata[2]}%{customdata[3]}<extra></extra>`,
    colorbar: { title: { text: which === "raw" ? escapePlotly(result.metric) : `normalized ${escapePlotly(result.metric)}`, side: "right" }, thickness: 12, len: 0.9, tickformat: which === "raw" ? "" : ".0%" },
  };
  const layout = {
    margin: { l: 56, r: 10, t: 10, b: labels.tokens ? 110 : 44 },
    height: Math.max(300, Math.min(620, 40 + nLayers * 30 + (labels.tokens ? 110 : 44))),
    xaxis: {
      title: { text: labels.title },
      tickmode: "array",
      tickvals: Array.from({ length: nX }, (_, i) => i),
      ticktext: labels.text,
      tickangle: labels.tokens ? -50 : 0,
      showgrid: false,
      zeroline: false,
    },
    yaxis: { title: { text: "layer" }, autorange: "reversed", dtick: 1, showgrid: false, zeroline: false },
    plot_bgcolor: "#eef0f3",
    paper_bgcolor: "rgba(0,0,0,0)",
    font: { family: "system-ui, -apple-system, Segoe UI, Roboto, sans-serif", size: 12, color: "#1f2937" },
    shapes: [],
    // GPT-2 small's known head roles (Wang et al. 2022); none for other models
    annotations: headAnnotations(result),
  };
  const node = $("heatmap");
  Plotly.react(node, [trace], layout, { displaylogo: false, responsive: true, modeBarButtonsToRemove: ["lasso2d", "select2d"] });
  if (!node.dataset.bound) {
    node.on("plotly_click", (event) => {
      const point = event.points[0];
      selectCell(point.y, point.x);
    });
    node.dataset.bound = "1";
  }
  renderSweepSummary(result, which);
  highlightCell();
}

// The cell's interval, as the hover shows it: mean ± half-width [low, high] over n pairs.
function intervalText(result, l, x) {
  const pairs = `<br>${result.n_pairs} pair${result.n_pairs === 1 ? "" : "s"}${result.complete === false ? " (sweep still running)" : ""}`;
  const ci = result.ci;
  if (!ci) return pairs;
  const pick = (t) => (isThreeAxis(result) ? t[l][x][Number($("slice").value || 0)] : t[l][x]);
  const low = pick(ci.low);
  const high = pick(ci.high);
  const mean = pick(result.normalized);
  if (low === null || high === null || mean === null) return pairs;
  const half = (high - low) / 2;
  return `${pairs}<br>normalized ${formatPct(mean)} ± ${formatPct(half)} · ${Math.round(100 * ci.level)}% interval [${formatPct(low)}, ${formatPct(high)}] (bootstrap, ${ci.n_boot} resamples)`;
}

// With the toggle on, cells whose interval contains the unpatched value are left empty (grey).
function greyed(result, grid, which) {
  const ci = result.ci;
  if (!$("grey-ci").checked || !ci || which !== "normalized") return grid;
  const unpatched = result.direction === "noising" ? 1 : 0;
  const h = Number($("slice").value || 0);
  return grid.map((row, l) => row.map((v, x) => {
    const low = isThreeAxis(result) ? ci.low[l][x][h] : ci.low[l][x];
    const high = isThreeAxis(result) ? ci.high[l][x][h] : ci.high[l][x];
    return low !== null && high !== null && low <= unpatched && high >= unpatched ? null : v;
  }));
}

function renderSweepSummary(result, which) {
  const summary = $("sweep-summary");
  summary.textContent = "";
  renderWarnings("sweep-warnings", result.warnings);
  const n = result.raw.flat(2).filter((v) => v !== null).length;
  summary.append(
    modelTag(result),
    el("span", {
      text: ` · ${result.component} · ${which === "raw" ? "raw" : "normalized"} ${result.metric} · ${result.direction} · clean ${formatNumber(result.clean)}, corrupted ${formatNumber(result.corrupt)} · ${n} cells in ${result.seconds.toFixed(2)} s · blue raises the metric, red lowers it${result.n_pairs > 1 ? ` · mean of ${result.n_pairs} pairs${result.ci ? `, ${Math.round(100 * result.ci.level)}% bootstrap intervals` : ""}` : ""}${result.complete === false ? " · still computing…" : ""}`,
    }),
  );
  if (result.note) summary.append(el("div", { class: "note", text: result.note }));
  if (result.ablation) {
    summary.append(el("div", { class: "muted small", text: `${result.ablation}-ablation of each cell in the clean run (100% = nothing lost, 0% = the corrupted run's level) · value: ${result.reference}` }));
  }
  if (result.unpatched_positions.length && result.axes.includes("pos")) {
    summary.append(el("div", { class: "muted small", text: `Positions ${result.unpatched_positions.join(", ")} (✕) have no counterpart in the other prompt: not patched.` }));
  }
  show(summary, true);

  // The cells that matter most, each a link to its single patch.
  const top = $("sweep-top");
  top.textContent = "";
  const { grid } = sweepMatrix(result);
  // Effects are measured from the unpatched run: 0 (denoising) or 1 (noising) when normalized.
  const noising = result.direction === "noising";
  const unpatched = which === "normalized" ? (noising ? 1 : 0) : (noising ? result.clean : result.corrupt);
  const cells = [];
  grid.forEach((row, l) => row.forEach((v, x) => v !== null && cells.push([Math.abs(v - unpatched), v, l, x])));
  cells.sort((a, b) => b[0] - a[0]);
  // Without the behaviour, the largest effect is the largest noise: no cell is announced.
  const absent = noBehaviour(result);
  if (absent) {
    top.append(el("span", { class: "no-behaviour", text: `No behaviour to localize: ${absent} No cell stands out for a reason; choose a prompt pair the model gets right.` }));
    show(top, true);
    return;
  }
  top.append(el("span", { class: "muted", text: `Largest effects (${which}): ` }));
  for (const [, v, l, x] of cells.slice(0, 6)) {
    let label = result.axes[1] === "head" ? headName(l, x) : `L${l} pos ${x}`;
    if (isThreeAxis(result)) label = `${headName(l, $("slice").value)} pos ${x}`;
    const shown = which === "normalized" ? formatPct(v) : formatNumber(v, 2);
    const button = el("button", { type: "button", class: "chip-button", text: `${label} ${shown}` });
    button.addEventListener("click", () => selectCell(l, x));
    top.append(button);
  }
  show(top, cells.length > 0);
}

// A clicked cell becomes the single patch: set its layer and head (or position) and run it.
function selectCell(layer, x) {
  const result = view.sweep;
  $("component").value = result.component;
  updateIndexInputs();
  $("layer").value = layer;
  if (result.axes[1] === "head") {
    $("head").value = x;
  } else {
    $("pos").value = x;
    if (isThreeAxis(result)) $("head").value = Number($("slice").value || 0);
  }
  show($("patch-info"), false);
  // A head's cell also opens its attention pattern (views.js); asked for before the patch.
  const head = result.axes[1] === "head" ? x : result.axes.includes("head") ? Number($("slice").value || 0) : null;
  if (head !== null) document.dispatchEvent(new CustomEvent("actpatch:head", { detail: { layer, head } }));
  runPatch();
  if (window.innerWidth < 1100) $("patch-title").scrollIntoView({ behavior: "smooth" });
}

// The single patch's cell, outlined on the heatmap when the heatmap is of its component.
function highlightCell() {
  const node = $("heatmap");
  if (!view.sweep || !node.data || !window.Plotly) return;
  const state = readState();
  const x = view.sweep.axes[1] === "head" ? state.head : state.pos;
  if (state.layer === null || x === null || $("component").value !== view.sweep.component) {
    window.Plotly.relayout(node, { shapes: [] });
    return;
  }
  window.Plotly.relayout(node, {
    shapes: [{ type: "rect", x0: x - 0.5, x1: x + 0.5, y0: state.layer - 0.5, y1: state.layer + 0.5, line: { color: "#111827", width: 2.5 } }],
  });
}
