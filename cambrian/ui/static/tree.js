"use strict";
// The lineage tree on a canvas: tidy layout, colour by score, pan and zoom, click to open.
const Tree = {
  canvas: null, ctx: null, view: { x: 40, y: 40, k: 1, ky: 1 }, layout: [], dirty: true, fitted: false,
  lo: 0, hi: 1, R: 5, DX: 14, DY: 36,

  init() {
    this.canvas = document.getElementById("tree");
    this.ctx = this.canvas.getContext("2d");
    let drag = null, moved = false;
    this.canvas.addEventListener("mousedown", e => { drag = [e.clientX, e.clientY]; moved = false; });
    window.addEventListener("mouseup", e => {
      if (drag && !moved) this.click(e);
      drag = null;
    });
    window.addEventListener("mousemove", e => {
      if (!drag) return;
      const dx = e.clientX - drag[0], dy = e.clientY - drag[1];
      if (Math.abs(dx) + Math.abs(dy) > 3) moved = true;
      this.view.x += dx; this.view.y += dy; drag = [e.clientX, e.clientY]; this.draw();
    });
    this.canvas.addEventListener("wheel", e => {
      e.preventDefault();
      const r = this.canvas.getBoundingClientRect(), mx = e.clientX - r.left, my = e.clientY - r.top;
      const f = Math.exp(-e.deltaY * 0.0015), v = this.view;
      v.x = mx - (mx - v.x) * f; v.y = my - (my - v.y) * f; v.k *= f; v.ky *= f; this.draw();
    }, { passive: false });
    window.addEventListener("resize", () => this.draw());
    document.getElementById("fit").onclick = () => { this.fit(); this.draw(); };
  },

  relayout() {  // leaves get consecutive x; a parent sits over its children; y = generation
    const kids = new Map(), roots = [];
    for (const n of S.nodes.values()) {
      if (n.parent_id && S.nodes.has(n.parent_id)) {
        if (!kids.has(n.parent_id)) kids.set(n.parent_id, []);
        kids.get(n.parent_id).push(n);
      } else roots.push(n);
    }
    const bySeq = (a, b) => a.seq - b.seq;
    roots.sort(bySeq);
    let leaf = 0;
    const out = [], stack = roots.slice().reverse().map(n => [n, 0]);
    while (stack.length) {
      const top = stack[stack.length - 1], [n, state] = top;
      const ch = (kids.get(n.id) || []).sort(bySeq);
      if (state === 0 && ch.length) {
        top[1] = 1;
        for (let i = ch.length - 1; i >= 0; i--) stack.push([ch[i], 0]);
        continue;
      }
      stack.pop();
      n.x = ch.length ? (ch[0].x + ch[ch.length - 1].x) / 2 : (leaf++) * this.DX;
      n.y = n.generation * this.DY;
      out.push(n);
    }
    const scores = out.filter(n => n.score !== null && n.status === "evaluated").map(n => n.score);
    this.lo = scores.length ? Math.min(...scores) : 0;
    this.hi = scores.length ? Math.max(...scores) : 1;
    this.layout = out;
    if (!this.fitted && out.length) { this.fit(); this.fitted = out.length > 1; }
  },

  fit() {
    if (!this.layout.length) return;
    const w = this.canvas.clientWidth, h = this.canvas.clientHeight;
    let x0 = Infinity, x1 = -Infinity, y1 = 0;
    for (const n of this.layout) { x0 = Math.min(x0, n.x); x1 = Math.max(x1, n.x); y1 = Math.max(y1, n.y); }
    // x and y scale apart: a wide tree of 10,000 programs still uses the full height
    const k = Math.min(3, (w - 60) / Math.max(1, x1 - x0)), ky = Math.min(3, (h - 60) / Math.max(1, y1));
    this.view = { k, ky, x: 30 - x0 * k + Math.max(0, (w - 60 - (x1 - x0) * k) / 2), y: 30 };
  },

  visible(n) {
    const fi = document.getElementById("f-island").value, fm = document.getElementById("f-model").value;
    const fs = document.getElementById("f-status").value;
    return (!fi || String(n.island) === fi) && (!fm || n.model === fm) && (!fs || n.status === fs);
  },

  colour(n) {
    if (n.status === "evaluated" && n.score !== null) {
      const t = (n.score - this.lo) / ((this.hi - this.lo) || 1);
      return ramp(currentRun().maximize ? t : 1 - t);
    }
    if (n.status === "failed" || n.status === "rejected") return "rgba(150,150,150,0.35)";
    return "#fff";
  },

  draw() {
    const c = this.canvas, dpr = window.devicePixelRatio || 1;
    if (c.width !== c.clientWidth * dpr || c.height !== c.clientHeight * dpr) {
      c.width = c.clientWidth * dpr; c.height = c.clientHeight * dpr;
    }
    const g = this.ctx, v = this.view, W = c.clientWidth, H = c.clientHeight;
    g.setTransform(dpr, 0, 0, dpr, 0, 0);
    g.clearRect(0, 0, W, H);
    const sx = n => v.x + n.x * v.k, sy = n => v.y + n.y * v.ky;
    const inView = n => sx(n) > -20 && sx(n) < W + 20 && sy(n) > -20 && sy(n) < H + 20;
    const shown = this.layout.filter(n => this.visible(n));
    g.lineWidth = 1;
    g.strokeStyle = "rgba(120,130,150,0.45)";
    g.beginPath();
    for (const n of shown) {
      const p = S.nodes.get(n.parent_id);
      if (!p || (!inView(n) && !inView(p)) || S.ancestry.has(n.id)) continue;
      g.moveTo(sx(p), sy(p)); g.lineTo(sx(n), sy(n));
    }
    g.stroke();
    g.strokeStyle = "#e8590c"; g.lineWidth = 3; g.beginPath();
    for (const id of S.ancestry) {
      const n = S.nodes.get(id), p = n && S.nodes.get(n.parent_id);
      if (p) { g.moveTo(sx(p), sy(p)); g.lineTo(sx(n), sy(n)); }
    }
    g.stroke();
    const r = Math.max(1.5, Math.min(9, this.R * Math.min(v.k, v.ky)));
    for (const n of shown) {
      if (!inView(n)) continue;
      g.fillStyle = this.colour(n);
      g.beginPath(); g.arc(sx(n), sy(n), r, 0, 6.2832); g.fill();
      const elite = S.elites.has(n.id), pending = g.fillStyle === "#ffffff";
      if (elite || pending || n.id === S.selected || S.ancestry.has(n.id)) {
        g.lineWidth = n.id === S.selected ? 3 : elite ? 2 : 1;
        g.strokeStyle = n.id === S.selected ? "#e03131" : S.ancestry.has(n.id) ? "#e8590c" : "#111";
        g.beginPath(); g.arc(sx(n), sy(n), r + (elite ? 1.5 : 0), 0, 6.2832); g.stroke();
      }
    }
  },

  screenPos(id) {  // canvas-relative position of a node (for tests and keyboard users)
    const n = S.nodes.get(id), v = this.view;
    return n && n.x !== undefined ? [v.x + n.x * v.k, v.y + n.y * v.ky] : null;
  },

  click(e) {
    const rect = this.canvas.getBoundingClientRect(), mx = e.clientX - rect.left, my = e.clientY - rect.top;
    if (mx < 0 || my < 0 || mx > rect.width || my > rect.height) return;
    let best = null, bestD = 144;
    for (const n of this.layout) {
      if (!this.visible(n)) continue;
      const [x, y] = this.screenPos(n.id), d = (x - mx) ** 2 + (y - my) ** 2;
      if (d < bestD) { best = n; bestD = d; }
    }
    if (best) openProgram(best.id);
  },
};
