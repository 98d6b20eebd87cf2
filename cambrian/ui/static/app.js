"use strict";
// Start-up, the run picker, tabs and the one-second poll of the archive.

async function loadRuns() {
  S.runs = await getJSON("/api/runs");
  const sel = document.getElementById("run");
  const wanted = new URLSearchParams(location.search).get("run");
  const task = r => r.meta.task_dir ? " · " + String(r.meta.task_dir).split("/").pop() : "";
  render(sel, html`${S.runs.map(r => html`<option value="${r.id}">${r.id} · ${r.programs} programs${task(r)}</option>`)}`);
  if (!S.run && S.runs.length) S.run = (S.runs.find(r => r.id === wanted) || S.runs[0]).id;
  if (S.run) sel.value = S.run;
}

function resetRun(id) {
  Object.assign(S, { run: id, nodes: new Map(), maxUpdated: 0, version: -1, cells: [], best: null, selected: null });
  S.ancestry = new Set(); S.elites = new Set(); Tree.fitted = false;
  document.getElementById("acceptance").textContent = "acceptance –";
  render(document.getElementById("detail"), html`<p class="hint">Click a node of the tree (or a grid cell) to open its program.</p>`);
}

function merge(tree) {
  const cols = tree.columns;
  for (const row of tree.rows) {
    const n = {};
    cols.forEach((c, i) => n[c] = row[i]);
    S.nodes.set(n.id, Object.assign(S.nodes.get(n.id) || {}, n));
  }
  S.maxUpdated = Math.max(S.maxUpdated, tree.max_updated || 0);
  if (tree.culled) document.getElementById("culled").textContent = `${tree.culled} old failed/rejected programs not drawn`;
}

function refreshDerived() {
  S.elites = new Set(S.cells.map(c => c.program_id));
  let best = null;
  for (const c of S.cells) if (!best || better(c.score, best.score) || (c.score === best.score && c.program_id < best.program_id)) best = c;
  S.best = best;
  S.ancestry = new Set();
  for (let id = best && best.program_id; id && S.nodes.has(id); id = S.nodes.get(id).parent_id) S.ancestry.add(id);
  const count = document.getElementById("node-count");
  count.textContent = `${S.nodes.size} programs`;
  count.dataset.count = S.nodes.size;
  document.getElementById("best-score").textContent = best ? fmt(best.score) : "–";
  for (const [id, key] of [["f-island", "island"], ["f-model", "model"]]) {
    const el = document.getElementById(id), old = el.value;
    const values = [...new Set([...S.nodes.values()].map(n => n[key]).filter(v => v !== null))].sort();
    const options = html`<option value="">all</option>${values.map(v => html`<option>${v}</option>`)}`;
    if (el.dataset.html !== options.text) { render(el, options); el.dataset.html = options.text; el.value = old; }
  }
}

function showAcceptance(sum) {
  const el = document.getElementById("acceptance");
  el.textContent = sum.replies
    ? `acceptance ${Math.round(100 * sum.acceptance)}% (${sum.accepted} of ${sum.replies} replies)`
    : "acceptance –";
  el.dataset.acceptance = sum.acceptance ?? "";
}

async function poll() {
  if (!S.run) { await loadRuns(); if (!S.run) return; resetRun(S.run); }
  const { version } = await getJSON(runApi("version"));
  if (version === S.version) return;
  S.version = version;
  const since = S.maxUpdated ? S.maxUpdated - 2 : 0;  // overlap: rows committed in the same instant
  const [tree, cells] = await Promise.all([
    getJSON(runApi(`tree?since=${since}`)), getJSON(runApi("cells"))]);
  merge(tree);
  S.cells = cells;
  Tree.relayout();
  refreshDerived();
  showAcceptance(await getJSON(runApi("summary")));
  await redraw();
  if (!window.__painted && S.nodes.size) window.__painted = performance.now();  // first paint, for benchmarks
}

async function redraw() {
  if (S.tab === "tree") Tree.draw();
  if (S.tab === "grid") Grid.draw();
  if (S.tab === "charts" && S.run) Charts.draw(await getJSON(runApi("series")));
  if (S.tab === "recs" && S.run) Recs.draw(await getJSON(runApi("meta-notes")));
}

function showTab(name) {
  S.tab = name;
  document.querySelectorAll(".tab").forEach(b => b.classList.toggle("active", b.dataset.tab === name));
  document.querySelectorAll(".view").forEach(v => v.classList.toggle("active", v.id === "view-" + name));
  redraw();
}

async function loop() {
  const live = document.getElementById("live");
  try { await poll(); live.classList.remove("stale"); }
  catch (err) { live.classList.add("stale"); live.title = String(err); }
  setTimeout(loop, 1000);
}

window.addEventListener("DOMContentLoaded", async () => {
  Tree.init();
  document.querySelectorAll(".tab").forEach(b => b.onclick = () => showTab(b.dataset.tab));
  ["f-island", "f-model", "f-status"].forEach(id => document.getElementById(id).onchange = () => Tree.draw());
  ["g-island", "g-x", "g-y"].forEach(id => document.getElementById(id).onchange = () => Grid.draw());
  document.getElementById("run").onchange = e => { resetRun(e.target.value); poll(); };
  document.getElementById("open-best").onclick = () => S.best && openProgram(S.best.program_id);
  setInterval(() => loadRuns().catch(() => {}), 5000);
  window.cambrian = { S, Tree, openProgram, showTab };
  loop();
});
