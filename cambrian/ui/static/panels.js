"use strict";
// The program panel, the MAP-Elites grid and the charts.

async function openProgram(id) {
  S.selected = id;
  Tree.draw();
  const box = document.getElementById("detail");
  render(box, html`<p class="hint">loading ${id}…</p>`);
  let p;
  try { p = await getJSON(runApi(`programs/${encodeURIComponent(id)}`)); }
  catch (err) { render(box, html`<p class="hint">${err}</p>`); return; }
  const e = p.evaluation || {}, art = e.artifacts || {};
  const rows = [
    ["status", p.status + (p.reason ? ` — ${p.reason}` : "")], ["score", fmt(e.score)],
    ["island / generation", `${p.island} / ${p.generation}`], ["parent", p.parent_id || "–"],
    ["elite of cell", p.elite_cell ?? "–"], ["model", p.model || "–"],
    ["operator", p.operator || "–"], ["edit kind", p.edit_kind || "–"], ["templates", p.templates || "–"],
    ["stage reached", e.stage ?? "–"],
    ["tokens", `${p.prompt_tokens} in / ${p.completion_tokens} out`], ["cost", `$${(+p.cost_usd).toFixed(4)}`],
    ["evaluation", e.status ? `${e.status} in ${fmt(e.duration_s)} s${e.reason ? " — " + e.reason : ""}` : "–"],
    ["files changed", (p.files_changed || []).join(", ") || "–"], ["commit", p.commit || "–"],
  ];
  const parts = [html`<h2 id="detail-id">${p.id}</h2><table>${rows.map(([k, v]) => html`<tr><td>${k}</td><td>${v}</td></tr>`)}</table>`];
  for (const [name, value] of [["metrics", e.metrics], ["features", e.features]]) {
    if (value && Object.keys(value).length) parts.push(html`<h3>${name}</h3><pre id="detail-${name}">${JSON.stringify(value, null, 1)}</pre>`);
  }
  const feedback = Object.entries(art).map(([k, v]) => `${k}: ${typeof v === "string" ? v : JSON.stringify(v)}`).join("\n");
  if (feedback) parts.push(html`<h3>feedback</h3><pre>${feedback}</pre>`);
  const tail = String(e.output_tail ?? "");
  if (tail.trim()) parts.push(html`<h3>output tail</h3><pre>${tail}</pre>`);
  parts.push(html`<h3>diff against parent</h3><pre class="diff" id="detail-diff">${diffMarkup(p.diff, p)}</pre>`);
  for (const [path, text] of Object.entries(p.files || {})) {
    parts.push(html`<h3>${path}</h3><pre class="file">${text}</pre>`);
  }
  render(box, html`${parts}`);
  box.append(...replyNodes(p));
}

function replyNodes(p) {  // the kept LLM reply, as text nodes only: it is model output
  const head = document.createElement("h3"), pre = document.createElement("pre");
  head.textContent = "reply" + (p.reply_truncated ? " (cut at 20,000 characters)" : "");
  pre.id = "detail-reply";
  pre.className = "reply";
  pre.textContent = p.reply || "(no reply kept)";
  return [head, pre];
}

function diffMarkup(diff, p) {
  if (!diff) return html`${p.lineage_note || (p.parent_id ? "(no change)" : "(the initial program)")}`;
  return html`${String(diff).split("\n").map(line => {
    const cls = line.startsWith("+") && !line.startsWith("+++") ? "add"
      : line.startsWith("-") && !line.startsWith("---") ? "del" : line.startsWith("@@") ? "hunk" : "";
    return cls ? html`<span class="${cls}">${line}</span>` : html`${line}\n`;
  })}`;
}

const Grid = {
  fillSelect(id, values, keep) {
    const el = document.getElementById(id), old = el.value;
    render(el, html`${values.map(([v, label]) => html`<option value="${v}">${label}</option>`)}`);
    if (keep && values.some(([v]) => String(v) === old)) el.value = old;
  },

  draw() {
    const run = currentRun(), names = Object.keys(run.axes || {});
    const islands = [...new Set(S.cells.map(c => c.island))].sort((a, b) => a - b);
    this.fillSelect("g-island", (islands.length ? islands : [0]).map(i => [i, i]), true);
    const dims = names.length ? names.map((n, i) => [i, n]) : [[0, "cell"]];
    this.fillSelect("g-x", dims, true);
    this.fillSelect("g-y", [["", "(none)"], ...dims], true);
    if (document.getElementById("g-y").dataset.init !== "1" && dims.length > 1) {
      document.getElementById("g-y").value = "1";
    }
    document.getElementById("g-y").dataset.init = "1";
    const island = +document.getElementById("g-island").value || 0;
    const xi = +document.getElementById("g-x").value || 0, yv = document.getElementById("g-y").value;
    const yi = yv === "" ? null : +yv;
    const cells = S.cells.filter(c => c.island === island);
    const keys = cells.map(c => c.key.split(",").map(Number));
    const bins = i => names.length ? run.axes[names[i]].bins : Math.max(1, ...keys.map(k => k[i] + 1));
    const nx = bins(xi), ny = yi === null ? 1 : bins(yi);
    const grid = new Map();  // best elite per (x, y) when other dimensions are projected out
    cells.forEach((c, j) => {
      const at = `${keys[j][xi]},${yi === null ? 0 : keys[j][yi]}`;
      if (!grid.has(at) || better(c.score, grid.get(at).score)) grid.set(at, c);
    });
    const scores = cells.map(c => c.score), lo = Math.min(...scores), hi = Math.max(...scores);
    const rows = [];
    for (let y = ny - 1; y >= 0; y--) {
      const row = [];
      for (let x = 0; x < nx; x++) {
        const c = grid.get(`${x},${y}`);
        if (!c) { row.push(html`<td class="empty"></td>`); continue; }
        const t = (c.score - lo) / ((hi - lo) || 1), colour = ramp(run.maximize ? t : 1 - t);
        row.push(html`<td class="cell" style="background:${colour};color:${t > 0.6 ? "#111" : "#fff"}" data-id="${c.program_id}" title="${c.program_id} ${fmt(c.score)}">${fmt(c.score)}</td>`);
      }
      rows.push(html`<tr><th>${yi === null ? "" : y}</th>${row}</tr>`);
    }
    const head = Array.from({ length: nx }, (_, x) => html`<th>${x}</th>`);
    const xname = names[xi] || "cell", yname = yi === null ? "" : names[yi] || "";
    render(document.getElementById("grid"), html`<table><tr><th></th>${head}</tr>${rows}</table><p class="hint">x: ${xname}${yname ? ", y: " + yname : ""} — ${cells.length} elites on island ${island}</p>`);
    document.getElementById("g-note").textContent = names.length > 2 ? "other axes: best elite shown" : "";
    document.querySelectorAll("#grid td.cell").forEach(td => td.onclick = () => openProgram(td.dataset.id));
  },
};

const Charts = {
  svg(id, inner) { const el = document.getElementById(id); el.setAttribute("viewBox", "0 0 600 220"); render(el, inner); },

  axes(x0, x1, y0, y1, xl) {
    return html`<line x1="40" y1="200" x2="590" y2="200" stroke="#999"/><line x1="40" y1="10" x2="40" y2="200" stroke="#999"/>
      <text x="44" y="18" font-size="10">${fmt(y1)}</text><text x="44" y="196" font-size="10">${fmt(y0)}</text>
      <text x="590" y="214" font-size="10" text-anchor="end">${xl}</text>`;
  },

  draw(series) {
    const t0 = series.started || (series.points[0] || [0])[0];
    const ok = series.points.filter(p => p[1] !== null && p[2] === "ok");
    const tmax = Math.max(1, ...series.points.map(p => p[0] - t0));
    const ys = ok.map(p => p[1]), y0 = Math.min(...ys, 0), y1 = Math.max(...ys, 1e-9);
    const X = t => 40 + (t - t0) / tmax * 550, Y = s => 200 - (s - y0) / ((y1 - y0) || 1) * 190;
    const dots = [];
    let line = "", best = null;
    for (const p of ok) {
      dots.push(html`<circle cx="${X(p[0]).toFixed(1)}" cy="${Y(p[1]).toFixed(1)}" r="2" fill="#3b528b" opacity=".6"/>`);
      if (better(p[1], best)) best = p[1];
      line += `${line ? "L" : "M"}${X(p[0]).toFixed(1)},${Y(best).toFixed(1)}`;
    }
    this.svg("c-score", html`${this.axes(0, tmax, y0, y1, `${tmax.toFixed(0)} s`)}${dots}<path d="${line}" fill="none" stroke="#e8590c" stroke-width="2"/>`);
    const bucket = tmax < 600 ? 10 : 60, nb = Math.max(1, Math.ceil(tmax / bucket));
    const per = new Array(nb).fill(0);  // candidates per bucket, shown as a per-minute rate
    series.points.forEach(p => per[Math.min(nb - 1, Math.floor((p[0] - t0) / bucket))] += 60 / bucket);
    const top = Math.max(1, ...per), w = 550 / nb;
    const bars = per.map((n, i) =>
      html`<rect x="${(40 + i * w + 1).toFixed(1)}" y="${(200 - n / top * 190).toFixed(1)}" width="${Math.max(1, w - 2).toFixed(1)}" height="${(n / top * 190).toFixed(1)}" fill="#21918c"><title>${n}/min</title></rect>`);
    this.svg("c-rate", html`${this.axes(0, nb, 0, top, `${tmax.toFixed(0)} s, ${bucket} s bins`)}${bars}`);
    const fails = Object.entries(series.failures).sort((a, b) => b[1] - a[1]), fmax = Math.max(1, ...fails.map(f => f[1]));
    render(document.getElementById("c-fail"), fails.length ? html`${fails.map(([k, n]) =>
      html`<div class="bar"><span title="${k}">${k}</span><b style="width:${(n / fmax * 200).toFixed(0)}px"></b>${n}</div>`)}` : html`<p class="hint">none yet</p>`);
    render(document.getElementById("c-cost"), html`<table class="cost"><tr><th>model</th><th>calls</th><th>tokens in</th><th>tokens out</th><th>cost</th></tr>${
      series.models.map(m => html`<tr><td>${m.model}</td><td>${m.calls}</td><td>${m.prompt_tokens}</td><td>${m.completion_tokens}</td><td>$${(+m.cost_usd).toFixed(4)}</td></tr>`)}</table>`);
  },
};

const Recs = {
  draw(notes) {  // built from text nodes: a note is model output
    const box = document.getElementById("recs");
    box.replaceChildren();
    if (!notes.length) {
      const hint = document.createElement("p");
      hint.className = "hint";
      hint.textContent = "none yet (meta-recommendations are written as the run goes)";
      box.append(hint);
    }
    for (const note of notes) {
      const item = document.createElement("div"), head = document.createElement("h3"), body = document.createElement("pre");
      item.className = "note";
      head.textContent = `after ${note.at_evaluated} evaluated · ${note.model} · ${new Date(note.created_at * 1000).toLocaleString()}`;
      body.textContent = note.text;
      item.append(head, body);
      box.append(item);
    }
  },
};
