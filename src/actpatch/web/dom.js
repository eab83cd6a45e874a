// Small helpers for the page's DOM and its numbers. Every string from the server (tokens above
// all) is untrusted: it goes into the page as text (`el`'s "text", textContent), never as HTML.

export const $ = (id) => document.getElementById(id);

// An element with its properties ("text", "class", "title" or any attribute) and children.
export function el(tag, props = {}, children = []) {
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

// A result card's four slots, ids `${prefix}-error`, -warnings, -empty (what the card is for,
// shown until its first result) and -summary: the cards built in JavaScript share them.
export function resultSlots(prefix, emptyText) {
  return [
    el("div", { id: `${prefix}-error`, class: "alert hidden", role: "alert" }),
    el("div", { id: `${prefix}-warnings`, class: "result-warnings hidden", role: "status" }),
    el("div", { id: `${prefix}-empty`, class: "empty" }, [emptyText]),
    el("div", { id: `${prefix}-summary`, class: "summary hidden" }),
  ];
}

export function show(node, visible) {
  node.classList.toggle("hidden", !visible);
}

// A select's options from one of the server's option lists (`GET /models`'s `options`): its
// choices in the server's order, each labelled by `labels` (where the page has a nicer name)
// or by its value, and the server's description as the option's tooltip. An option whose
// default follows the input (default null) gets a first, empty choice labelled `blank`. The
// server's default is selected.
export function fillSelect(select, option, labels = {}, blank = null) {
  select.textContent = "";
  if (option.default === null && blank !== null) {
    select.append(el("option", { value: "", text: blank, title: option.default_when || "" }));
  }
  for (const [value, description] of Object.entries(option.choices)) {
    select.append(el("option", { value, text: labels[value] || value, title: description }));
  }
  select.value = option.default === null ? "" : option.default;
}

// A token as the user should see it: spaces and newlines made visible, always as text.
export function showToken(token) {
  return token.replace(/ /g, "␣").replace(/\n/g, "↵").replace(/\t/g, "⇥") || "∅";
}

export function formatProb(p) {
  if (p === null || p === undefined) return "–";
  if (p === 0) return "0";
  if (p < 1e-4) return p.toExponential(2);
  return `${(p * 100).toFixed(p < 0.01 ? 3 : 2)}%`;
}

export function formatNumber(x, digits = 4) {
  if (x === null || x === undefined || Number.isNaN(x)) return "–";
  if (x !== 0 && Math.abs(x) < 1e-3) return x.toExponential(2);
  return Number(x.toPrecision(digits)).toString();
}

// A head as people read it, in one notation everywhere: L3H4 (a layer alone: L3). The graph's
// edge names keep the engine's a3.h4<v>, since that is how an edge is asked for.
export function headName(layer, head) {
  return head === null || head === undefined ? `L${layer}` : `L${layer}H${head}`;
}

// A normalized value (a fraction: clean = 1, corrupted = 0) as people read it: a percentage.
export function formatPct(fraction, digits = 1) {
  if (fraction === null || fraction === undefined || Number.isNaN(fraction)) return "–";
  return `${(100 * fraction).toFixed(digits)}%`;
}

// "computed on MODEL (BACKEND path, DEVICES)": every result names its model, the path that
// computed it and the devices its weights are on (several with a device map).
export function modelTag(result) {
  const devices = (result.devices || []).join(" + ");
  const where = devices ? `${result.backend} path, ${devices}` : `${result.backend} path`;
  return el("span", { class: "model-tag", text: `computed on ${result.model} (${where})` });
}
