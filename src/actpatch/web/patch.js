// The single patch: one cell (layer, and head or position) patched, its probabilities,
// recovery, ranks and top tokens in the three runs. After each patch it says so
// ("actpatch:run" for the history, "actpatch:patched" for the heatmap's outline), and each
// result it shows ("actpatch:patch-shown", for views.js's "Show attention" of a head). The
// numbers shown are tied to the request that made them (stale.js): change an input and they grey.

import { ApiError, api, clearFieldErrors, renderWarnings, showApiError } from "./api.js";
import { $, el, formatNumber, formatProb, headName, show, showToken, modelTag } from "./dom.js";
import { experimentBody, readState, saveUrl } from "./experiment.js";
import { madeFrom, tieResults } from "./stale.js";
import { componentAxes, currentModel } from "./state.js";

// The /patch request the form asks for now: the experiment and the cell.
export function patchRequest(state = readState()) {
  const body = { ...experimentBody(state), layer: state.layer };
  const axes = componentAxes();
  if (axes.includes("head")) body.head = state.head;
  if (axes.includes("pos")) body.pos = state.pos;
  return body;
}

export function bindPatch() {
  tieResults("patch", { parts: ["patch-warnings", "patch-result"], request: patchRequest });
}

// A layer or head box left empty (or holding what is not a number): said here, with the range to
// type, rather than sent as null (the server's answer read "got None"). An empty Pos box is
// refilled with the final position when it changes (experiment.js).
function emptyIndex(body) {
  const model = currentModel();
  const field = ["layer", "head"].find((f) => f in body && body[f] === null);
  if (!field || !model) return null;
  const what = {
    layer: `Layer is empty: type a whole number, 0 to ${model.n_layers - 1}.`,
    head: `Head is empty: type a whole number, 0 to ${model.n_heads - 1}.`,
  };
  return new ApiError(0, { detail: what[field], field });
}

export async function runPatch() {
  const state = readState();
  const body = patchRequest(state);
  const empty = emptyIndex(body);
  if (empty) {
    showApiError($("patch-error"), empty);
    return;
  }
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
    madeFrom("patch", body);
    document.dispatchEvent(new CustomEvent("actpatch:patched"));
  } catch (err) {
    showApiError($("patch-error"), err); // an older result stays, greyed if its inputs changed
  } finally {
    button.disabled = false;
    button.classList.remove("busy");
  }
}

// A stored patch (the history panel), shown as it was computed; its inputs are in the form.
export function showPatch(result, request) {
  renderPatch(result, { target_token: request.target_token || "" });
  madeFrom("patch");
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
  const where = [headName(r.layer, r.head)];
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
    modelTag(r),
    el("span", { text: ` · ${(r.seconds * 1000).toFixed(0)} ms on the server${r.cached ? " · clean and corrupted runs reused" : ""}` }),
  );
  document.dispatchEvent(new CustomEvent("actpatch:patch-shown", { detail: r }));
}
