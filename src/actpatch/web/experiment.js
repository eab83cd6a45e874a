// The experiment: the form's fields (prompts, answers, component, metric, direction, ablation,
// layer/head/position, model), its request body, its hints, and the URL that reproduces it.

import { clearFieldError } from "./api.js";
import { $, el, fillSelect, show } from "./dom.js";
import { componentAxes, currentModel, isThreeAxis, server, view } from "./state.js";

// The examples' experiments; a field they leave out takes the server's default.
const EXAMPLES = {
  factual: {
    clean_prompt: "Paris is the capital of",
    corrupt_prompt: "Berlin is the capital of",
    target_token: " France",
    wrong_token: "",
    component: "z",
    metric: "",
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
    layer: 9,
    head: 9,
  },
};
export const TEXT_FIELDS = ["clean_prompt", "corrupt_prompt", "target_token", "wrong_token"];
export const CHOICE_FIELDS = ["component", "metric", "direction", "ablate"];
export const INDEX_FIELDS = ["layer", "head", "pos"];
const URL_KEYS = [...TEXT_FIELDS, ...CHOICE_FIELDS, ...INDEX_FIELDS, "model", "dataset", "sweep", "view", "slice"];

// The page's names for the server's choices, where it has nicer ones than the value itself.
const ABLATION_LABELS = { zero: "zero-ablate", mean: "mean-ablate", resample: "resample-ablate" };

export function example(name) {
  return { direction: server.options.direction.default, ...EXAMPLES[name] };
}

export function readState() {
  const state = {};
  for (const f of [...TEXT_FIELDS, ...CHOICE_FIELDS]) state[f] = $(f).value;
  for (const f of INDEX_FIELDS) state[f] = $(f).value === "" ? null : Number($(f).value);
  state.model = $("model").value || null;
  return state;
}

export function writeState(state) {
  for (const f of [...TEXT_FIELDS, ...CHOICE_FIELDS]) {
    if (state[f] !== undefined && state[f] !== null) $(f).value = state[f];
  }
  for (const f of INDEX_FIELDS) {
    if (state[f] !== undefined && state[f] !== null) $(f).value = state[f];
  }
  if (state.model) $("model").value = state.model;
  updateIndexInputs();
}

// The kinds of run that read no metric of the form's: an attention pattern has none, and direct
// logit attribution's follows from the answers (logit_diff with a wrong answer, else logit).
const NO_METRIC = ["attention", "dla"];

// The form as a stored run of `kind` asked for it (the history's "Open"): prompts, answers,
// component, metric, direction, ablation, the patch's cell, the dataset, and the model when
// this server serves it. Only what the run read is put back; the rest of the form stays as it
// is, so a card computed from the same experiment is not greyed for nothing: the cell comes
// from a patch (a view's head is not the patch's), the metric from a run that read one (an
// unset metric is "auto", as it was), the direction from a run that has one (no view, no
// ablation). A list of prompt pairs shows its first pair. Returns what it could not put back
// (more pairs, an uploaded dataset), for the page to say so.
export function restoreForm(request, result, kind) {
  const first = (value) => (Array.isArray(value) ? value[0] : value);
  const lost = [];
  const state = {};
  if (request.clean_prompt !== undefined) {
    for (const f of TEXT_FIELDS) state[f] = first(request[f]) ?? "";
    if (Array.isArray(request.clean_prompt) && request.clean_prompt.length > 1) lost.push(`${request.clean_prompt.length - 1} more prompt pairs`);
  }
  const component = result.component ?? request.component;
  if (component && Object.hasOwn(server.components, component)) state.component = component;
  if (!NO_METRIC.includes(kind)) {
    const metric = request.metric ?? "";
    state.metric = metric === "" || Object.hasOwn(server.options.metric.choices, metric) ? metric : "";
  }
  state.direction = result.direction ?? request.direction; // none: the form's stays
  state.ablate = request.ablate ?? "";
  if (kind === "patch") for (const f of INDEX_FIELDS) state[f] = result[f]; // the patch's cell
  if (server.models.some((m) => m.name === result.model)) state.model = result.model;
  writeState(state);
  $("dataset").value = request.dataset ?? "";
  if (request.dataset_jsonl) lost.push("its uploaded dataset");
  updateHints();
  return lost;
}

// The experiment's request body (the optional fields only when they are set).
export function experimentBody(state) {
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

// The experiment's fields for the cards that take no component (circuits, path patching), with
// the default direction, and the metric where `metricOk` allows it (gradients take no rank).
export function experimentFields(metricOk = () => true) {
  const { component: _, ...body } = experimentBody(readState());
  body.direction = body.direction || server.options.direction.default;
  if (body.metric && !metricOk(body.metric)) delete body.metric;
  return body;
}

// The single patch's inputs follow the component's axes and the model's size.
export function updateIndexInputs() {
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

// -- the URL -------------------------------------------------------------------------------------

// Other cards add their own keys to a link (attribution.js: the method and its settings).
const urlParts = [];
export function addUrlPart(write) {
  urlParts.push(write);
}

export function saveUrl() {
  const state = readState();
  const params = new URLSearchParams();
  for (const key of URL_KEYS) {
    let value = state[key];
    if (key === "sweep") value = view.sweep && !view.sweepStale ? "1" : null;
    if (key === "view") value = $("view").value !== "normalized" ? $("view").value : null;
    if (key === "slice") value = view.sweep && isThreeAxis(view.sweep) ? $("slice").value : null;
    if (key === "model" && value === server.default) value = null;
    if (key === "ablate" && !value) value = null;
    if (key === "dataset") value = $("dataset").value.trim(); // a dataset sweep's link sweeps it again
    if (value === null || value === undefined || value === "") continue;
    if (key === "pos" && !componentAxes().includes("pos")) continue;
    if (key === "head" && !componentAxes().includes("head")) continue;
    params.set(key, String(value));
  }
  for (const write of urlParts) write(params);
  history.replaceState(null, "", `${location.pathname}?${params.toString()}`);
}

export function stateFromUrl() {
  const params = new URLSearchParams(location.search);
  if (!params.has("clean_prompt")) return null;
  const state = {};
  for (const key of URL_KEYS) if (params.has(key)) state[key] = params.get(key);
  for (const f of INDEX_FIELDS) if (state[f] !== undefined) state[f] = Number(state[f]);
  for (const f of TEXT_FIELDS) if (state[f] === undefined) state[f] = "";
  return state;
}

// -- choices and hints ---------------------------------------------------------------------------

// The drop-downs, from `GET /models`: components, and the option lists' choices and defaults.
export function fillChoices(data) {
  const component = $("component");
  for (const name of Object.keys(data.components)) component.append(el("option", { value: name, text: name }));
  fillSelect($("metric"), server.options.metric, {}, "auto");
  fillSelect($("direction"), server.options.direction);
  fillSelect($("ablate"), server.options.ablation, ABLATION_LABELS, "patch");
  const select = $("model");
  for (const m of data.models) select.append(el("option", { value: m.name, text: m.name }));
  select.value = data.default;
  select.disabled = data.models.length < 2;
}

// Drop-downs list short names; the chosen one's description shows under it (readable at any width).
export function updateHints() {
  const comp = server.components[$("component").value];
  $("component-hint").textContent = comp ? comp.description : "";
  const metric = server.options.metric;
  $("metric-hint").textContent = $("metric").value ? metric.choices[$("metric").value] : metric.default_when;
  $("direction-hint").textContent = server.options.direction.choices[$("direction").value] || "";
}

// -- field errors ----------------------------------------------------------------------------------

// An error box is about the input that caused it: once that input changes, the box goes.
// (An error that names no field goes with any change of the experiment.)
export function clearErrorsFor(field) {
  clearFieldError(field);
  for (const id of ["patch-error", "sweep-error"]) {
    const box = $(id);
    if (box.classList.contains("hidden")) continue;
    const fields = (box.dataset.fields || "").split(" ").filter(Boolean);
    if (fields.length === 0 || fields.includes(field)) show(box, false);
  }
}
