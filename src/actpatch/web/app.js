// actpatch explorer: the page's entry point (a native ES module; no build step, no CDN).
//
// The modules, in the order data flows: dom.js (elements, formatting), api.js (requests,
// errors, background jobs), state.js (what the server offers, the sweep shown), experiment.js
// (the form, its request body and the URL), tokens.js (live tokenization), then one module per
// card: patch.js, sweep.js, views.js, attribution.js, circuit.js (with roles.js), paths.js (path
// patching), history.js; stale.js greys a card's result once the inputs that made it change.
// This file binds them together and starts the page: it reads `GET /models` (the models, the
// components and every option list the selects are built from), restores a link's experiment,
// and runs the first patch.

import { api, clearFieldErrors, showPageError } from "./api.js";
import { attributionFromUrl, bindAttribution, fillAttributionChoices } from "./attribution.js";
import { buildCircuitCard, fillCircuitChoices } from "./circuit.js";
import { $, el, headName, show } from "./dom.js";
import {
  CHOICE_FIELDS,
  INDEX_FIELDS,
  TEXT_FIELDS,
  clearErrorsFor,
  example,
  experimentBody,
  fillChoices,
  readState,
  saveUrl,
  stateFromUrl,
  updateHints,
  updateIndexInputs,
  writeState,
} from "./experiment.js";
import { bindHistory } from "./history.js";
import { bindPatch, runPatch } from "./patch.js";
import { buildPathCard, pathFromUrl } from "./paths.js";
import { loadRoles } from "./roles.js";
import { bindStale, checkStale } from "./stale.js";
import { currentModel, noBehaviour, server } from "./state.js";
import { bindSweep, runSweep, showSweep } from "./sweep.js";
import { scheduleTokenize, tokenize } from "./tokens.js";
import { bindViews } from "./views.js";

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
  const asked = headName(state.layer, state.head);
  const info = $("patch-info");
  const body = { ...experimentBody(state), component: "z" };
  const nearest = () => {
    $("layer").value = Math.min(state.layer, model.n_layers - 1);
    $("head").value = Math.min(state.head, model.n_heads - 1);
  };
  let result;
  try {
    result = await api("POST", "/sweep", body);
  } catch (err) {
    nearest(); // The experiment itself is at fault; the patch below reports it.
    return;
  }
  const sizes = `${model.name} has ${model.n_layers} layers × ${model.n_heads} heads`;
  const absent = noBehaviour(result);
  if (absent) {
    // No behaviour, no head that matters: the largest effect would be the largest noise.
    nearest();
    info.textContent = `The example's ${asked} is for GPT-2 small; ${sizes}. On ${model.name} this example shows no behaviour to localize: ${absent} So no head is picked from the sweep below; ${headName($("layer").value, $("head").value)}, the nearest that exists, is selected.`;
    show(info, true);
    await showSweepOrSay(result);
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
  info.textContent = `The example's ${asked} is for GPT-2 small; ${sizes}. ${headName(best[0], best[1])} is selected instead: patching it moves the metric most on this example (from the head sweep below).`;
  show(info, true);
  await showSweepOrSay(result);
}

// The start-up's head sweep, in the sweep card (its request is the form's: component z).
async function showSweepOrSay(result) {
  try {
    await showSweep(result);
  } catch (err) {
    showPageError($("sweep-error"), err);
  }
}

// The experiment form's own events; each card binds its own controls.
function bindEvents() {
  for (const f of TEXT_FIELDS) {
    $(f).addEventListener("input", () => {
      clearErrorsFor(f);
      checkStale();
      scheduleTokenize();
      saveUrl();
    });
  }
  for (const f of [...CHOICE_FIELDS, ...INDEX_FIELDS]) {
    $(f).addEventListener("change", () => {
      clearErrorsFor(f);
      updateHints();
      if (INDEX_FIELDS.includes(f)) show($("patch-info"), false);
      updateIndexInputs();
      checkStale();
      saveUrl();
    });
  }
  $("model").addEventListener("change", () => {
    clearErrorsFor("model");
    renderModelInfo();
    checkStale();
    scheduleTokenize();
    saveUrl();
  });
  for (const button of document.querySelectorAll("[data-example]")) {
    button.addEventListener("click", async () => {
      writeState(example(button.dataset.example));
      checkStale(); // every result shown came from the previous inputs
      clearFieldErrors();
      for (const id of ["patch-error", "sweep-error"]) show($(id), false);
      updateHints();
      scheduleTokenize();
      show($("patch-info"), false);
      if (specHeadMissing()) {
        // As at start-up: the head the example's sweep picked is patched on its prompts, so the
        // patch card shows the example's own patch rather than the previous one, greyed.
        await pickHeadThatMatters();
        await runPatch();
      }
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
  $("dataset").addEventListener("input", () => {
    clearErrorsFor("dataset");
    checkStale();
    saveUrl();
  });
  $("dataset").addEventListener("keydown", (event) => {
    if (event.key === "Enter") runSweep(); // a dataset is swept, as Enter in a cell's box patches
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
  bindStale();
  bindPatch();
  bindSweep();
  bindAttribution();
  buildCircuitCard();
  buildPathCard();
  bindHistory();
  bindViews();
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
  server.options = data.options;
  fillChoices(data);
  fillAttributionChoices();
  fillCircuitChoices();
  loadRoles(); // GPT-2 small's head roles, for the heatmaps and the graph (in the background)
  renderNotices(data.notices);
  const fromUrl = stateFromUrl();
  writeState(fromUrl || example("factual"));
  if (fromUrl && fromUrl.view) $("view").value = fromUrl.view;
  if (fromUrl && fromUrl.dataset) $("dataset").value = fromUrl.dataset;
  renderModelInfo();
  updateHints();
  tokenize();
  if (!fromUrl && specHeadMissing()) await pickHeadThatMatters();
  if (!fromUrl) await runPatch();
  document.body.dataset.ready = "1";
  attributionFromUrl(); // a link's attribution runs beside its patch and sweep
  pathFromUrl(); // and its path patching
  if (fromUrl) {
    // A link reproduces its experiment: the patch, and the sweep if one was shown.
    await runPatch();
    if (fromUrl.sweep === "1") await runSweep({ slice: fromUrl.slice });
  }
}

start();
