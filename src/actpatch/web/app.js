// actpatch explorer: the page's behaviour, in plain JavaScript (no build step, no CDN).
//
// Sections, in the order data flows: the API client, the experiment state and the URL, live
// tokenization, the single patch, the sweep (a background job with progress, drawn as a
// Plotly heatmap), and start-up. Every string from the server (tokens above all) is
// untrusted: it is put in the page with textContent, never as HTML, and escaped for Plotly.
"use strict";

const EXAMPLES = {
  factual: {
    clean_prompt: "Paris is the capital of",
    corrupt_prompt: "Berlin is the capital of",
    target_token: " France",
    wrong_token: "",
    component: "z",
    metric: "",
    direction: "denoising",
    layer: 8,
    head: 11,
  },
  ioi: {
    clean_prompt: "When Mary and John went to the store, John gave a drink to",
    corrupt_prompt: "When Mary and John went to the store, Mary gave a drink to",
    target_token: " Mary",
    wrong_token: " John",
    component: "z",
    metric: "",
    direction: "denoising",
    layer: 9,
    head: 9,
  },
};
const TEXT_FIELDS = ["clean_prompt", "corrupt_prompt", "target_token", "wrong_token"];
const CHOICE_FIELDS = ["component", "metric", "direction", "ablate"];
const INDEX_FIELDS = ["layer", "head", "pos"];
const URL_KEYS = [...TEXT_FIELDS, ...CHOICE_FIELDS, ...INDEX_FIELDS, "model", "sweep", "view", "slice"];

// ColorBrewer's RdBu, white at 0: red where a patch hurts, blue where it restores.
const DIVERGING = [
  [0, "#67001f"], [0.1, "#b2182b"], [0.2, "#d6604d"], [0.3, "#f4a582"], [0.4, "#fddbc7"],
  [0.5, "#f7f7f7"], [0.6, "#d1e5f0"], [0.7, "#92c5de"], [0.8, "#4393c3"], [0.9, "#2166ac"], [1, "#053061"],
];

const $ = (id) => document.getElementById(id);
const server = { models: [], default: null, components: {}, metrics: {}, directions: {} };
const view = { sweep: null, job: null, polling: null, selected: null, tokenizeTimer: null, tokenizeSeq: 0 };

// -- the API client ----------------------------------------------------------------------------

class ApiError extends Error {
  constructor(status, body) {
    super((body && body.detail) || `HTTP ${status}`);
    this.status = status;
    this.field = body ? body.field : null;
    this.errors = (body && body.errors) || null;
  }
}

async function api(method, path, body) {
  const options = { method, headers: {} };
  if (body !== undefined) {
    options.headers["Content-Type"] = "application/json";
    options.body = JSON.stringify(body);
  }
  let response;
  try {
    response = await fetch(path, options);
  } catch (err) {
    throw new ApiError(0, { detail: `The server cannot be reached (${err.message}). Is actpatch serve still running?` });
  }
  let data = null;
  try {
    data = await response.json();
  } catch (err) {
    data = { detail: `The server answered ${response.status} without JSON.` };
  }
  if (!response.ok) throw new ApiError(response.status, data);
  return data;
}

// -- small helpers -----------------------------------------------------------------------------

function el(tag, props = {}, children = []) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (key === "text") node.textContent = value;
    else if (key === "class") node.className = value;
    else if (key === "title") node.title = value;
    else node.setAttribute(key, value);
  }
  for (const child of children) node.append(child);
  return node;
}

// A token as the user should see it: spaces and newlines made visible, always as text.
function showToken(token) {
  return token.replace(/ /g, "␣").replace(/\n/g, "↵").replace(/\t/g, "⇥") || "∅";
}

// For Plotly labels, which read a little HTML: escape so a token is always shown as text.
function escapePlotly(text) {
  return text.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;").replace(/"/g, "&quot;");
}

function formatProb(p) {
  if (p === null || p === undefined) return "–";
  if (p === 0) return "0";
  if (p < 1e-4) return p.toExponential(2);
  return `${(p * 100).toFixed(p < 0.01 ? 3 : 2)}%`;
}

function formatNumber(x, digits = 4) {
  if (x === null || x === undefined || Number.isNaN(x)) return "–";
  if (x !== 0 && Math.abs(x) < 1e-3) return x.toExponential(2);
  return Number(x.toPrecision(digits)).toString();
}

function show(node, visible) {
  node.classList.toggle("hidden", !visible);
}

function currentModel() {
  const name = $("model").value || server.default;
  return server.models.find((m) => m.name === name) || server.models[0];
}

function componentAxes() {
  const comp = server.components[$("component").value];
  return comp ? comp.axes : ["layer", "head"];
}

// -- the experiment state and the URL ----------------------------------------------------------

function readState() {
  const state = {};
  for (const f of [...TEXT_FIELDS, ...CHOICE_FIELDS]) state[f] = $(f).value;
  for (const f of INDEX_FIELDS) state[f] = $(f).value === "" ? null : Number($(f).value);
  state.model = $("model").value || null;
  return state;
}

function writeState(state) {
  for (const f of [...TEXT_FIELDS, ...CHOICE_FIELDS]) {
    if (state[f] !== undefined && state[f] !== null) $(f).value = state[f];
  }
  for (const f of INDEX_FIELDS) {
    if (state[f] !== undefined && state[f] !== null) $(f).value = state[f];
  }
  if (state.model) $("model").value = state.model;
  updateIndexInputs();
}

// The experiment's request body (the optional fields only when they are set).
function experimentBody(state) {
  const body = {
    clean_prompt: state.clean_prompt,
    corrupt_prompt: state.corrupt_prompt,
    target_token: state.target_token,
    component: state.component,
    direction: state.direction,
  };
  if (state.wrong_token !== "") body.wrong_token = state.wrong_token;
  if (state.metric) body.metric = state.metric;
  if (state.model) body.model = state.model;
  return body;
}

function saveUrl() {
  const state = readState();
  const params = new URLSearchParams();
  for (const key of URL_KEYS) {
    let value = state[key];
    if (key === "sweep") value = view.sweep && !view.sweepStale ? "1" : null;
    if (key === "view") value = $("view").value !== "normalized" ? $("view").value : null;
    if (key === "slice") value = view.sweep && isThreeAxis(view.sweep) ? $("slice").value : null;
    if (key === "model" && value === server.default) value = null;
    if (key === "ablate" && !value) value = null;
    if (value === null || value === undefined || value === "") continue;
    if (key === "pos" && !componentAxes().includes("pos")) continue;
    if (key === "head" && !componentAxes().includes("head")) continue;
    params.set(key, String(value));
  }
  if (window.attributionUrl) window.attributionUrl(params); // attribution.js adds its own
  history.replaceState(null, "", `${location.pathname}?${params.toString()}`);
}

function stateFromUrl() {
  const params = new URLSearchParams(location.search);
  if (!params.has("clean_prompt")) return null;
  const state = {};
  for (const key of URL_KEYS) if (params.has(key)) state[key] = params.get(key);
  for (const f of INDEX_FIELDS) if (state[f] !== undefined) state[f] = Number(state[f]);
  for (const f of TEXT_FIELDS) if (state[f] === undefined) state[f] = "";
  return state;
}

// -- field messages ------------------------------------------------------------------------------

function clearFieldErrors() {
  document.querySelectorAll(".field-msg.error").forEach((node) => {
    node.textContent = "";
    node.classList.remove("error");
  });
  document.querySelectorAll(".invalid").forEach((node) => node.classList.remove("invalid"));
}

// Show an API error: under the field at fault (if the page has it), and in the result box.
function showApiError(box, err) {
  clearFieldErrors();
  const fields = err.errors ? err.errors.map((e) => e.field) : [err.field];
  for (const field of fields) {
    if (!field) continue;
    const input = $(field);
    if (input) input.classList.add("invalid");
    const msg = document.querySelector(`.field-msg[data-for="${field}"]`);
    if (msg) {
      const entry = err.errors ? err.errors.find((e) => e.field === field) : null;
      msg.textContent = entry ? entry.message : err.message;
      msg.classList.add("error");
    }
  }
  box.textContent = "";
  box.dataset.fields = fields.filter(Boolean).join(" ");
  const prefix = err.field ? `${err.field}: ` : "";
  box.append(el("strong", { text: err.status ? `Error ${err.status}` : "Error" }), el("span", { text: ` ${prefix}${err.message}` }));
  show(box, true);
}

// An error box is about the input that caused it: once that input changes, the box goes.
// (An error that names no field goes with any change of the experiment.)
function clearErrorsFor(field) {
  const msg = document.querySelector(`.field-msg.error[data-for="${field}"]`);
  if (msg) {
    msg.textContent = "";
    msg.classList.remove("error");
  }
  $(field)?.classList.remove("invalid");
  for (const id of ["patch-error", "sweep-error"]) {
    const box = $(id);
    if (box.classList.contains("hidden")) continue;
    const fields = (box.dataset.fields || "").split(" ").filter(Boolean);
    if (fields.length === 0 || fields.includes(field)) show(box, false);
  }
}

// A result's warnings (what makes its numbers doubtful), above the numbers.
function renderWarnings(id, warnings) {
  const box = $(id);
  box.textContent = "";
  for (const w of warnings || []) box.append(el("div", { class: "warning", text: w.message }));
  show(box, Boolean(warnings && warnings.length));
}

// -- live tokenization ---------------------------------------------------------------------------

function scheduleTokenize() {
  clearTimeout(view.tokenizeTimer);
  view.tokenizeTimer = setTimeout(tokenize, 180);
}

async function tokenize() {
  const state = readState();
  const seq = ++view.tokenizeSeq;
  const body = {
    clean_prompt: state.clean_prompt,
    corrupt_prompt: state.corrupt_prompt,
    target_token: state.target_token,
  };
  if (state.wrong_token !== "") body.wrong_token = state.wrong_token;
  if (state.model) body.model = state.model;
  try {
    const data = await api("POST", "/tokenize", body);
    if (seq === view.tokenizeSeq) renderTokens(data);
  } catch (err) {
    if (seq === view.tokenizeSeq) {
      $("tokens").textContent = "";
      $("token-warnings").textContent = err.message;
    }
  }
}

function chip(token, id, pos, kind) {
  const node = el("span", { class: `tok ${kind || ""}`.trim(), text: showToken(token) });
  node.title = `pos ${pos} · id ${id} · ${JSON.stringify(token)}`;
  return node;
}

// Both prompts' tokens in aligned columns: a paired position sits over its counterpart;
// the differing middle of prompts of unequal length sits in one block, marked as unpatched.
function renderTokens(data) {
  const box = $("tokens");
  box.textContent = "";
  const clean = data.clean_prompt;
  const corrupt = data.corrupt_prompt;
  if (!clean || !corrupt) return;
  const pairs = data.alignment.pairs;
  const cleanDiff = new Set(clean.differing);
  const corruptDiff = new Set(corrupt.differing);
  const heads = el("div", { class: "tok-col heads" }, [
    el("span", { class: "tok-pos" }),
    el("span", { class: "row-label", text: "clean" }),
    el("span", { class: "row-label", text: "corrupted" }),
  ]);
  box.append(heads);
  let ci = 0;
  let ki = 0;
  const pushGap = (cEnd, kEnd) => {
    if (ci >= cEnd && ki >= kEnd) return;
    const cleanChips = el("span", { class: "tok-gap" });
    const corruptChips = el("span", { class: "tok-gap" });
    for (; ci < cEnd; ci++) cleanChips.append(chip(clean.tokens[ci], clean.ids[ci], ci, "gap"));
    for (; ki < kEnd; ki++) corruptChips.append(chip(corrupt.tokens[ki], corrupt.ids[ki], ki, "gap"));
    box.append(el("div", { class: "tok-col gap-col" }, [el("span", { class: "tok-pos", text: "–" }), cleanChips, corruptChips]));
  };
  for (const [c, k] of pairs) {
    pushGap(c, k);
    const label = c === k ? String(c) : `${c}/${k}`;
    box.append(
      el("div", { class: "tok-col" }, [
        el("span", { class: "tok-pos", text: label }),
        chip(clean.tokens[c], clean.ids[c], c, cleanDiff.has(c) ? "differ" : ""),
        chip(corrupt.tokens[k], corrupt.ids[k], k, corruptDiff.has(k) ? "differ" : ""),
      ]),
    );
    ci = c + 1;
    ki = k + 1;
  }
  pushGap(clean.tokens.length, corrupt.tokens.length);

  for (const field of ["target_token", "wrong_token"]) {
    const holder = document.querySelector(`.answer-tokens[data-answer="${field}"]`);
    holder.textContent = "";
    const answer = data[field];
    if (!answer) continue;
    answer.tokens.forEach((t, i) => holder.append(chip(t, answer.ids[i], i, answer.single_token ? "answer" : "gap")));
  }
  const warnings = $("token-warnings");
  warnings.textContent = "";
  document.querySelectorAll(".field-msg.warn").forEach((node) => {
    node.textContent = "";
    node.classList.remove("warn");
  });
  for (const w of data.warnings) {
    const msg = document.querySelector(`.field-msg[data-for="${w.field}"]`);
    if (!msg) warnings.append(el("div", { text: w.message }));
    else if (!msg.classList.contains("error")) {
      msg.textContent = w.message;
      msg.classList.add("warn");
    }
  }
  view.nTokens = corrupt.tokens.length;
  const n = `${clean.tokens.length} / ${corrupt.tokens.length} tokens`;
  const aligned = data.alignment.identity ? "same length: aligned position by position" : "different lengths: aligned by common prefix and suffix";
  warnings.append(el("div", { class: "muted small", text: `${n} (BOS included) · ${aligned}` }));
}

// -- the single patch ------------------------------------------------------------------------------

function updateIndexInputs() {
  const axes = componentAxes();
  show($("head-box"), axes.includes("head"));
  show($("pos-box"), axes.includes("pos"));
  // A position-resolved component starts at the final position, where the answer is read.
  if (axes.includes("pos") && $("pos").value === "" && view.nTokens) $("pos").value = view.nTokens - 1;
  const model = currentModel();
  if (model) {
    $("layer").max = model.n_layers - 1;
    $("head").max = model.n_heads - 1;
  }
}

async function runPatch() {
  const state = readState();
  const body = { ...experimentBody(state), layer: state.layer };
  const axes = componentAxes();
  if (axes.includes("head")) body.head = state.head;
  if (axes.includes("pos")) body.pos = state.pos;
  const button = $("run-patch");
  button.disabled = true;
  button.classList.add("busy");
  show($("patch-error"), false);
  saveUrl();
  try {
    const result = await api("POST", "/patch", body);
    document.dispatchEvent(new CustomEvent("actpatch:run"));
    clearFieldErrors();
    renderPatch(result, state);
    highlightCell();
  } catch (err) {
    showApiError($("patch-error"), err);
    $("patch-result").classList.add("stale"); // an older result: keep it, but dimmed
  } finally {
    button.disabled = false;
    button.classList.remove("busy");
  }
}

function renderTop(list, items, target) {
  const node = $(list);
  node.textContent = "";
  const max = Math.max(...items.map((t) => t.prob), 1e-12);
  for (const item of items) {
    const bar = el("span", { class: "bar" });
    bar.style.width = `${Math.max(2, (100 * item.prob) / max)}%`;
    const li = el("li", { class: item.token === target ? "is-target" : "" }, [
      el("span", { class: "tok", text: showToken(item.token), title: JSON.stringify(item.token) }),
      el("span", { class: "prob", text: formatProb(item.prob) }),
      bar,
    ]);
    node.append(li);
  }
}

function renderPatch(r, state) {
  show($("patch-empty"), false);
  renderWarnings("patch-warnings", r.warnings);
  show($("patch-result"), true);
  $("patch-result").classList.remove("stale");
  $("clean-prob").textContent = formatProb(r.clean_prob);
  $("corrupt-prob").textContent = formatProb(r.corrupt_prob);
  $("patched-prob").textContent = formatProb(r.patched_prob);
  const recovery = $("recovery");
  recovery.textContent = r.recovery_pct === null ? "undefined" : `${r.recovery_pct.toFixed(1)}%`;
  recovery.title = r.recovery_pct === null ? "The clean and corrupted probabilities are equal." : "Recovery of the target's probability: 100 × (patched − corrupted) / (clean − corrupted) of P(target)";
  recovery.classList.toggle("neg", r.recovery_pct !== null && r.recovery_pct < 0);
  $("clean-rank").textContent = r.clean_rank;
  $("corrupt-rank").textContent = r.corrupt_rank;
  $("patched-rank").textContent = r.patched_rank;
  const target = Array.isArray(state.target_token) ? state.target_token[0] : state.target_token;
  renderTop("top-clean", r.top_clean, target);
  renderTop("top-corrupt", r.top_corrupt, target);
  renderTop("top-patched", r.top_patched, target);
  const where = [`layer ${r.layer}`];
  if (r.head !== null && r.head !== undefined) where.push(`head ${r.head}`);
  if (r.pos !== null && r.pos !== undefined) where.push(`pos ${r.pos}`);
  const metric = $("patch-metric");
  metric.textContent = "";
  metric.append(
    el("b", { text: `${r.component} · ${where.join(" · ")} · ${r.direction}` }),
    el("span", {
      text: ` — ${r.metric}: clean ${formatNumber(r.metric_clean)}, corrupted ${formatNumber(r.metric_corrupt)}, patched ${formatNumber(r.metric_patched)}; normalized ${r.metric} ${r.metric_normalized === null ? "undefined" : `${(100 * r.metric_normalized).toFixed(1)}%`} (clean = 100%, corrupted = 0%)`,
    }),
  );
  const note = $("patch-note");
  note.textContent = r.note || "";
  show(note, Boolean(r.note));
  const footer = $("patch-footer");
  footer.textContent = "";
  footer.append(
    el("span", { class: "model-tag", text: `computed on ${r.model} (${r.backend} path)` }),
    el("span", { text: ` · ${(r.seconds * 1000).toFixed(0)} ms on the server${r.cached ? " · clean and corrupted runs reused" : ""}` }),
  );
}

// -- the sweep ---------------------------------------------------------------------------------------

// Plotly.js (4.8 MB, served by this server from the installed `plotly` package) is loaded on
// the first sweep, so the page itself opens at once.
let plotlyLoading = null;
function loadPlotly() {
  if (window.Plotly) return Promise.resolve(window.Plotly);
  if (!plotlyLoading) {
    plotlyLoading = new Promise((resolve, reject) => {
      const script = el("script", { src: "/vendor/plotly.min.js" });
      script.onload = () => resolve(window.Plotly);
      script.onerror = () => {
        plotlyLoading = null;
        reject(new Error("Plotly.js could not be loaded from this server (/vendor/plotly.min.js)."));
      };
      document.head.append(script);
    });
  }
  return plotlyLoading;
}

function isThreeAxis(result) {
  return result.axes.length === 3;
}

async function runSweep() {
  if (view.job) return;
  const state = readState();
  let body = experimentBody(state);
  const dataset = $("dataset").value.trim();
  if (dataset) {
    // A dataset replaces the prompts: its pairs, averaged, with an interval per cell.
    body = { dataset, component: body.component, direction: body.direction, positions: "auto" };
    if (state.metric) body.metric = state.metric;
    if (state.model) body.model = state.model;
  }
  if (state.ablate) {
    body.ablate = state.ablate; // ablations act on the clean run: no direction
    delete body.direction;
  }
  show($("sweep-error"), false);
  $("sweep-error").classList.remove("info");
  $("run-sweep").disabled = true;
  setProgress(0, 0);
  show($("sweep-progress"), true);
  loadPlotly().catch(() => {}); // in parallel with the sweep; renderSweep reports a failure
  try {
    const job = await api("POST", "/sweep/jobs", body);
    clearFieldErrors();
    view.job = job.id;
    pollSweep();
  } catch (err) {
    endSweep();
    showApiError($("sweep-error"), err);
  }
}

function setProgress(done, total) {
  $("sweep-fill").style.width = total ? `${(100 * done) / total}%` : "0%";
  $("sweep-count").textContent = total ? `${done} / ${total} cells` : "starting…";
}

async function pollSweep() {
  if (!view.job) return;
  let job;
  try {
    job = await api("GET", `/sweep/jobs/${view.job}`);
  } catch (err) {
    endSweep();
    showApiError($("sweep-error"), err);
    return;
  }
  setProgress(job.done, job.total);
  if (job.partial && job.partial !== view.lastPartial) {
    // The heatmap fills in while the sweep computes (unfinished cells are empty).
    view.lastPartial = job.partial;
    view.sweep = job.partial;
    view.sweepStale = false;
    renderSweep().catch(() => {});
  }
  if (job.status === "queued" || job.status === "running") {
    view.polling = setTimeout(pollSweep, 150);
    return;
  }
  endSweep();
  if (job.status === "done") {
    view.sweep = job.result;
    view.sweepStale = false;
    try {
      await renderSweep();
    } catch (err) {
      showApiError($("sweep-error"), new ApiError(0, { detail: err.message }));
    }
    saveUrl();
    document.dispatchEvent(new CustomEvent("actpatch:run"));
  } else {
    const err = new ApiError(job.status === "cancelled" ? 409 : 422, job.error);
    if (job.status === "cancelled") {
      const box = $("sweep-error");
      box.textContent = job.error ? job.error.detail : "The sweep was cancelled.";
      box.classList.add("info");
      show(box, true);
    } else {
      showApiError($("sweep-error"), err);
    }
  }
}

function endSweep() {
  clearTimeout(view.polling);
  view.job = null;
  $("run-sweep").disabled = false;
  show($("sweep-progress"), false);
}

async function cancelSweep() {
  if (!view.job) return;
  $("sweep-count").textContent = "cancelling…";
  try {
    await api("DELETE", `/sweep/jobs/${view.job}`);
  } catch (err) {
    // The job may have just finished; the next poll says so.
  }
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

async function renderSweep() {
  const result = view.sweep;
  if (!result) return;
  await loadPlotly();
  show($("sweep-empty"), false);
  show($("heatmap"), true);
  const three = isThreeAxis(result);
  show($("slice-box"), three);
  if (three && $("slice").options.length !== result.raw[0][0].length) {
    const slice = $("slice");
    slice.textContent = "";
    for (let h = 0; h < result.raw[0][0].length; h++) slice.append(el("option", { value: String(h), text: `H${h}` }));
  }
  if (three && view.pendingSlice !== undefined) {
    $("slice").value = view.pendingSlice;
    delete view.pendingSlice;
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
      const where = result.axes[1] === "head" ? `L${l} H${x}` : `L${l} · pos ${labels.text[x]}${three ? ` · H${$("slice").value}` : ""}`;
      const value = normGrid === null ? (rawGrid === null ? "not patched (no counterpart in the other prompt)" : "normalized undefined") : `normalized ${escapePlotly(result.metric)} ${formatNumber(normGrid, 3)} (${(100 * normGrid).toFixed(1)}% of the clean − corrupted gap)`;
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
    colorbar: { title: { text: which === "raw" ? escapePlotly(result.metric) : `normalized ${escapePlotly(result.metric)}`, side: "right" }, thickness: 12, len: 0.9 },
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
    // GPT-2 small's known head roles (Wang et al. 2022), from circuit.js; none for other models
    annotations: window.actpatchCircuit ? window.actpatchCircuit.headAnnotations(result) : [],
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
  return `${pairs}<br>normalized ${formatNumber(mean, 3)} ± ${formatNumber(half, 2)} · ${Math.round(100 * ci.level)}% interval [${formatNumber(low, 3)}, ${formatNumber(high, 3)}] (bootstrap, ${ci.n_boot} resamples)`;
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
    el("span", { class: "model-tag", text: `computed on ${result.model} (${result.backend} path)` }),
    el("span", {
      text: ` · ${result.component} · ${which === "raw" ? "raw" : "normalized"} ${result.metric} · ${result.direction} · clean ${formatNumber(result.clean)}, corrupted ${formatNumber(result.corrupt)} · ${n} cells in ${result.seconds.toFixed(2)} s · blue raises the metric, red lowers it${result.n_pairs > 1 ? ` · mean of ${result.n_pairs} pairs${result.ci ? `, ${Math.round(100 * result.ci.level)}% bootstrap intervals` : ""}` : ""}${result.complete === false ? " · still computing…" : ""}`,
    }),
  );
  if (result.note) summary.append(el("div", { class: "note", text: result.note }));
  if (result.ablation) {
    summary.append(el("div", { class: "muted small", text: `${result.ablation}-ablation of each cell in the clean run (1 = nothing lost, 0 = the corrupted run's level) · value: ${result.reference}` }));
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
  top.append(el("span", { class: "muted", text: `Largest effects (${which}): ` }));
  for (const [, v, l, x] of cells.slice(0, 6)) {
    let label = result.axes[1] === "head" ? `L${l}H${x}` : `L${l} pos ${x}`;
    if (isThreeAxis(result)) label += ` H${$("slice").value}`;
    const button = el("button", { type: "button", class: "chip-button", text: `${label} ${formatNumber(v, 2)}` });
    button.addEventListener("click", () => selectCell(l, x));
    top.append(button);
  }
  show(top, cells.length > 0);
}

// Once the experiment changes, the heatmap shown no longer belongs to it: say so.
function markSweepStale() {
  if (!view.sweep || view.sweepStale) return;
  view.sweepStale = true;
  $("sweep-summary").append(el("div", { class: "note stale", text: "The experiment has changed since this sweep: run it again to update the heatmap." }));
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
  view.selected = [layer, x];
  show($("patch-info"), false);
  runPatch();
  if (window.innerWidth < 1100) $("patch-title").scrollIntoView({ behavior: "smooth" });
}

function highlightCell() {
  const node = $("heatmap");
  if (!view.sweep || !node.data || !window.Plotly) return;
  const state = readState();
  const x = view.sweep.axes[1] === "head" ? state.head : state.pos;
  if (state.layer === null || x === null || $("component").value !== view.sweep.component) {
    Plotly.relayout(node, { shapes: [] });
    return;
  }
  Plotly.relayout(node, {
    shapes: [{ type: "rect", x0: x - 0.5, x1: x + 0.5, y0: state.layer - 0.5, y1: state.layer + 0.5, line: { color: "#111827", width: 2.5 } }],
  });
}

// -- start-up ---------------------------------------------------------------------------------------

function renderNotices(notices) {
  const box = $("notices");
  box.textContent = "";
  for (const notice of notices) box.append(el("div", { class: "notice", text: `⚠ ${notice}` }));
}

function renderModelInfo() {
  const model = currentModel();
  if (!model) return;
  const params = model.n_params >= 1e6 ? `${(model.n_params / 1e6).toFixed(0)}M params` : `${model.n_params} params`;
  $("model-info").textContent = `${model.source} · ${model.n_layers} layers × ${model.n_heads} heads · d_model ${model.d_model} · ${params}`;
  $("model-backend").textContent = model.backend ? `${model.backend} path` : "";
  $("model-backend").title = model.backend === "fast" ? "Computed by actpatch's own engine" : "Computed through TransformerLens's TransformerBridge";
  $("model-info").title = model.notes.join("\n");
  updateIndexInputs();
}

// The spec's example is layer 8, head 11 of GPT-2 small. A model without that head gets the head
// that matters most for this example instead: a head sweep (one batched run) finds it, and its
// heatmap is shown, so the first screen shows a real effect rather than an arbitrary head.
function specHeadMissing() {
  const model = currentModel();
  if (!model) return false;
  return Number($("layer").value) >= model.n_layers || Number($("head").value) >= model.n_heads;
}

async function pickHeadThatMatters() {
  const model = currentModel();
  const state = readState();
  const asked = `layer ${state.layer}, head ${state.head}`;
  const info = $("patch-info");
  const body = { ...experimentBody(state), component: "z" };
  let result;
  try {
    result = await api("POST", "/sweep", body);
  } catch (err) {
    // The experiment itself is at fault; the patch below reports it.
    $("layer").value = Math.min(state.layer, model.n_layers - 1);
    $("head").value = Math.min(state.head, model.n_heads - 1);
    return;
  }
  const grid = result.note ? result.raw : result.normalized;
  const unpatched = result.note ? (result.direction === "noising" ? result.clean : result.corrupt) : (result.direction === "noising" ? 1 : 0);
  let best = [0, 0, -1];
  grid.forEach((row, l) => row.forEach((v, h) => {
    if (v !== null && Math.abs(v - unpatched) > best[2]) best = [l, h, Math.abs(v - unpatched)];
  }));
  $("layer").value = best[0];
  $("head").value = best[1];
  info.textContent = `The example's ${asked} is for GPT-2 small; ${model.name} has ${model.n_layers} layers × ${model.n_heads} heads. Layer ${best[0]}, head ${best[1]} is selected instead: patching it moves the metric most on this example (from the head sweep below).`;
  show(info, true);
  view.sweep = result;
  view.sweepStale = false;
  try {
    await renderSweep();
  } catch (err) {
    showApiError($("sweep-error"), new ApiError(0, { detail: err.message }));
  }
}

// Drop-downs list short names; the chosen one's description shows under it (readable at any width).
function updateHints() {
  const comp = server.components[$("component").value];
  $("component-hint").textContent = comp ? comp.description : "";
  const metric = $("metric").value;
  $("metric-hint").textContent = metric ? server.metrics[metric] : "logit_diff with a wrong answer, else prob";
  $("direction-hint").textContent = server.directions[$("direction").value] || "";
}

function fillChoices(data) {
  const component = $("component");
  for (const name of Object.keys(data.components)) component.append(el("option", { value: name, text: name }));
  const metric = $("metric");
  for (const name of Object.keys(data.metrics)) metric.append(el("option", { value: name, text: name }));
  const direction = $("direction");
  for (const name of Object.keys(server.directions)) direction.append(el("option", { value: name, text: name }));
  const select = $("model");
  for (const m of data.models) select.append(el("option", { value: m.name, text: m.name }));
  select.value = data.default;
  select.disabled = data.models.length < 2;
}

function bindEvents() {
  for (const f of TEXT_FIELDS) {
    $(f).addEventListener("input", () => {
      clearErrorsFor(f);
      markSweepStale();
      scheduleTokenize();
      saveUrl();
    });
  }
  for (const f of [...CHOICE_FIELDS, ...INDEX_FIELDS]) {
    $(f).addEventListener("change", () => {
      clearErrorsFor(f);
      updateHints();
      if (INDEX_FIELDS.includes(f)) show($("patch-info"), false);
      if (CHOICE_FIELDS.includes(f)) markSweepStale();
      updateIndexInputs();
      saveUrl();
    });
  }
  $("model").addEventListener("change", () => {
    clearErrorsFor("model");
    markSweepStale();
    renderModelInfo();
    scheduleTokenize();
    saveUrl();
  });
  for (const button of document.querySelectorAll("[data-example]")) {
    button.addEventListener("click", async () => {
      writeState(EXAMPLES[button.dataset.example]);
      markSweepStale();
      clearFieldErrors();
      for (const id of ["patch-error", "sweep-error"]) show($(id), false);
      updateHints();
      scheduleTokenize();
      show($("patch-info"), false);
      if (specHeadMissing()) await pickHeadThatMatters();
      saveUrl();
    });
  }
  $("experiment-form").addEventListener("submit", (event) => {
    event.preventDefault();
    runPatch();
  });
  for (const f of ["layer", "head", "pos"]) {
    $(f).addEventListener("keydown", (event) => {
      if (event.key === "Enter") runPatch();
    });
  }
  $("run-patch").addEventListener("click", runPatch);
  $("run-sweep").addEventListener("click", runSweep);
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
  $("dataset").addEventListener("input", () => {
    clearErrorsFor("dataset");
    markSweepStale();
  });
  $("copy-link").addEventListener("click", async () => {
    saveUrl();
    const button = $("copy-link");
    try {
      await navigator.clipboard.writeText(location.href);
      button.textContent = "Link copied";
    } catch (err) {
      window.prompt("Copy this link:", location.href);
    }
    setTimeout(() => (button.textContent = "Copy link"), 1500);
  });
}

async function start() {
  bindEvents();
  let data;
  try {
    data = await api("GET", "/models");
  } catch (err) {
    renderNotices([`Cannot read this server's models: ${err.message}`]);
    return;
  }
  server.models = data.models;
  server.default = data.default;
  server.components = data.components;
  server.metrics = data.metrics;
  server.directions = data.direction_descriptions || Object.fromEntries(data.directions.map((d) => [d, ""]));
  fillChoices(data);
  renderNotices(data.notices);
  const fromUrl = stateFromUrl();
  writeState(fromUrl || EXAMPLES.factual);
  if (fromUrl && fromUrl.view) $("view").value = fromUrl.view;
  renderModelInfo();
  updateHints();
  tokenize();
  if (!fromUrl && specHeadMissing()) await pickHeadThatMatters();
  if (!fromUrl) await runPatch();
  document.body.dataset.ready = "1";
  if (fromUrl) {
    // A link reproduces its experiment: the patch, and the sweep if one was shown.
    await runPatch();
    if (fromUrl.sweep === "1") {
      if (fromUrl.slice !== undefined) view.pendingSlice = fromUrl.slice;
      await runSweep();
    }
  }
}

// What history.js (the history panel) uses: show a stored result without recomputing it.
window.actpatchPage = {
  api,
  el,
  show,
  loadPlotly,
  escapePlotly,
  formatNumber,
  DIVERGING,
  async showSweep(result) {
    view.sweep = result;
    view.sweepStale = false;
    $("component").value = result.component;
    updateIndexInputs();
    await renderSweep();
  },
  showPatch(result, request) {
    renderPatch(result, { target_token: request.target_token || "" });
  },
};

document.addEventListener("DOMContentLoaded", start);
