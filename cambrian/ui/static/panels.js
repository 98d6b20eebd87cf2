"use strict";
// The program panel, the MAP-Elites grid and the charts.

async function openProgram(id) {
  S.selected = id;
  Tree.draw();
  const box = document.getElementById("detail");
  box.innerHTML = `<p class="hint">loading ${esc(id)}…</p>`;
  let p;
  try { p = await getJSON(`/api/runs/${S.run}/programs/${id}`); }
  catch (err) { box.innerHTML = `<p class="hint">${esc(err)}</p>`; return; }
  const e = p.evaluation || {}, art = e.artifacts || {};
  const rows = [
    ["status", p.status + (p.reason ? ` — ${p.reason}` : "")], ["score", fmt(e.score)],
    ["island / generation", `${p.island} / ${p.generation}`], ["parent", p.parent_id || "–"],
    ["elite of cell", p.elite_cell ?? "–"], ["model", p.model || "–"],
    ["operator", p.operator || "–"], ["edit kind", p.edit_kind || "–"], ["templates", p.templates || "–"],
    ["stage reached", e.stage ?? "–"],
    ["tokens", `${p.prompt_tokens} in / ${p.completion_tokens} out`], ["cost", `$${p.cost_usd.toFixed(4)}`],
    ["evaluation", e.status ? `${e.status} in ${fmt(e.duration_s)} s${e.reason ? " — " + e.reason : ""}` : "–"],
    ["files changed", (p.files_changed || []).join(", ") || "–"], ["commit", p.commit || "–"],
  ];
  let html = `<h2 id="detail-id">${esc(p.id)}</h2><table>` +
    rows.map(([k, v]) => `<tr><td>${esc(k)}</td><td>${esc(v)}</td></tr>`).join("") + "</table>";
  for (const [name, value] of [["metrics", e.metrics], ["features", e.features]]) {
    if (value && Object.keys(value).length) html += `<h3>${name}</h3><pre>${esc(JSON.stringify(value, null, 1))}</pre>`;
  }
  const feedback = Object.entries(art).map(([k, v]) => `${k}: ${typeof v === "string" ? v : JSON.stringify(v)}`).join("\n");
  if (feedback) html += `<h3>feedback</h3><pre>${esc(feedback)}</pre>`;
  if (e.output_tail && e.output_tail.trim()) html += `<h3>output tail</h3><pre>${esc(e.output_tail)}</pre>`;
  html += `<h3>diff against parent</h3><pre class="diff" id="detail-diff">${diffHtml(p.diff, p)}</pre>`;
  for (const [path, text] of Object.entries(p.files || {})) {
    html += `<h3>${esc(path)}</h3><pre class="file">${esc(text)}</pre>`;
  }
  box.innerHTML = html;
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

function diffHtml(diff, p) {
  if (!diff) return esc(p.lineage_note || (p.parent_id ? "(no change)" : "(the initial program)"));
  return diff.split("\n").map(line => {
    const cls = line.startsWith("+") && !line.startsWith("+++") ? "add"
      : line.startsWith("-") && !line.startsWith("---") ? "del" : line.startsWith("@@") ? "hunk" : "";
    return cls ? `<span class="${cls}">${esc(line)}</span>` : esc(line) + "\n";
  }).join("");
}

const Grid = {
  fillSelect(id, values, keep) {
    const el = document.getElementById(id), old = el.value;
    el.innerHTML = values.map(([v, label]) => `<option value="${esc(v)}">${esc(label)}</option>`).join("");
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
    let html = "<table><tr><th></th>" + Array.from({ length: nx }, (_, x) => `<th>${x}</th>`).join("") + "</tr>";
    for (let y = ny - 1; y >= 0; y--) {
      html += `<tr><th>${yi === null ? "" : y}</th>`;
      for (let x = 0; x < nx; x++) {
        const c = grid.get(`${x},${y}`);
        if (!c) { html += '<td class="empty"></td>'; continue; }
        const t = (c.score - lo) / ((hi - lo) || 1), colour = ramp(run.maximize ? t : 1 - t);
        html += `<td class="cell" style="background:${colour};color:${t > 0.6 ? "#111" : "#fff"}" data-id="${esc(c.program_id)}" title="${esc(c.program_id)} ${fmt(c.score)}">${fmt(c.score)}</td>`;
      }
      html += "</tr>";
    }
    const xname = names[xi] || "cell", yname = yi === null ? "" : names[yi] || "";
    document.getElementById("grid").innerHTML = html + `</table><p class="hint">x: ${esc(xname)}${yname ? ", y: " + esc(yname) : ""} — ${cells.length} elites on island ${island}</p>`;
    document.getElementById("g-note").textContent = names.length > 2 ? "other axes: best elite shown" : "";
    document.querySelectorAll("#grid td.cell").forEach(td => td.onclick = () => openProgram(td.dataset.id));
  },
};

const Charts = {
  svg(id, inner) { const el = document.getElementById(id); el.setAttribute("viewBox", "0 0 600 220"); el.innerHTML = inner; },

  axes(x0, x1, y0, y1, xl) {
    return `<line x1="40" y1="200" x2="590" y2="200" stroke="#999"/><line x1="40" y1="10" x2="40" y2="200" stroke="#999"/>` +
      `<text x="44" y="18" font-size="10">${fmt(y1)}</text><text x="44" y="196" font-size="10">${fmt(y0)}</text>` +
      `<text x="590" y="214" font-size="10" text-anchor="end">${esc(xl)}</text>`;
  },

  draw(series) {
    const t0 = series.started || (series.points[0] || [0])[0];
    const ok = series.points.filter(p => p[1] !== null && p[2] === "ok");
    const tmax = Math.max(1, ...series.points.map(p => p[0] - t0));
    const ys = ok.map(p => p[1]), y0 = Math.min(...ys, 0), y1 = Math.max(...ys, 1e-9);
    const X = t => 40 + (t - t0) / tmax * 550, Y = s => 200 - (s - y0) / ((y1 - y0) || 1) * 190;
    let dots = "", line = "", best = null;
    for (const p of ok) {
      dots += `<circle cx="${X(p[0]).toFixed(1)}" cy="${Y(p[1]).toFixed(1)}" r="2" fill="#3b528b" opacity=".6"/>`;
      if (better(p[1], best)) best = p[1];
      line += `${line ? "L" : "M"}${X(p[0]).toFixed(1)},${Y(best).toFixed(1)}`;
    }
    this.svg("c-score", this.axes(0, tmax, y0, y1, `${tmax.toFixed(0)} s`) + dots + `<path d="${line}" fill="none" stroke="#e8590c" stroke-width="2"/>`);
    const bucket = tmax < 600 ? 10 : 60, nb = Math.max(1, Math.ceil(tmax / bucket));
    const per = new Array(nb).fill(0);  // candidates per bucket, shown as a per-minute rate
    series.points.forEach(p => per[Math.min(nb - 1, Math.floor((p[0] - t0) / bucket))] += 60 / bucket);
    const top = Math.max(1, ...per), w = 550 / nb;
    this.svg("c-rate", this.axes(0, nb, 0, top, `${tmax.toFixed(0)} s, ${bucket} s bins`) + per.map((n, i) =>
      `<rect x="${(40 + i * w + 1).toFixed(1)}" y="${(200 - n / top * 190).toFixed(1)}" width="${Math.max(1, w - 2).toFixed(1)}" height="${(n / top * 190).toFixed(1)}" fill="#21918c"><title>${n}/min</title></rect>`).join(""));
    const fails = Object.entries(series.failures).sort((a, b) => b[1] - a[1]), fmax = Math.max(1, ...fails.map(f => f[1]));
    document.getElementById("c-fail").innerHTML = fails.length ? fails.map(([k, n]) =>
      `<div class="bar"><span title="${esc(k)}">${esc(k)}</span><b style="width:${(n / fmax * 200).toFixed(0)}px"></b>${n}</div>`).join("") : '<p class="hint">none yet</p>';
    document.getElementById("c-cost").innerHTML = '<table class="cost"><tr><th>model</th><th>calls</th><th>tokens in</th><th>tokens out</th><th>cost</th></tr>' +
      series.models.map(m => `<tr><td>${esc(m.model)}</td><td>${m.calls}</td><td>${m.prompt_tokens}</td><td>${m.completion_tokens}</td><td>$${(+m.cost_usd).toFixed(4)}</td></tr>`).join("") + "</table>";
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
