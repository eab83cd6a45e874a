// The Path patching card (Wang et al. 2022; docs/circuits.md): each sender's effect on the metric
// through the receivers only (POST /path). Every other head is frozen at its base-run output, so
// the receivers (the logits, or heads' q/k/v inputs and MLPs) see only the sender's direct
// change. The result is a layer × head heatmap of the senders (an MLP column when MLPs are sent),
// in the sweep's colours and units (normalized: clean = 100%, corrupted = 0%), and the senders
// whose path moves the metric most. Receivers and senders take the API's own syntax ("logits",
// "9.9.q,9.6.q", "a7.h3<v>"; "all" or "9.9,10.0,m0"), so a server's error lands under its field.
// The result is tied to the request that made it (stale.js), reopens from the history
// (showPath), and a link carries the card's inputs and runs it again (pathFromUrl).

import { api, clearFieldError, renderWarnings, showApiError, showPageError } from "./api.js";
import { $, el, resultSlots, formatNumber, formatPct, headName, show, modelTag } from "./dom.js";
import { addUrlPart, experimentFields, readState, saveUrl } from "./experiment.js";
import { DIVERGING, escapePlotly, loadPlotly } from "./plots.js";
import { headAnnotations, rememberRoles } from "./roles.js";
import { madeFrom, tieResults } from "./stale.js";
import { noBehaviour, server } from "./state.js";

const FIELDS = ["senders", "receivers"]; // the API's names: its errors name them
const DEFAULT_RECEIVERS = "logits"; // Wang et al.'s first step: every head's direct effect
const state = { result: null, running: false };

// -- the card ------------------------------------------------------------------------------

// The card, after the circuit card.
export function buildPathCard() {
  const card = el("section", { class: "card path", id: "path-card", "aria-labelledby": "path-title" });
  const senders = el("input", { id: "senders", type: "text", size: "12", value: "all", spellcheck: "false", placeholder: "all", "aria-describedby": "path-senders-hint" });
  const receivers = el("input", { id: "receivers", type: "text", size: "22", value: DEFAULT_RECEIVERS, spellcheck: "false", placeholder: "logits or 9.9.q,9.6.q", list: "path-suggestions" });
  card.append(
    el("div", { class: "card-head" }, [
      el("h2", { id: "path-title", text: "Path patching" }),
      el("div", { class: "controls" }, [
        el("label", { class: "inline", for: "senders", title: "'all' (every head), or heads and MLPs: 9.9,10.0,m0 (or a9.h9)" }, ["Senders ", senders]),
        el("label", { class: "inline", for: "receivers", title: "'logits', or heads' q/k/v inputs and MLPs: 9.9.q,9.6.q (or a7.h3<v>, m2)" }, ["Receivers ", receivers]),
        el("label", { class: "inline", for: "freeze_mlps", title: "Freeze every MLP too, not only the heads: the receivers then see the sender's change with no MLP in between" }, [
          el("input", { id: "freeze_mlps", type: "checkbox" }),
          " freeze MLPs",
        ]),
        el("button", { type: "button", id: "run-path", class: "primary", text: "Run path patching" }),
      ]),
    ]),
    el("datalist", { id: "path-suggestions" }),
    el("div", { class: "field-msg", "data-for": "senders" }),
    el("div", { class: "field-msg", "data-for": "receivers" }),
    ...resultSlots(
      "path",
      "Which heads act on the receivers directly? Each sender's activation is taken from the other run " +
        "while every other head stays frozen, so only the receivers (the logits, or heads' q/k/v inputs, " +
        "e.g. 9.9.q) see its change. Start at the logits, then trace back into the heads found there.",
    ),
    el("div", { id: "path-body", class: "path-body hidden" }, [
      el("div", { id: "path-heatmap", class: "heatmap" }),
      el("div", { id: "path-top", class: "path-top" }),
    ]),
  );
  $("circuit-card").after(card);
  $("run-path").addEventListener("click", runPath);
  for (const field of FIELDS) {
    $(field).addEventListener("input", () => clearError(field));
    $(field).addEventListener("keydown", (event) => event.key === "Enter" && runPath());
  }
  receivers.addEventListener("focus", suggest);
  addUrlPart(writeUrl);
  tieResults("path", { parts: ["path-warnings", "path-summary", "path-body"], request: pathRequest });
}

// An edited field's error goes, and the alert with it when it was about that field.
function clearError(field) {
  clearFieldError(field);
  const box = $("path-error");
  if ((box.dataset.fields || "").split(" ").includes(field)) show(box, false);
}

// Receivers a researcher asks for next: the logits, the single patch's head's inputs, and the
// inputs of the heads the last result found.
function suggest() {
  const heads = [];
  const s = readState();
  if (s.layer !== null && s.head !== null) heads.push([s.layer, s.head]);
  if (state.result) for (const t of ranked(state.result).slice(0, 3)) if (t.head !== null) heads.push([t.layer, t.head]);
  const values = [DEFAULT_RECEIVERS];
  for (const [l, h] of heads) values.push(`${l}.${h}.q`, `${l}.${h}.k`, `${l}.${h}.v`, `${l}.${h}.q,${l}.${h}.k,${l}.${h}.v`);
  const list = $("path-suggestions");
  list.textContent = "";
  for (const v of new Set(values)) list.append(el("option", { value: v }));
}

// The /path request the form and the card ask for now (the experiment's prompts, answers,
// metric, direction and model; the dataset box belongs to the sweep).
function pathRequest() {
  return {
    ...experimentFields(),
    senders: $("senders").value.trim() || "all",
    receivers: $("receivers").value.trim(),
    freeze_mlps: $("freeze_mlps").checked,
  };
}

function setBusy(busy) {
  state.running = busy;
  const button = $("run-path");
  button.disabled = busy;
  button.textContent = busy ? "Patching paths…" : "Run path patching";
}

async function runPath() {
  if (state.running) return;
  show($("path-error"), false);
  setBusy(true);
  loadPlotly().catch(() => {});
  const request = pathRequest();
  let result;
  try {
    result = await api("POST", "/path", request);
  } catch (err) {
    showApiError($("path-error"), err);
    setBusy(false);
    return;
  }
  setBusy(false);
  state.result = result;
  madeFrom("path", request);
  document.dispatchEvent(new CustomEvent("actpatch:run")); // the history shows the new run
  saveUrl();
  await draw();
}

// A stored path patching run (the history's "Open"), drawn as it was computed: its senders,
// receivers and MLP freezing back in the card (the experiment is already back in the form).
export async function showPath(result, request = {}) {
  const text = (value, fallback) => (Array.isArray(value) ? value.join(",") : value || fallback);
  $("senders").value = text(request.senders, "all");
  $("receivers").value = text(request.receivers, result.receivers.join(","));
  $("freeze_mlps").checked = Boolean(request.freeze_mlps ?? result.freeze_mlps);
  for (const field of FIELDS) clearError(field);
  show($("path-error"), false);
  state.result = result;
  madeFrom("path");
  await draw();
  $("path-card").scrollIntoView({ behavior: "smooth" });
}

async function draw() {
  try {
    await render();
  } catch (err) {
    showPageError($("path-error"), err);
  }
}

// -- the URL: a link carries the card's inputs and runs it again -------------------------------

function writeUrl(params) {
  if (!state.result && !state.running) return;
  params.set("path", $("receivers").value.trim());
  const senders = $("senders").value.trim();
  if (senders && senders !== "all") params.set("path_senders", senders);
  if ($("freeze_mlps").checked) params.set("path_freeze", "1");
}

export function pathFromUrl() {
  const params = new URLSearchParams(location.search);
  if (!params.has("path")) return;
  $("receivers").value = params.get("path") || DEFAULT_RECEIVERS;
  $("senders").value = params.get("path_senders") || "all";
  $("freeze_mlps").checked = params.get("path_freeze") === "1";
  runPath();
}

// -- drawing ----------------------------------------------------------------------------------

// The values drawn: normalized (clean = 1, corrupted = 0) unless undefined (a note says why),
// then raw; and the value of the unpatched run in those units, which effects are measured from.
function units(r) {
  const flat = [r.normalized].flat(2);
  const which = !r.note && flat.some((v) => v !== null) ? "normalized" : "raw";
  const noising = r.direction === "noising";
  const unpatched = which === "normalized" ? (noising ? 1 : 0) : noising ? r.clean : r.corrupt;
  return { which, unpatched };
}

// The model's shape: from the server's list, else from the senders themselves.
function shape(r) {
  if (Array.isArray(r.raw[0])) return { nLayers: r.raw.length, nHeads: r.raw[0].length };
  const model = server.models.find((m) => m.name === r.model);
  if (model) return { nLayers: model.n_layers, nHeads: model.n_heads };
  let nLayers = 1, nHeads = 1;
  for (const s of r.senders) {
    const m = /^a(\d+)\.h(\d+)$/.exec(s) || /^m(\d+)$/.exec(s);
    if (m) nLayers = Math.max(nLayers, Number(m[1]) + 1);
    if (m && m[2] !== undefined) nHeads = Math.max(nHeads, Number(m[2]) + 1);
  }
  return { nLayers, nHeads };
}

// Every sender with its value: {name, layer, head (null for an MLP or the input), value}.
function senderValues(r) {
  const grid = units(r).which === "normalized" ? r.normalized : r.raw;
  const flat = Array.isArray(grid[0]) ? grid.flat() : grid;
  return r.senders.map((name, i) => {
    const head = /^a(\d+)\.h(\d+)$/.exec(name);
    const mlp = /^m(\d+)$/.exec(name);
    const layer = head ? Number(head[1]) : mlp ? Number(mlp[1]) : null;
    return { name, layer, head: head ? Number(head[2]) : null, mlp: Boolean(mlp), value: flat[i] };
  });
}

// The senders whose path moves the metric most from the unpatched run.
function ranked(r) {
  const { unpatched } = units(r);
  return senderValues(r)
    .filter((s) => s.value !== null)
    .sort((a, b) => Math.abs(b.value - unpatched) - Math.abs(a.value - unpatched));
}

function senderName(s) {
  if (s.head !== null) return headName(s.layer, s.head);
  return s.mlp ? `MLP ${s.layer}` : s.name;
}

function shown(r, value) {
  return units(r).which === "normalized" ? formatPct(value) : formatNumber(value, 4);
}

async function render() {
  const r = state.result;
  const Plotly = await loadPlotly();
  rememberRoles(r.model, r.known_roles);
  renderWarnings("path-warnings", r.warnings);
  const { which } = units(r);
  const { nLayers, nHeads } = shape(r);
  const senders = senderValues(r);
  const allHeads = Array.isArray(r.raw[0]);
  const heads = allHeads ? (which === "normalized" ? r.normalized : r.raw) : Array.from({ length: nLayers }, () => Array(nHeads).fill(null));
  const mlps = Array(nLayers).fill(null);
  for (const s of senders) {
    if (allHeads || s.layer === null || s.layer >= nLayers) continue;
    if (s.head !== null && s.head < nHeads) heads[s.layer][s.head] = s.value;
    if (s.mlp) mlps[s.layer] = s.value;
  }
  const hasMlp = senders.some((s) => s.mlp);
  let maxAbs = 0;
  for (const v of [...heads.flat(), ...mlps]) if (v !== null && Math.abs(v) > maxAbs) maxAbs = Math.abs(v);
  maxAbs = maxAbs || 1;
  const metric = escapePlotly(r.metric);
  const unit = which === "raw" ? metric : `normalized ${metric}`;
  const format = which === "raw" ? ".4g" : ".1%";
  const scale = { colorscale: DIVERGING, zmid: 0, zmin: -maxAbs, zmax: maxAbs, xgap: 1, ygap: 1, hoverongaps: false };
  const headTrace = {
    type: "heatmap",
    z: heads,
    x: Array.from({ length: nHeads }, (_, h) => h),
    y: Array.from({ length: nLayers }, (_, l) => l),
    customdata: heads.map((row, l) => row.map((_, h) => headName(l, h))),
    ...scale,
    hovertemplate: `sender %{customdata}<br>${unit} %{z:${format}}<extra></extra>`,
    colorbar: { title: { text: unit, side: "right" }, thickness: 12, len: 0.9, tickformat: which === "raw" ? "" : ".0%" },
  };
  const traces = [headTrace];
  if (hasMlp) {
    traces.push({
      type: "heatmap",
      z: mlps.map((v) => [v]),
      x: [0],
      y: headTrace.y,
      xaxis: "x2",
      ...scale,
      showscale: false,
      customdata: mlps.map((_, l) => [`MLP ${l}`]),
      hovertemplate: `sender %{customdata}<br>${unit} %{z:${format}}<extra></extra>`,
    });
  }
  const layout = {
    margin: { l: 56, r: 10, t: 10, b: 44 },
    height: Math.max(300, Math.min(620, 84 + nLayers * 30)),
    xaxis: { domain: hasMlp ? [0, 0.88] : [0, 1], title: { text: "sender head" }, tickmode: "array", tickvals: headTrace.x, ticktext: headTrace.x.map((h) => `H${h}`), showgrid: false, zeroline: false },
    yaxis: { title: { text: "sender layer" }, autorange: "reversed", dtick: 1, showgrid: false, zeroline: false },
    plot_bgcolor: "#eef0f3",
    paper_bgcolor: "rgba(0,0,0,0)",
    font: { family: "system-ui, -apple-system, Segoe UI, Roboto, sans-serif", size: 12, color: "#1f2937" },
    annotations: headAnnotations({ model: r.model, axes: ["layer", "head"] }),
  };
  if (hasMlp) layout.xaxis2 = { domain: [0.9, 0.97], tickmode: "array", tickvals: [0], ticktext: ["MLP"], showgrid: false, zeroline: false };
  show($("path-empty"), false);
  show($("path-body"), true);
  const node = $("path-heatmap");
  await Plotly.react(node, traces, layout, { displaylogo: false, responsive: true, modeBarButtonsToRemove: ["lasso2d", "select2d"] });
  if (!node.dataset.bound) {
    node.on("plotly_click", (event) => {
      const point = event.points[0];
      if (point.data.xaxis !== "x2") openAttention(point.y, point.x);
    });
    node.dataset.bound = "1";
  }
  renderSummary(r);
  renderTop(r);
  node.dataset.drawn = String(Number(node.dataset.drawn || 0) + 1); // what is drawn (tests)
}

// A head's attention pattern, under Inside the model (views.js listens).
function openAttention(layer, head) {
  document.dispatchEvent(new CustomEvent("actpatch:head", { detail: { layer, head } }));
}

function renderSummary(r) {
  const box = $("path-summary");
  box.textContent = "";
  const frozen = r.freeze_mlps ? ", MLPs frozen" : "";
  const pairs = r.n_pairs === 1 ? "1 pair" : `${r.n_pairs} pairs`;
  box.append(
    modelTag(r),
    el("span", { text: ` · path patching (${r.direction}${frozen}) → ${r.receivers.join(", ")} · ${r.metric}: clean ${formatNumber(r.clean)}, corrupted ${formatNumber(r.corrupt)} · ${r.senders.length} senders · ${pairs} · ${r.seconds.toFixed(2)} s` }),
  );
  if (r.note) box.append(el("div", { class: "note", text: r.note }));
  const from = r.direction === "denoising" ? "clean" : "corrupted";
  const into = r.direction === "denoising" ? "corrupted" : "clean";
  const what = units(r).which === "normalized" ? "normalized (clean = 100%, corrupted = 0%)" : "raw";
  box.append(el("div", { class: "muted small", text: `Each cell: the ${what} ${r.metric} of the ${into} run when only the receivers see that sender's ${from}-run output. Blue raises the metric, red lowers it; a sender after every receiver has no path. Click a head for its attention.` }));
  show(box, true);
}

// The senders whose path matters most; each opens its head's attention or becomes the receivers.
function renderTop(r) {
  const box = $("path-top");
  box.textContent = "";
  box.append(el("h3", { text: "Largest paths" }));
  const absent = noBehaviour(r);
  if (absent) {
    box.append(el("div", { class: "no-behaviour", text: `No behaviour to localize: ${absent} No sender is ranked first for a reason; choose a prompt pair the model gets right.` }));
    return;
  }
  const list = el("ol", { class: "path-top-list" });
  for (const s of ranked(r).slice(0, 8)) {
    const item = el("li", { "data-sender": s.name }, [el("span", { class: "path-sender", text: senderName(s) }), el("b", { text: shown(r, s.value) })]);
    if (s.head !== null) {
      const attention = el("button", { type: "button", class: "chip-button", text: "attention", title: `Open ${senderName(s)}'s attention pattern under Inside the model` });
      attention.addEventListener("click", () => openAttention(s.layer, s.head));
      const trace = el("button", { type: "button", class: "ghost small-button", text: "trace q·k·v", title: `Make ${senderName(s)}'s query, key and value inputs the receivers (then run again): which heads feed it?` });
      trace.addEventListener("click", () => {
        $("receivers").value = `${s.layer}.${s.head}.q,${s.layer}.${s.head}.k,${s.layer}.${s.head}.v`;
        $("receivers").dispatchEvent(new Event("input", { bubbles: true }));
        $("receivers").focus();
      });
      item.append(attention, trace);
    }
    list.append(item);
  }
  box.append(list);
}
