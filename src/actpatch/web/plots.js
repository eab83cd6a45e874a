// What the heatmaps share: Plotly.js, loaded on demand from this server, a colour scale, and
// escaping (Plotly's labels read a little HTML; a token must always show as text).

import { el } from "./dom.js";

// ColorBrewer's RdBu, white at 0: red where a patch hurts, blue where it restores.
export const DIVERGING = [
  [0, "#67001f"], [0.1, "#b2182b"], [0.2, "#d6604d"], [0.3, "#f4a582"], [0.4, "#fddbc7"],
  [0.5, "#f7f7f7"], [0.6, "#d1e5f0"], [0.7, "#92c5de"], [0.8, "#4393c3"], [0.9, "#2166ac"], [1, "#053061"],
];

export function escapePlotly(text) {
  return text.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;").replace(/"/g, "&#34;");
}

// Plotly.js (4.8 MB, served by this server from the installed `plotly` package) is loaded on
// the first plot, so the page itself opens at once. It is a classic script: it sets
// `window.Plotly`, which every plotting module reads through this promise.
let plotlyLoading = null;
export function loadPlotly() {
  if (window.Plotly) return Promise.resolve(window.Plotly);
  if (!plotlyLoading) {
    plotlyLoading = new Promise((resolve, reject) => {
      const script = el("script", { src: "/vendor/plotly.min.js" });
      script.onload = () => resolve(window.Plotly);
      script.onerror = () => {
        plotlyLoading = null;
        reject(new Error("Plotly.js could not be loaded from this server (/vendor/plotly.min.js)."));
      };
      document.head.append(script);
    });
  }
  return plotlyLoading;
}
