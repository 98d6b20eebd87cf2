"use strict";
// Shared state and helpers of the live view (no framework, no network beyond this server).
const S = {
  run: null, runs: [], nodes: new Map(), maxUpdated: 0, version: -1, cells: [],
  best: null, ancestry: new Set(), elites: new Set(), selected: null, tab: "tree",
};

async function getJSON(path) {
  const response = await fetch(path, { cache: "no-store" });
  if (!response.ok) throw new Error(path + ": " + response.status);
  return response.json();
}

function esc(text) {
  return String(text ?? "").replace(/[&<>"']/g, c => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c]));
}

// Markup is built only by html``, which escapes every value put into it unless that value
// is markup itself (or a list of markup): archive text can never become an element.
class Markup { constructor(text) { this.text = text; } }

function html(strings, ...values) {
  return new Markup(strings.reduce((out, s, i) => out + piece(values[i - 1]) + s));
}

function piece(value) {
  if (value instanceof Markup) return value.text;
  if (Array.isArray(value)) return value.map(piece).join("");
  return esc(value);
}

function render(el, markup) {  // the page's only innerHTML write
  if (!(markup instanceof Markup)) throw new TypeError("render() takes html`` markup");
  el.innerHTML = markup.text;
}

function runApi(path) { return `/api/runs/${encodeURIComponent(S.run)}/${path}`; }

const RAMP = [[68, 1, 84], [59, 82, 139], [33, 145, 140], [94, 201, 98], [253, 231, 37]];
function ramp(t) {  // viridis-like colour for t in [0, 1]
  t = Math.max(0, Math.min(1, isFinite(t) ? t : 0)) * (RAMP.length - 1);
  const i = Math.min(Math.floor(t), RAMP.length - 2), f = t - i;
  const c = RAMP[i].map((v, k) => Math.round(v + (RAMP[i + 1][k] - v) * f));
  return `rgb(${c[0]},${c[1]},${c[2]})`;
}

function fmt(x) {  // a value as short text, not markup: put it into html``
  if (x === null || x === undefined) return "–";
  if (typeof x !== "number") return String(x);
  return Math.abs(x) >= 1e5 || (Math.abs(x) < 1e-3 && x !== 0) ? x.toExponential(3) : +x.toPrecision(6) + "";
}

function currentRun() { return S.runs.find(r => r.id === S.run) || { axes: {}, maximize: true }; }

function better(a, b) {  // is score a better than b under the run's direction
  if (b === null || b === undefined) return true;
  return currentRun().maximize ? a > b : a < b;
}
