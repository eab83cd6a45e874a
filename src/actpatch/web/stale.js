// Results tied to the inputs that made them. A number on the page is only true of the request
// that computed it: once an input that request read has changed (a prompt typed, an example
// clicked, a layer set, another model chosen), the card still shows the old result, greyed,
// under a note that says so ("from the previous inputs — run again"), and which inputs changed.
//
// Each card registers once (`tieResults`): the elements its result fills, and `request()`, the
// request it would send now (the same function its Run button sends, so nothing can be left
// out). When it draws a result it records the request that made it (`madeFrom`); `checkStale`
// compares, after every change of an input, and greys or ungreys each card.

import { $, el, show } from "./dom.js";

const cards = new Map(); // name -> { parts, request, made, note, onChange }

// Register a card: `parts` are the ids of the elements its result fills (greyed when stale; the
// note goes before the first), `request()` the request it would send now, `onChange(stale)`
// is told whenever its state flips.
export function tieResults(name, { parts, request, onChange = () => {} }) {
  const note = el("div", { class: "stale-note hidden", role: "status", "data-card": name });
  $(parts[0]).before(note);
  cards.set(name, { parts, request, made: null, note, onChange, stale: false });
}

// The card now shows the result of `request` (by default, the request it would send now: a
// reopened run whose inputs were just put back into the form).
export function madeFrom(name, request) {
  const card = cards.get(name);
  card.made = normalize(request === undefined ? card.request() : request);
  check(card);
}

// Which of the request's fields differ between what made the shown result and the form now.
function changedFields(card) {
  if (card.made === null) return [];
  const now = normalize(card.request());
  const keys = new Set([...Object.keys(now), ...Object.keys(card.made)]);
  return [...keys].filter((k) => JSON.stringify(now[k]) !== JSON.stringify(card.made[k]));
}

// Grey or ungrey every card whose inputs changed (or changed back); then say so
// ("actpatch:inputs", for a card that keeps its own note: views.js), also when the form was
// written by the page itself (an example, a reopened run), which fires no input event.
export function checkStale() {
  for (const card of cards.values()) check(card);
  document.dispatchEvent(new CustomEvent("actpatch:inputs"));
}

export function isStale(name) {
  return cards.get(name).stale;
}

function check(card) {
  const changed = changedFields(card);
  const stale = changed.length > 0;
  for (const id of card.parts) $(id).classList.toggle("stale-result", stale);
  card.note.textContent = stale
    ? `From the previous inputs — run again to update (changed: ${changed.map(label).join(", ")}).`
    : "";
  show(card.note, stale);
  if (stale !== card.stale) {
    card.stale = stale;
    card.onChange(stale);
  }
}

// A field as people read it: "clean prompt", "layer".
function label(field) {
  return field.replace(/_token$/, " answer").replace(/_/g, " ").replace(/^corrupt /, "corrupted ");
}

// Empty and absent fields are the same request.
function normalize(request) {
  const out = {};
  for (const [key, value] of Object.entries(request || {})) {
    if (value === undefined || value === null || value === "") continue;
    out[key] = value;
  }
  return out;
}

// Any change of any input may make a card stale (the cards' own handlers call checkStale too,
// where the order matters: before the URL is written).
export function bindStale() {
  for (const type of ["input", "change"]) document.addEventListener(type, () => checkStale());
}
