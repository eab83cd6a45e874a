// What the page knows: the server's models and option lists (from `GET /models`), and the
// state of the sweep card shared by the modules that draw, link and reopen it.

import { $ } from "./dom.js";

// Filled once at start-up from `GET /models`: `options` is the engine's every option list
// ({name: {choices: {value: description}, default, default_when}}), the page's selects' source.
export const server = { models: [], default: null, components: {}, options: {} };

// The sweep shown (`sweep`, and whether the experiment changed since: `sweepStale`), and the
// prompts' token count (for the default position).
export const view = { sweep: null, sweepStale: false, nTokens: null };

export function currentModel() {
  const name = $("model").value || server.default;
  return server.models.find((m) => m.name === name) || server.models[0];
}

export function componentAxes() {
  const comp = server.components[$("component").value];
  return comp ? comp.axes : ["layer", "head"];
}

export function isThreeAxis(result) {
  return result.axes.length === 3;
}

// Why a result has no behaviour to localize, or null when it has one: the engine's
// `no_behaviour` warning (the clean run does not show the behaviour, or the clean and corrupted
// runs barely differ in the metric). Without the behaviour, the cell that moves the metric most
// is the largest noise, so the page announces no "best" head or cell.
export function noBehaviour(result) {
  const found = (result.warnings || []).filter((w) => w.code === "no_behaviour");
  if (found.length === 0) return null;
  return found.some((w) => w.field === "corrupt_prompt")
    ? `the clean and corrupted runs barely differ in ${result.metric}.`
    : "the clean run does not show the behaviour (the target is not its top token).";
}
