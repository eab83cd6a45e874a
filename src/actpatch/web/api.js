// The API client: JSON requests, errors shown where the user can act on them, and the one
// function that follows a background job (`POST .../jobs`, then `GET .../jobs/{id}` until it
// ends) for the sweep, the attribution and any other job the page starts.

import { $, el, show } from "./dom.js";

export class ApiError extends Error {
  constructor(status, body) {
    super((body && body.detail) || `HTTP ${status}`);
    this.status = status;
    this.field = body ? body.field : null;
    this.errors = (body && body.errors) || null;
  }
}

export async function api(method, path, body) {
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

// -- errors and warnings -------------------------------------------------------------------------

// One field's message under it, and its red outline, gone (the field was edited).
export function clearFieldError(field) {
  const msg = document.querySelector(`.field-msg.error[data-for="${field}"]`);
  if (msg) {
    msg.textContent = "";
    msg.classList.remove("error");
  }
  $(field)?.classList.remove("invalid");
}

export function clearFieldErrors() {
  document.querySelectorAll(".field-msg.error").forEach((node) => {
    node.textContent = "";
    node.classList.remove("error");
  });
  document.querySelectorAll(".invalid").forEach((node) => node.classList.remove("invalid"));
}

// Show an API error: under the field at fault (if the page has it), and in the result box. An
// error whose every field is one of `beside` (fields whose message sits right beside them, as
// the sweep's Dataset box) is said there only, not a second time in the box.
export function showApiError(box, err, beside = []) {
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
  const besideOnly = fields.length > 0 && fields.every((f) => beside.includes(f) && document.querySelector(`.field-msg[data-for="${f}"]`));
  if (besideOnly) {
    show(box, false);
    return;
  }
  const prefix = err.field ? `${err.field}: ` : "";
  box.append(el("strong", { text: err.status ? `Error ${err.status}` : "Error" }), el("span", { text: ` ${prefix}${err.message}` }));
  show(box, true);
}

// A failure of the page itself (drawing a result), shown like an API error without a status.
export function showPageError(box, err) {
  showApiError(box, new ApiError(0, { detail: err.message }));
}

// A result's warnings (what makes its numbers doubtful), above the numbers.
export function renderWarnings(id, warnings) {
  const box = $(id);
  box.textContent = "";
  for (const w of warnings || []) box.append(el("div", { class: "warning", text: w.message }));
  show(box, Boolean(warnings && warnings.length));
}

// -- background jobs -------------------------------------------------------------------------------

const POLL_MS = 150;

// Follow the job at `url` (`GET /sweep/jobs/{id}`, `GET /attribute/jobs/{id}`, ...) until it
// ends: `onUpdate(job)` sees every answer (its progress, `done` of `total`, any partial result);
// resolves with the last one (status done, failed or cancelled). A failed poll rejects.
export async function pollJob(url, onUpdate) {
  for (;;) {
    const job = await api("GET", url);
    onUpdate(job);
    if (job.status !== "queued" && job.status !== "running") return job;
    await new Promise((resolve) => setTimeout(resolve, POLL_MS));
  }
}

// Start a job (`POST path` with `body`) and follow it to its end. `started(id)` runs once the
// server has accepted it, `progress(job)` with every poll, `ended()` as soon as it is over (also
// when it could not start). A refusal, a failure or a cancellation is shown in `box` (`what`
// names the job: "The sweep was cancelled."), or only beside its field when that is one of
// `beside` (showApiError). Resolves with the finished job's result, or null.
export async function runJob(path, body, { box, what, started, progress, ended, beside = [] }) {
  let job;
  try {
    const accepted = await api("POST", path, body);
    started(accepted.id);
    job = await pollJob(`${path}/${accepted.id}`, progress);
  } catch (err) {
    ended();
    showApiError(box, err, beside);
    return null;
  }
  ended();
  if (job.status === "done") return job.result;
  if (job.status === "cancelled") {
    box.textContent = job.error ? job.error.detail : `The ${what} was cancelled.`;
    box.classList.add("info");
    show(box, true);
  } else {
    showApiError(box, new ApiError(422, job.error), beside);
  }
  return null;
}

// Ask the server to stop a job; the next poll says whether it stopped or had already finished.
export async function cancelJob(path, id) {
  try {
    await api("DELETE", `${path}/${id}`);
  } catch (err) {
    // it may have just finished; the next poll says so
  }
}
