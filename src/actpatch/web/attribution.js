// The Attribution card: attribution patching (AtP, AtP*) beside exact patching.
//
// Runs POST /attribute/jobs on the experiment of the form above (prompts, answers, component,
// metric, direction), follows its progress, and draws the estimate's heatmap, the exact sweep's
// heatmap and a scatter of one against the other (when "compare" is on), the top cells and the
// cells AtP* corrects. Strings from the server are shown as text, or escaped for Plotly. The
// result is tied to the request that made it (stale.js): change an input and it greys.

import { cancelJob, renderWarnings, runJob, showPageError } from "./api.js";
import { $, el, fillSelect, formatNumber, headName, show, showToken, modelTag } from "./dom.js";
import { addUrlPart, experimentBody, readState, saveUrl, updateIndexInputs } from "./experiment.js";
import { runPatch } from "./patch.js";
import { DIVERGING, escapePlotly, loadPlotly } from "./plots.js";
import { madeFrom, tieResults } from "./stale.js";
import { noBehaviour, server } from "./state.js";

const JOBS = "/attribute/jobs";
// The page's names for the server's methods (GET /models's options.attribution_method).
const METHOD_LABELS = { atp: "AtP", "atp*": "AtP* (QK fix, GradDrop)" };
const METHOD_NAMES = { atp: "AtP", "atp*": "AtP*" };
const attr = { job: null, result: null };

function attrMethodName(method) {
  return METHOD_NAMES[method] || method;
}

// A cell as people read it: L3H4, L3 pos 5, or L3H4 pos 5.
function attrCellLabel(axes, cell) {
  const at = (axis) => (axes.includes(axis) ? cell[axes.indexOf(axis)] : null);
  const pos = at("pos");
  return `${headName(at("layer"), at("head"))}${pos === null ? "" : ` pos ${pos}`}`;
}

// A metric change as % of the clean − corrupted gap (when defined), else in raw units.
function attrEffect(result, value) {
  if (value === null || value === undefined) return "–";
  const gap = result.clean - result.corrupt;
  if (result.note || !gap) return formatNumber(value, 3);
  return `${((100 * value) / gap).toFixed(1)}%`;
}

// The /attribute request the form asks for now.
function attrBody() {
  const body = experimentBody(readState());
  body.method = $("attr-method").value;
  body.compare = $("attr-compare").checked;
  const verify = Number($("attr-verify").value || 0);
  if (verify > 0) body.verify = verify;
  return body;
}

// -- the job ------------------------------------------------------------------------------------

async function runAttribution() {
  if (attr.job) return;
  const body = attrBody();
  show($("attr-error"), false);
  $("attr-error").classList.remove("info");
  $("run-attribution").disabled = true;
  attrProgress(0, 0);
  show($("attr-progress"), true);
  loadPlotly().catch(() => {});
  const result = await runJob(JOBS, body, {
    box: $("attr-error"),
    what: "attribution",
    started(id) {
      attr.job = id;
      saveUrl();
    },
    progress: (job) => attrProgress(job.done, job.total),
    ended() {
      attr.job = null;
      $("run-attribution").disabled = false;
      show($("attr-progress"), false);
    },
  });
  if (!result) return;
  attr.result = result;
  madeFrom("attribution", body);
  try {
    await renderAttribution();
  } catch (err) {
    showPageError($("attr-error"), err);
  }
}

function attrProgress(done, total) {
  $("attr-fill").style.width = total ? `${(100 * done) / total}%` : "0%";
  $("attr-count").textContent = total ? `${done} / ${total} steps` : "starting…";
}

async function cancelAttribution() {
  if (!attr.job) return;
  $("attr-count").textContent = "cancelling…";
  await cancelJob(JOBS, attr.job);
}

// -- drawing ------------------------------------------------------------------------------------

// A (layer, x) matrix of a grid, in % of the gap when defined; (layer, pos, head) at one head.
function attrMatrix(result, grid) {
  const gap = result.clean - result.corrupt;
  const pct = !result.note && gap;
  let rows = grid;
  if (result.axes.length === 3) {
    const h = Number($("attr-slice").value || 0);
    rows = grid.map((row) => row.map((cell) => cell[h]));
  }
  return rows.map((row) => row.map((v) => (v === null ? null : pct ? (100 * v) / gap : v)));
}

function attrXLabels(result, n) {
  if (result.axes[1] === "head") return Array.from({ length: n }, (_, i) => `H${i}`);
  const unpatched = new Set(result.unpatched_positions);
  return result.tokens.map((t, i) => `${i} ${escapePlotly(showToken(t))}${unpatched.has(i) ? " ✕" : ""}`);
}

function drawAttrHeatmap(node, result, matrix, limit, what) {
  const nLayers = matrix.length;
  const nX = matrix[0].length;
  const labels = attrXLabels(result, nX);
  const unit = !result.note && result.clean !== result.corrupt ? "% of clean − corrupted" : `change in ${escapePlotly(result.metric)}`;
  const custom = matrix.map((row, l) =>
    row.map((v, x) => {
      const where = result.axes[1] === "head" ? headName(l, x) : `${headName(l, result.axes.length === 3 ? $("attr-slice").value : null)} · pos ${labels[x]}`;
      return [where, v === null ? "not patched" : `${formatNumber(v, 3)} ${unit}`];
    }),
  );
  const trace = {
    type: "heatmap",
    z: matrix,
    x: Array.from({ length: nX }, (_, i) => i),
    y: Array.from({ length: nLayers }, (_, i) => i),
    customdata: custom,
    colorscale: DIVERGING,
    zmid: 0,
    zmin: -limit,
    zmax: limit,
    xgap: 1,
    ygap: 1,
    hoverongaps: false,
    hovertemplate: `${what}<br>%{customdata[0]}<br>%{customdata[1]}<extra></extra>`,
    colorbar: { title: { text: unit, side: "right" }, thickness: 10, len: 0.9 },
  };
  const tokens = result.axes[1] !== "head";
  const layout = {
    margin: { l: 48, r: 8, t: 8, b: tokens ? 110 : 40 },
    height: Math.max(260, Math.min(520, 40 + nLayers * 26 + (tokens ? 110 : 40))),
    xaxis: { tickmode: "array", tickvals: Array.from({ length: nX }, (_, i) => i), ticktext: labels, tickangle: tokens ? -50 : 0, showgrid: false, zeroline: false },
    yaxis: { title: { text: "layer" }, autorange: "reversed", dtick: 1, showgrid: false, zeroline: false },
    plot_bgcolor: "#eef0f3",
    paper_bgcolor: "rgba(0,0,0,0)",
    font: { family: "system-ui, -apple-system, Segoe UI, Roboto, sans-serif", size: 11, color: "#1f2937" },
  };
  window.Plotly.react(node, [trace], layout, { displaylogo: false, responsive: true, modeBarButtonsToRemove: ["lasso2d", "select2d"] });
  if (!node.dataset.bound) {
    node.on("plotly_click", (event) => {
      const point = event.points[0];
      const cell = [point.y, point.x];
      if (attr.result.axes.length === 3) cell.push(Number($("attr-slice").value || 0));
      patchAttrCell(cell);
    });
    node.dataset.bound = "1";
  }
}

// Each cell's estimate against its exact effect; AtP*'s points joined to plain AtP's.
function drawAttrScatter(result) {
  const node = $("attr-scatter");
  const cells = [];
  const walk = (est, exact, atp, index) => {
    if (Array.isArray(est)) {
      est.forEach((e, i) => walk(e, exact[i], atp ? atp[i] : null, [...index, i]));
    } else if (est !== null && exact !== null) {
      cells.push({ cell: index, est, exact, atp });
    }
  };
  walk(result.estimate, result.exact, result.atp, []);
  const labels = cells.map((c) => attrCellLabel(result.axes, c.cell));
  const traces = [];
  const name = attrMethodName(result.method);
  if (result.atp) {
    const moved = cells.filter((c) => Math.abs(c.atp - c.est) > 1e-9);
    traces.push({
      type: "scatter",
      mode: "lines",
      x: moved.flatMap((c) => [c.exact, c.exact, null]),
      y: moved.flatMap((c) => [c.atp, c.est, null]),
      line: { color: "#c7cbd1", width: 1 },
      hoverinfo: "skip",
      name: "AtP → AtP*",
    });
    traces.push({
      type: "scatter",
      mode: "markers",
      x: cells.map((c) => c.exact),
      y: cells.map((c) => c.atp),
      text: labels,
      marker: { color: "#9ca3af", size: 6 },
      name: "AtP",
      hovertemplate: "%{text}<br>exact %{x:.4g}<br>AtP %{y:.4g}<extra></extra>",
    });
  }
  traces.push({
    type: "scatter",
    mode: "markers",
    x: cells.map((c) => c.exact),
    y: cells.map((c) => c.est),
    text: labels,
    customdata: cells.map((c) => c.cell),
    marker: { color: "#2166ac", size: 7 },
    name,
    hovertemplate: `%{text}<br>exact %{x:.4g}<br>${name} %{y:.4g}<extra></extra>`,
  });
  const values = cells.flatMap((c) => [c.est, c.exact, ...(c.atp === null ? [] : [c.atp])]);
  const low = Math.min(...values, 0);
  const high = Math.max(...values, 0);
  traces.push({ type: "scatter", mode: "lines", x: [low, high], y: [low, high], line: { color: "#b2182b", width: 1, dash: "dot" }, name: "estimate = exact", hoverinfo: "skip" });
  const metric = escapePlotly(result.metric);
  const layout = {
    margin: { l: 60, r: 10, t: 10, b: 50 },
    height: 400,
    xaxis: { title: { text: `exact change in ${metric} (patching)` }, zeroline: true },
    yaxis: { title: { text: `estimated change in ${metric}` }, zeroline: true },
    legend: { orientation: "h", y: 1.08 },
    paper_bgcolor: "rgba(0,0,0,0)",
    font: { family: "system-ui, -apple-system, Segoe UI, Roboto, sans-serif", size: 11, color: "#1f2937" },
  };
  window.Plotly.react(node, traces, layout, { displaylogo: false, responsive: true });
  if (!node.dataset.bound) {
    node.on("plotly_click", (event) => {
      const point = event.points.find((p) => p.customdata);
      if (point) patchAttrCell(point.customdata);
    });
    node.dataset.bound = "1";
  }
}

// A clicked cell becomes the single patch above (exact patching of that one cell).
function patchAttrCell(cell) {
  const result = attr.result;
  $("component").value = result.component;
  updateIndexInputs();
  $("layer").value = cell[0];
  result.axes.forEach((axis, i) => {
    if (axis === "head") $("head").value = cell[i];
    if (axis === "pos") $("pos").value = cell[i];
  });
  runPatch();
  if (window.innerWidth < 1100) $("patch-title").scrollIntoView({ behavior: "smooth" });
}

function attrAgreementLine(label, a) {
  const f = (v) => (v === null || v === undefined ? "n/a" : v.toFixed(3));
  return el("div", { class: "agreement" }, [
    el("span", { text: `${label}: Pearson ` }),
    el("b", { text: f(a.pearson) }),
    el("span", { text: " · Spearman " }),
    el("b", { text: f(a.spearman) }),
    el("span", { text: " · sign agreement " }),
    el("b", { text: f(a.sign_agreement) }),
    el("span", { text: ` (${a.sign_cells} cells with an effect) · top-${a.top_k} overlap ` }),
    el("b", { text: f(a.top_k_overlap) }),
    el("span", { text: ` · ${a.cells} cells` }),
  ]);
}

async function renderAttribution() {
  const result = attr.result;
  if (!result) return;
  await loadPlotly();
  show($("attr-empty"), false);
  renderWarnings("attr-warnings", result.warnings);
  const three = result.axes.length === 3;
  show($("attr-slice-box"), three);
  if (three) {
    const heads = result.estimate[0][0].length;
    const slice = $("attr-slice");
    if (slice.options.length !== heads) {
      slice.textContent = "";
      for (let h = 0; h < heads; h++) slice.append(el("option", { value: String(h), text: `H${h}` }));
    }
  }
  const estimate = attrMatrix(result, result.estimate);
  const exact = result.exact ? attrMatrix(result, result.exact) : null;
  let limit = 0;
  for (const grid of [estimate, exact]) {
    if (!grid) continue;
    for (const row of grid) for (const v of row) if (v !== null && Math.abs(v) > limit) limit = Math.abs(v);
  }
  limit = limit || 1;
  const name = attrMethodName(result.method);
  $("attr-estimate-title").textContent = `Estimate (${name})`;
  show($("attr-estimate-title"), true);
  show($("attr-estimate"), true);
  drawAttrHeatmap($("attr-estimate"), result, estimate, limit, `${name} estimate`);
  show($("attr-exact-title"), Boolean(exact));
  show($("attr-exact"), Boolean(exact));
  if (exact) drawAttrHeatmap($("attr-exact"), result, exact, limit, "exact patching");
  show($("attr-scatter"), Boolean(result.exact));
  if (result.exact) drawAttrScatter(result);

  const summary = $("attr-summary");
  summary.textContent = "";
  summary.append(
    modelTag(result),
    el("span", {
      text: ` · ${name} of ${result.component} · ${result.metric} · ${result.direction} · clean ${formatNumber(result.clean)}, corrupted ${formatNumber(result.corrupt)} · ${result.seconds.toFixed(2)} s${result.exact ? " (with the exact sweep)" : ""}`,
    }),
  );
  if (result.note) summary.append(el("div", { class: "note", text: result.note }));
  if (result.agreement) summary.append(attrAgreementLine(`${name} vs exact`, result.agreement));
  if (result.agreement_atp) summary.append(attrAgreementLine("plain AtP vs exact", result.agreement_atp));
  summary.append(el("div", { class: "muted small", text: `Cells are ranked by ${result.score_kind}. Click a cell or a point to patch it exactly.` }));
  show(summary, true);

  // the cells ranked first, with their exact value when known
  const top = $("attr-top");
  top.textContent = "";
  const verified = new Map(result.verified.map((v) => [v.cell.join(","), v.exact]));
  const ranked = [];
  const walk = (score, index) => {
    if (Array.isArray(score)) score.forEach((s, i) => walk(s, [...index, i]));
    else if (score !== null) ranked.push([score, index]);
  };
  walk(result.score, []);
  ranked.sort((a, b) => b[0] - a[0]);
  const pick = (grid, cell) => cell.reduce((g, i) => g[i], grid);
  // Without the behaviour, the cells ranked first are the largest noise: none is announced.
  const absent = noBehaviour(result);
  if (absent) top.append(el("span", { class: "no-behaviour", text: `No behaviour to localize: ${absent} No cell is ranked first for a reason; choose a prompt pair the model gets right.` }));
  else top.append(el("span", { class: "muted", text: "Ranked first: " }));
  for (const [, cell] of absent ? [] : ranked.slice(0, 8)) {
    const key = cell.join(",");
    const known = result.exact ? pick(result.exact, cell) : verified.get(key);
    let text = `${attrCellLabel(result.axes, cell)} ${attrEffect(result, pick(result.estimate, cell))}`;
    if (known !== undefined && known !== null) text += ` (exact ${attrEffect(result, known)}${verified.has(key) && !result.exact ? ", verified" : ""})`;
    const button = el("button", { type: "button", class: "chip-button", text });
    button.addEventListener("click", () => patchAttrCell(cell));
    top.append(button);
  }
  show(top, ranked.length > 0 || Boolean(absent));

  const fixes = $("attr-corrections");
  fixes.textContent = "";
  if (result.corrections && result.corrections.length) {
    fixes.append(el("span", { class: "muted", text: "AtP* corrects most (estimate AtP → AtP*, or ranking |AtP| → GradDrop score): " }));
    const magnitude = (v) => attrEffect({ ...result, clean: Math.abs(result.clean - result.corrupt), corrupt: 0 }, v);
    for (const c of result.corrections.slice(0, 6)) {
      const label = attrCellLabel(result.axes, c.cell);
      let text = Math.abs(c.atp - c.atp_star) > 1e-9
        ? `${label} ${attrEffect(result, c.atp)} → ${attrEffect(result, c.atp_star)}`
        : `${label} rank ${magnitude(Math.abs(c.atp))} → ${magnitude(c.score)}`;
      if (c.exact !== undefined) text += ` (exact ${attrEffect(result, c.exact)})`;
      const button = el("button", { type: "button", class: "chip-button", text });
      button.addEventListener("click", () => patchAttrCell(c.cell));
      fixes.append(button);
    }
  }
  show(fixes, Boolean(result.corrections && result.corrections.length));
}

// -- the URL: a link reproduces the attribution too ---------------------------------------------

function writeUrl(params) {
  if (!attr.result && !attr.job) return;
  params.set("attr", $("attr-method").value);
  if (!$("attr-compare").checked) params.set("attr_compare", "0");
  const verify = Number($("attr-verify").value || 0);
  if (verify > 0) params.set("attr_verify", String(verify));
}

export function bindAttribution() {
  $("run-attribution").addEventListener("click", runAttribution);
  $("cancel-attribution").addEventListener("click", cancelAttribution);
  $("attr-slice").addEventListener("change", renderAttribution);
  addUrlPart(writeUrl);
  tieResults("attribution", {
    parts: ["attr-warnings", "attr-summary", "attr-estimate-title", "attr-estimate", "attr-exact-title", "attr-exact", "attr-scatter", "attr-top", "attr-corrections"],
    request: attrBody,
  });
}

// The method select, from the server's choices (GET /models's options.attribution_method).
export function fillAttributionChoices() {
  fillSelect($("attr-method"), server.options.attribution_method, METHOD_LABELS);
}

// A link that carried an attribution runs it again (once the page has read the experiment).
export function attributionFromUrl() {
  const params = new URLSearchParams(location.search);
  if (!params.has("attr")) return;
  const methods = server.options.attribution_method;
  const method = params.get("attr");
  $("attr-method").value = Object.hasOwn(methods.choices, method) ? method : methods.default;
  $("attr-compare").checked = params.get("attr_compare") !== "0";
  if (params.has("attr_verify")) $("attr-verify").value = params.get("attr_verify");
  runAttribution();
}

// A stored attribution (the history panel), shown as it was computed; its inputs are in the
// form (the method, compare and verify from its request).
export async function showAttribution(result, request = {}) {
  attr.result = result;
  $("component").value = result.component;
  $("attr-method").value = result.method;
  $("attr-compare").checked = Boolean(request.compare ?? result.exact);
  $("attr-verify").value = String(request.verify || 0);
  madeFrom("attribution");
  await renderAttribution();
  $("attribution").scrollIntoView({ behavior: "smooth" });
}
