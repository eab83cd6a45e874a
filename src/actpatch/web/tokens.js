// Live tokenization: both prompts' tokens in aligned columns as the user types, and the
// answers' tokens, with the engine's warnings under the fields they are about.

import { api } from "./api.js";
import { $, el, showToken } from "./dom.js";
import { readState } from "./experiment.js";
import { view } from "./state.js";

let timer = null;
let seq = 0;

export function scheduleTokenize() {
  clearTimeout(timer);
  timer = setTimeout(tokenize, 180);
}

export async function tokenize() {
  const state = readState();
  const mine = ++seq;
  const body = {
    clean_prompt: state.clean_prompt,
    corrupt_prompt: state.corrupt_prompt,
    target_token: state.target_token,
  };
  if (state.wrong_token !== "") body.wrong_token = state.wrong_token;
  if (state.model) body.model = state.model;
  try {
    const data = await api("POST", "/tokenize", body);
    if (mine === seq) renderTokens(data);
  } catch (err) {
    if (mine === seq) {
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
