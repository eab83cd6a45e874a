// The history panel: every run kept in the server's data directory (GET /runs, which names
// it), a page at a time (Newer/Older), reopened without recomputing, and two sweeps compared
// side by side as a difference heatmap (second minus first). A run's title says its kind, its
// model's short name, what it patched and its prompts; hovering shows the rest. "Open" puts
// what the run read back into the form (the rest stays as it is: a view's head is not the
// patch's cell) and shows its result in its card; a run from a model this server does not serve
// says so. "Pin" keeps a run for good (`PATCH /runs/{id}`: retention deletes only unpinned
// runs) and marks its row; "Unpin" gives it back to retention. When the server could not use
// its history file, the panel says so above the list (GET /runs' `history.problem`). "Export"
// downloads a run in the formats its kind has (`GET /runs/{id}/export/{fmt}`). Strings from the
// server are set with textContent.

import { api } from "./api.js";
import { showAttribution } from "./attribution.js";
import { showCurve, showEdges } from "./circuit.js";
import { $, el, formatNumber, formatPct, show } from "./dom.js";
import { restoreForm, saveUrl } from "./experiment.js";
import { showPatch } from "./patch.js";
import { showPath } from "./paths.js";
import { DIVERGING, escapePlotly, loadPlotly } from "./plots.js";
import { checkStale } from "./stale.js";
import { server } from "./state.js";
import { showSweep } from "./sweep.js";
import { scheduleTokenize } from "./tokens.js";
import { showStoredView } from "./views.js";

// The card (or panel) each kind of run reopens in; the page
// scrolls to those named "-title" or "-panel".
const CARDS = {
  patch: "patch-title",
  sweep: "sweep-title",
  ablation: "sweep-title",
  attribution: "attribution",
  edges: "circuit-card",
  evaluation: "circuit-card",
  path: "path-card",
  attention: "attn-panel",
  dla: "dla-panel",
  lens: "lens-panel",
};
const VIEW_KINDS = ["attention", "dla", "lens"];

// The formats' names in a row's Export menu; which formats a run has, the server says (GET /runs'
// `formats`, from export.py's `formats_of`).
const EXPORT_LABELS = { csv: "CSV", json: "JSON", ipynb: "Notebook", png: "PNG heatmap", svg: "SVG heatmap" };

// A model as lists name it: a hub id or a folder by its last part (history.short_model_name).
function shortModel(model) {
  if (!model) return "";
  return model.replace(/[/\\]+$/, "").split(/[/\\]/).pop() || model;
}

function served(model) {
  return server.models.some((m) => m.name === model);
}

const PAGE = 30;
const state = { runs: [], ticked: [], offset: 0, total: 0, nextOffset: null, problem: null };

async function refresh() {
  let data;
  try {
    data = await api("GET", `/runs?limit=${PAGE}&offset=${state.offset}`);
  } catch (err) {
    $("history-empty").textContent = `The history cannot be read: ${err.message}`;
    return;
  }
  if (!data.runs.length && state.offset > 0) {
    state.offset = Math.max(0, state.offset - PAGE); // the page emptied (runs deleted): go back
    return refresh();
  }
  state.runs = data.runs;
  state.total = data.total ?? data.runs.length;
  state.nextOffset = data.next_offset ?? null;
  state.problem = data.history ? data.history.problem : null;
  $("history-where").textContent = whereText(data);
  state.ticked = state.ticked.filter((id) => data.runs.some((r) => r.id === id));
  render();
}

// The folder the runs are kept in; when its history file was left aside (the notice above the
// list says why), where they go instead.
function whereText(data) {
  if (!data.data_dir) return "";
  const info = data.history;
  if (info && info.problem) {
    const instead = info.in_memory ? "in memory (lost when the server stops)" : `in ${info.path}`;
    return `Runs kept ${instead}: the history file of ${data.data_dir} (this server's data directory, ACTPATCH_DATA_DIR) was left aside.`;
  }
  return `Runs kept in ${data.data_dir} (this server's data directory, ACTPATCH_DATA_DIR; the CLI's --save keeps its runs there too).`;
}

// Above the list: what went wrong with the history file; below it: the pages.
function renderFrame() {
  const problem = $("history-problem");
  problem.textContent = state.problem ? `⚠ ${state.problem}` : "";
  show(problem, Boolean(state.problem));
  const first = state.runs.length ? state.offset + 1 : 0;
  $("history-range").textContent = state.total > PAGE ? `runs ${first}–${state.offset + state.runs.length} of ${state.total}` : "";
  $("history-newer").disabled = state.offset === 0;
  $("history-older").disabled = state.nextOffset === null;
  show($("history-pages"), state.total > PAGE);
}

function render() {
  renderFrame();
  const list = $("history-list");
  list.textContent = "";
  show($("history-empty"), state.runs.length === 0);
  for (const run of state.runs) {
    const tick = el("input", { type: "checkbox", class: "history-tick", "data-run": String(run.id), title: "Tick two sweeps to compare them" });
    tick.checked = state.ticked.includes(run.id);
    tick.disabled = run.kind !== "sweep";
    tick.addEventListener("change", () => {
      state.ticked = tick.checked ? [...state.ticked, run.id].slice(-2) : state.ticked.filter((id) => id !== run.id);
      render();
    });
    const open = el("button", { type: "button", class: "chip-button history-open", "data-run": String(run.id), text: "Open" });
    open.addEventListener("click", () => reopen(run.id));
    const pin = el("button", {
      type: "button",
      class: "chip-button history-pin",
      "data-run": String(run.id),
      "aria-pressed": String(run.pinned),
      text: run.pinned ? "Unpin" : "Pin",
      title: run.pinned ? "Pinned: retention never deletes this run. Unpin to let it go." : "Pin: keep this run for good (retention never deletes a pinned run).",
    });
    pin.addEventListener("click", () => setPinned(run, !run.pinned));
    const exporter = exportSelect(run);
    const when = run.created_at.replace("T", " ").replace("Z", " UTC");
    const seconds = run.seconds === null ? "" : `${run.seconds.toFixed(2)} s`;
    const partial = run.complete ? "" : "partial (cancelled)";
    const title = [run.kind, shortModel(run.model), run.label].filter(Boolean).join(" · ");
    const other = run.model && !served(run.model);
    const hover = [`#${run.id} ${title}`, `model: ${run.model || "?"} (${run.backend || "?"} path)${other ? ", not served here" : ""}`, `${when}${seconds ? ` · ${seconds}` : ""} · actpatch ${run.version}`];
    if (run.pinned) hover.push("pinned: retention never deletes it");
    const item = el("li", { class: `history-item${run.pinned ? " pinned" : ""}`, title: hover.join("\n"), "data-run": String(run.id) }, [
      tick,
      el("span", { class: "history-id", text: `#${run.id}` }),
      el("span", { class: "history-label", text: title }),
    ]);
    if (run.pinned) item.append(el("span", { class: "history-pinned", text: "pinned" }));
    if (other) item.append(el("span", { class: "history-other", text: "another model", title: `Computed on ${run.model}, which this server does not serve (it serves ${server.models.map((m) => m.name).join(", ")}).` }));
    item.append(el("span", { class: "muted small history-when", text: [partial, seconds, when.slice(5, 16)].filter(Boolean).join(" · ") }), exporter, pin, open);
    list.append(item);
  }
  $("history-compare").disabled = state.ticked.length !== 2;
}

// A row's "Export" menu: choosing a format downloads the run in it, then the menu reads
// "Export" again.
function exportSelect(run) {
  const formats = run.formats || ["json"]; // any run exports as JSON
  const select = el("select", { class: "history-export", "data-run": String(run.id), "aria-label": `Export run #${run.id}`, title: `Download run #${run.id} (${formats.map((f) => EXPORT_LABELS[f]).join(", ")})` }, [
    el("option", { value: "", text: "Export" }),
    ...formats.map((fmt) => el("option", { value: fmt, text: EXPORT_LABELS[fmt] })),
  ]);
  select.addEventListener("change", () => {
    const fmt = select.value;
    select.value = "";
    if (fmt) download(run, fmt);
  });
  return select;
}

// The file itself: fetched first, so that a refusal (the run deleted meanwhile) is said under
// the list rather than saved as a file; saved as actpatch-run-ID-KIND.EXT.
async function download(run, fmt) {
  const what = `Run #${run.id} cannot be exported as ${EXPORT_LABELS[fmt]}`;
  let response;
  try {
    response = await fetch(`/runs/${run.id}/export/${fmt}`);
  } catch (err) {
    failed(`${what}: the server cannot be reached (${err.message}). Is actpatch serve still running?`);
    return;
  }
  if (!response.ok) {
    let detail = `the server answered ${response.status}`;
    try {
      detail = (await response.json()).detail || detail;
    } catch (err) {
      // not JSON: the status says it
    }
    failed(`${what}: ${detail}`);
    return;
  }
  const url = URL.createObjectURL(await response.blob());
  const link = el("a", { href: url, download: `actpatch-run-${run.id}-${run.kind}.${fmt}` });
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10_000);
}

// Pin a run (retention never deletes it) or unpin it; the row shows what the server answered.
async function setPinned(run, pinned) {
  let summary;
  try {
    summary = await api("PATCH", `/runs/${run.id}`, { pinned });
  } catch (err) {
    $("history-note").textContent = `Run #${run.id} could not be ${pinned ? "pinned" : "unpinned"}: ${err.message}`;
    show($("history-note"), true);
    return;
  }
  state.runs = state.runs.map((r) => (r.id === summary.id ? { ...r, pinned: summary.pinned } : r));
  render();
}

// A run the panel could not read (deleted meanwhile, by retention or another tab): said under
// the list, which is read again so that the run's row goes.
function failed(message) {
  $("history-note").textContent = message;
  show($("history-note"), true);
  refresh();
}

// A stored run, shown as it was computed: its request back in the form, its result in its
// card (the patch's numbers, the sweep's heatmap, the attribution, the circuit, a view's
// attention pattern, DLA heatmap or lens chart), nothing recomputed. What the form cannot hold
// (another model, more prompt pairs) is said.
async function reopen(id) {
  let run;
  try {
    run = await api("GET", `/runs/${id}`);
  } catch (err) {
    failed(`Run #${id} cannot be opened: ${err.message}`);
    return;
  }
  const lost = restoreForm(run.request, run.result, run.kind);
  scheduleTokenize();
  checkStale(); // the other cards' results came from the inputs before
  if (run.kind === "sweep" || run.kind === "ablation") await showSweep(run.result);
  else if (run.kind === "patch") showPatch(run.result, run.request);
  else if (run.kind === "attribution") await showAttribution(run.result, run.request);
  else if (run.kind === "edges") showEdges(run.result, run.request);
  else if (run.kind === "evaluation") showCurve(run.result);
  else if (run.kind === "path") await showPath(run.result, run.request);
  else if (VIEW_KINDS.includes(run.kind)) await showStoredView(run.kind, run.result, run.request);
  saveUrl();
  const notes = [];
  const model = run.result.model || run.model;
  if (!served(model)) notes.push(`Run #${id} was computed on ${model}, which this server does not serve: its numbers are shown as stored, and running again computes on ${$("model").value}.`);
  if (lost.length) notes.push(`The form cannot hold its ${lost.join(" or ")}.`);
  if (!CARDS[run.kind]) notes.push(`Run #${id} (${run.kind}) has no view on this page yet: its inputs are back in the form; \`actpatch runs show ${id}\` prints its result.`);
  $("history-note").textContent = notes.join(" ");
  show($("history-note"), notes.length > 0);
  if (/-(title|panel)$/.test(CARDS[run.kind] || "")) $(CARDS[run.kind]).scrollIntoView({ behavior: "smooth" });
  document.body.dataset.reopened = String(id);
}

function gridOf(result) {
  // (layer, x) values of the normalized metric (raw when undefined); 3 axes: the mean over heads.
  const grid = result.note ? result.raw : result.normalized;
  if (result.axes.length === 3) {
    return grid.map((row) => row.map((cell) => {
      const values = cell.filter((v) => v !== null);
      return values.length ? values.reduce((a, b) => a + b, 0) / values.length : null;
    }));
  }
  return grid;
}

async function compare() {
  let first, second;
  try {
    [first, second] = await Promise.all(state.ticked.map((id) => api("GET", `/runs/${id}`)));
  } catch (err) {
    failed(`Runs #${state.ticked.join(" and #")} cannot be compared: ${err.message}`);
    return;
  }
  const a = first.result;
  const b = second.result;
  const info = $("history-compare-info");
  info.textContent = "";
  const ga = gridOf(a);
  const gb = gridOf(b);
  if (ga.length !== gb.length || ga[0].length !== gb[0].length) {
    info.append(el("div", { class: "alert", text: `Runs #${first.id} and #${second.id} have different shapes (${ga.length}×${ga[0].length} vs ${gb.length}×${gb[0].length}): pick two sweeps of the same component on the same model and positions.` }));
    show(info, true);
    show($("history-diff"), false);
    return;
  }
  const diff = gb.map((row, l) => row.map((v, x) => (v === null || ga[l][x] === null ? null : v - ga[l][x])));
  let maxAbs = 0;
  for (const row of diff) for (const v of row) if (v !== null) maxAbs = Math.max(maxAbs, Math.abs(v));
  const pct = !a.note && !b.note; // both normalized: differences in % of the gap, else raw
  const largest = pct ? `${formatPct(maxAbs)} (of the clean − corrupted gap)` : formatNumber(maxAbs, 3);
  info.append(el("span", { text: `#${second.id} (${b.component}, ${b.n_pairs} pair(s), ${b.model}) minus #${first.id} (${a.component}, ${a.n_pairs} pair(s), ${a.model}), ${pct ? "normalized" : "raw"} ${a.metric}; largest difference ${largest}` }));
  show(info, true);
  const Plotly = await loadPlotly();
  const node = $("history-diff");
  show(node, true);
  const xs = b.axes[1] === "head" ? diff[0].map((_, i) => `H${i}`) : b.position_convention === "role" ? b.position_labels : diff[0].map((_, i) => String(i));
  const custom = diff.map((row, l) => row.map((v, x) => [ga[l][x], gb[l][x]]));
  const f = pct ? ".1%" : ".3f";
  Plotly.react(
    node,
    [{
      type: "heatmap",
      z: diff,
      x: xs.map((t) => escapePlotly(t)),
      customdata: custom,
      colorscale: DIVERGING,
      zmid: 0,
      zmin: -(maxAbs || 1),
      zmax: maxAbs || 1,
      xgap: 1,
      ygap: 1,
      hovertemplate: `${b.axes[1] === "head" ? "L%{y}%{x}" : "L%{y} · pos %{x}"}<br>#${second.id} − #${first.id}: %{z:${f}}<br>#${first.id}: %{customdata[0]:${f}} · #${second.id}: %{customdata[1]:${f}}<extra></extra>`,
      colorbar: { title: { text: "difference", side: "right" }, thickness: 12, tickformat: pct ? ".0%" : "" },
    }],
    { margin: { l: 56, r: 10, t: 10, b: 60 }, height: 320, yaxis: { title: { text: "layer" }, autorange: "reversed", dtick: 1 }, plot_bgcolor: "#eef0f3", paper_bgcolor: "rgba(0,0,0,0)" },
    { displaylogo: false, responsive: true },
  );
}

function turnPage(offset) {
  state.offset = Math.max(0, offset);
  refresh();
}

export function bindHistory() {
  const list = $("history-list");
  list.before(el("div", { id: "history-problem", class: "alert hidden", role: "status" }));
  const newer = el("button", { type: "button", id: "history-newer", class: "ghost", text: "‹ Newer" });
  const older = el("button", { type: "button", id: "history-older", class: "ghost", text: "Older ›" });
  newer.addEventListener("click", () => turnPage(state.offset - PAGE));
  older.addEventListener("click", () => turnPage(state.nextOffset ?? state.offset));
  list.after(el("div", { id: "history-pages", class: "controls hidden" }, [newer, el("span", { id: "history-range", class: "muted small" }), older]));
  $("history-refresh").addEventListener("click", refresh);
  $("history-compare").addEventListener("click", compare);
  document.addEventListener("actpatch:run", () => {
    state.offset = 0; // a new run is the newest: show the first page
    setTimeout(refresh, 50);
  });
  refresh();
}
