// Known head roles (GPT-2 small's, Wang et al. 2022, from GET /circuit/roles): on the circuit
// graph's heads and on the head heatmaps. Other models have none.

import { api } from "./api.js";
import { headName } from "./dom.js";
import { server } from "./state.js";

const known = {}; // model name -> { byHead: {"L.H": {layer, head, label, role}}, citation }

export function rememberRoles(model, roles) {
  if (!roles) return;
  const byHead = {};
  for (const h of roles.heads) byHead[`${h.layer}.${h.head}`] = h;
  known[model] = { byHead, citation: roles.citation };
  // the models whose roles are known, for whoever waits on them (the browser tests)
  document.body.dataset.roles = Object.keys(known).join(" ");
}

export async function loadRoles() {
  for (const m of server.models) {
    try {
      rememberRoles(m.name, await api("GET", `/circuit/roles?model=${encodeURIComponent(m.name)}`));
    } catch (err) {
      // no labels for this model
    }
  }
}

export function rolesOf(model) {
  return known[model] || null;
}

// The role of a graph node's head (`a{L}.h{H}`, with or without its `<q>`/`<k>`/`<v>` reader).
export function roleOf(model, name) {
  const roles = known[model];
  if (!roles || name[0] !== "a") return null;
  const [l, h] = name.split("<")[0].slice(1).split(".h").map(Number);
  return roles.byHead[`${l}.${h}`] || null;
}

// Plotly annotations naming the known heads of a (layer, head) heatmap; none for other models.
export function headAnnotations(result) {
  const roles = known[result.model];
  if (!roles || result.axes[1] !== "head" || result.axes.length !== 2) return [];
  return Object.values(roles.byHead).map((h) => ({
    x: h.head,
    y: h.layer,
    text: h.label,
    showarrow: false,
    font: { size: 9, color: "#111827" },
    hovertext: `${headName(h.layer, h.head)}: ${h.role} (${roles.citation})`,
  }));
}
