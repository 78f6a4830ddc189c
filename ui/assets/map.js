// clipsearch web app: the Explore map. The body of the map's gr.HTML js_on_load (Gradio calls it with
// element, trigger, props, server, upload, watch); benchmarks/bench_map_draw.py calls it the same way.
//
// A plain canvas-2D drawer, no library: the page must work offline with nothing from a CDN, the headless
// Chromium it is tested in runs with --disable-gpu (WebGL would fall back to a software rasteriser), and one
// path of small squares per colour draws 100k points in tens of milliseconds on a CPU (the benchmark).
//
//   drag            box selection (or lasso, from the toolbar): the selected photos fill the gallery
//   click a point   opens its preview              wheel   zooms about the pointer     Pan: drag moves the map
//   hover           the photo's thumbnail          zoomed in far enough: thumbnails in place of the points
//   keyboard        arrows pan, + and - zoom, 0 resets (the map is one tab stop)
//
// props.value: {ids, x, y (both 0..1), group (colour index per point), legend: [{name, colour, count}], by}.
// Search hits arrive as a "clipsearch-hits" event on window (ids), sent by the page after every listing.
(() => {
  const MAX_THUMBS = 60; // thumbnails drawn in place when at most this many points are in view
  const THUMB = 56;
  const host = element;
  const state = { n: 0, ids: null, x: null, y: null, group: null, legend: [], hits: new Set(), index: new Map(),
                  zoom: 1, panX: 0, panY: 0, mode: "box", urls: new Map(), images: new Map(), draws: 0,
                  lastMs: 0, pending: false };

  function dom() {
    let frame = host.querySelector(".map-frame");
    if (frame && frame.__ready) return frame.__parts;
    if (!frame) {
      frame = document.createElement("div");
      frame.className = "map-frame";
      host.appendChild(frame);
    }
    frame.innerHTML = `
      <div class="map-toolbar" role="toolbar" aria-label="Map tools">
        <button type="button" data-mode="box" aria-pressed="true">▭ Box</button>
        <button type="button" data-mode="lasso" aria-pressed="false">◌ Lasso</button>
        <button type="button" data-mode="pan" aria-pressed="false">✥ Pan</button>
        <button type="button" data-act="in">Zoom in</button>
        <button type="button" data-act="out">Zoom out</button>
        <button type="button" data-act="reset">Reset view</button>
        <span class="map-count" aria-live="polite"></span>
      </div>
      <div class="map-stage">
        <canvas class="map-points"></canvas><canvas class="map-overlay"></canvas>
        <div class="map-tip" hidden><img alt=""><span></span></div>
      </div>
      <div class="map-legend"></div>`;
    const parts = {
      frame,
      stage: frame.querySelector(".map-stage"),
      points: frame.querySelector(".map-points"),
      overlay: frame.querySelector(".map-overlay"),
      tip: frame.querySelector(".map-tip"),
      legend: frame.querySelector(".map-legend"),
      count: frame.querySelector(".map-count"),
      toolbar: frame.querySelector(".map-toolbar"),
    };
    frame.__parts = parts;
    frame.__ready = true;
    wire(parts);
    return parts;
  }

  // -- geometry: data (0..1, y up) <-> canvas pixels ----------------------------------------------------
  function layout(parts) {
    const rect = parts.stage.getBoundingClientRect();
    const w = Math.max(1, Math.round(rect.width)), h = Math.max(1, Math.round(rect.height));
    const base = Math.min(w, h) * 0.92;
    return { w, h, base, left: (w - base) / 2, top: (h - base) / 2, rect };
  }
  const sx = (g, x) => g.left + (x * g.base) * state.zoom + state.panX + (1 - state.zoom) * g.base / 2;
  const sy = (g, y) => g.top + ((1 - y) * g.base) * state.zoom + state.panY + (1 - state.zoom) * g.base / 2;

  function size(canvas, g) {
    const ratio = window.devicePixelRatio || 1;
    if (canvas.width !== g.w * ratio || canvas.height !== g.h * ratio) {
      canvas.width = g.w * ratio;
      canvas.height = g.h * ratio;
    }
    const ctx = canvas.getContext("2d");
    ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
    return ctx;
  }

  // -- drawing ------------------------------------------------------------------------------------------
  function draw() {
    const started = performance.now();
    const parts = dom();
    const g = layout(parts);
    const ctx = size(parts.points, g);
    ctx.clearRect(0, 0, g.w, g.h);
    const n = state.n, x = state.x, y = state.y, group = state.group;
    const dot = (n > 20000 ? 2 : n > 2000 ? 3 : n > 300 ? 5 : 8) * Math.min(2, Math.sqrt(state.zoom));
    const half = dot / 2;
    const dim = state.hits.size > 0;
    ctx.globalAlpha = dim ? 0.3 : 0.85;
    const colours = state.legend.map((l) => l.colour);
    const paths = colours.map(() => new Path2D());
    const other = new Path2D();
    let visible = 0;
    const inView = [];
    for (let i = 0; i < n; i++) {
      const px = sx(g, x[i]), py = sy(g, y[i]);
      if (px < -dot || py < -dot || px > g.w + dot || py > g.h + dot) continue;
      visible++;
      if (inView.length <= MAX_THUMBS) inView.push(i);
      (paths[group[i]] || other).rect(px - half, py - half, dot, dot);
    }
    paths.forEach((p, k) => { ctx.fillStyle = colours[k]; ctx.fill(p); });
    ctx.fillStyle = "#999";
    ctx.fill(other);
    ctx.globalAlpha = 1;
    if (dim) { // the current search's hits: larger, ringed, on top
      ctx.lineWidth = 1.5;
      ctx.strokeStyle = "#111";
      const ring = Math.max(half + 2.5, 4);
      for (const id of state.hits) {
        const i = state.index.get(id);
        if (i === undefined) continue;
        const px = sx(g, x[i]), py = sy(g, y[i]);
        ctx.beginPath();
        ctx.arc(px, py, ring, 0, 2 * Math.PI);
        ctx.fillStyle = colours[group[i]] || "#999";
        ctx.fill();
        ctx.stroke();
      }
    }
    if (visible <= MAX_THUMBS && visible > 0 && n > 0) drawThumbs(ctx, g, inView.slice(0, visible));
    state.draws++;
    state.lastMs = performance.now() - started;
    host.dataset.points = String(n);
    host.dataset.visible = String(visible);
    host.dataset.draws = String(state.draws);
    host.dataset.drawMs = state.lastMs.toFixed(1);
    parts.count.textContent = n ? `${n.toLocaleString()} photos` + (visible < n ? `, ${visible.toLocaleString()} in view` : "")
      + (state.hits.size ? ` · ${state.hits.size} in the gallery, ringed` : "") : "";
  }

  function redraw() { // at most once per frame
    if (state.pending) return;
    state.pending = true;
    requestAnimationFrame(() => { state.pending = false; draw(); });
  }

  function drawThumbs(ctx, g, indices) {
    const missing = indices.map((i) => state.ids[i]).filter((id) => !state.urls.has(id));
    if (missing.length) fetchThumbs(missing);
    for (const i of indices) {
      const img = state.images.get(state.ids[i]);
      if (!img || !img.complete || !img.naturalWidth) continue;
      const scale = THUMB / Math.max(img.naturalWidth, img.naturalHeight);
      const w = img.naturalWidth * scale, h = img.naturalHeight * scale;
      const px = sx(g, state.x[i]), py = sy(g, state.y[i]);
      ctx.drawImage(img, px - w / 2, py - h / 2, w, h);
      ctx.strokeStyle = state.legend[state.group[i]]?.colour || "#999";
      ctx.lineWidth = 3;
      ctx.strokeRect(px - w / 2, py - h / 2, w, h);
    }
  }

  async function fetchThumbs(ids) {
    ids.forEach((id) => state.urls.set(id, null)); // asked once
    if (!server || !server.thumbnails) return;
    try {
      const found = await server.thumbnails(ids);
      for (const [id, url] of Object.entries(found || {})) {
        state.urls.set(Number(id), url);
        const img = new Image();
        img.onload = redraw;
        img.src = url;
        state.images.set(Number(id), img);
      }
    } catch (error) {
      console.warn("clipsearch map: thumbnails", error);
    }
  }

  function legend(parts) {
    parts.legend.innerHTML = "";
    for (const item of state.legend) {
      const entry = document.createElement("span");
      entry.className = "map-key";
      const swatch = document.createElement("i");
      swatch.style.background = item.colour;
      entry.append(swatch, document.createTextNode(` ${item.name} (${item.count})`));
      parts.legend.appendChild(entry);
    }
  }

  // -- data ---------------------------------------------------------------------------------------------
  function load(value) {
    const v = value && typeof value === "object" ? value : { ids: [], x: [], y: [], group: [], legend: [] };
    state.n = v.ids.length;
    state.ids = Int32Array.from(v.ids);
    state.x = Float32Array.from(v.x);
    state.y = Float32Array.from(v.y);
    state.group = Uint8Array.from(v.group);
    state.legend = v.legend || [];
    state.index = new Map();
    for (let i = 0; i < state.n; i++) state.index.set(state.ids[i], i);
    const parts = dom();
    legend(parts);
    draw();
  }

  // -- hit testing and selection ------------------------------------------------------------------------
  function nearest(cx, cy, radius) {
    const g = layout(dom());
    let best = -1, bestD = radius * radius;
    for (let i = 0; i < state.n; i++) {
      const dx = sx(g, state.x[i]) - cx, dy = sy(g, state.y[i]) - cy;
      const d = dx * dx + dy * dy;
      if (d <= bestD) { bestD = d; best = i; }
    }
    return best;
  }

  function inside(poly, px, py) { // even-odd rule
    let hit = false;
    for (let a = 0, b = poly.length - 1; a < poly.length; b = a++) {
      const [xa, ya] = poly[a], [xb, yb] = poly[b];
      if ((ya > py) !== (yb > py) && px < ((xb - xa) * (py - ya)) / (yb - ya) + xa) hit = !hit;
    }
    return hit;
  }

  function select(poly) {
    const g = layout(dom());
    const xs = poly.map((p) => p[0]), ys = poly.map((p) => p[1]);
    const minX = Math.min(...xs), maxX = Math.max(...xs), minY = Math.min(...ys), maxY = Math.max(...ys);
    const box = state.mode === "box";
    const chosen = [];
    for (let i = 0; i < state.n; i++) {
      const px = sx(g, state.x[i]), py = sy(g, state.y[i]);
      if (px < minX || px > maxX || py < minY || py > maxY) continue;
      if (box || inside(poly, px, py)) chosen.push(state.ids[i]);
    }
    host.dataset.selected = String(chosen.length);
    trigger("selection", { ids: chosen });
  }

  function wire(parts) {
    const overlay = parts.overlay;
    let drag = null;
    const local = (event) => {
      const r = parts.stage.getBoundingClientRect();
      return [event.clientX - r.left, event.clientY - r.top];
    };
    parts.toolbar.addEventListener("click", (event) => {
      const button = event.target.closest("button");
      if (!button) return;
      if (button.dataset.mode) {
        state.mode = button.dataset.mode;
        parts.toolbar.querySelectorAll("[data-mode]").forEach((b) =>
          b.setAttribute("aria-pressed", String(b === button)));
        overlay.style.cursor = state.mode === "pan" ? "grab" : "crosshair";
      } else if (button.dataset.act === "reset") {
        state.zoom = 1; state.panX = 0; state.panY = 0; clearSketch(parts); draw();
      } else {
        const g = layout(parts);
        zoomAt(g.w / 2, g.h / 2, button.dataset.act === "in" ? 1.5 : 1 / 1.5);
      }
    });
    overlay.addEventListener("pointerdown", (event) => {
      if (event.button !== 0) return;
      overlay.setPointerCapture(event.pointerId);
      const at = local(event);
      drag = { start: at, path: [at], panX: state.panX, panY: state.panY, moved: false };
      parts.tip.hidden = true;
    });
    overlay.addEventListener("pointermove", (event) => {
      const at = local(event);
      if (!drag) { hover(parts, at); return; }
      if (Math.hypot(at[0] - drag.start[0], at[1] - drag.start[1]) > 4) drag.moved = true;
      if (state.mode === "pan") {
        if (drag.moved) clearSketch(parts);
        state.panX = drag.panX + at[0] - drag.start[0];
        state.panY = drag.panY + at[1] - drag.start[1];
        redraw();
        return;
      }
      drag.path.push(at);
      sketch(parts, drag);
    });
    overlay.addEventListener("pointerup", (event) => {
      if (!drag) return;
      const finished = drag;
      drag = null;
      const at = local(event);
      if (!finished.moved) {
        clearSketch(parts);
        const i = nearest(at[0], at[1], 8);
        if (i >= 0) trigger("pick", { id: state.ids[i] });
        return;
      }
      if (state.mode === "pan") return;
      finished.path.push(at);
      const [x0, y0] = finished.start;
      const poly = state.mode === "box" ? [[x0, y0], [at[0], y0], [at[0], at[1]], [x0, at[1]]] : finished.path;
      select(poly);
    });
    overlay.addEventListener("pointerleave", () => { parts.tip.hidden = true; });
    overlay.addEventListener("wheel", (event) => {
      event.preventDefault();
      const at = local(event);
      zoomAt(at[0], at[1], event.deltaY < 0 ? 1.25 : 1 / 1.25);
    }, { passive: false });
    overlay.addEventListener("dblclick", () => { state.zoom = 1; state.panX = 0; state.panY = 0; draw(); });
    // The keyboard: the map is one tab stop; arrows pan, + and - zoom about the centre, 0 resets.
    overlay.tabIndex = 0;
    overlay.setAttribute("role", "img");
    overlay.setAttribute("aria-label", "Map of the library: arrows pan, + and - zoom, 0 resets");
    overlay.addEventListener("keydown", (event) => {
      const g = layout(parts);
      const pans = { ArrowLeft: [40, 0], ArrowRight: [-40, 0], ArrowUp: [0, 40], ArrowDown: [0, -40] };
      if (event.key in pans) {
        state.panX += pans[event.key][0];
        state.panY += pans[event.key][1];
        clearSketch(parts);
        redraw();
      } else if (event.key === "+" || event.key === "=") zoomAt(g.w / 2, g.h / 2, 1.5);
      else if (event.key === "-") zoomAt(g.w / 2, g.h / 2, 1 / 1.5);
      else if (event.key === "0") { state.zoom = 1; state.panX = 0; state.panY = 0; clearSketch(parts); draw(); }
      else return;
      event.preventDefault();
    });
    new ResizeObserver(() => { clearSketch(parts); redraw(); }).observe(parts.stage);
  }

  function zoomAt(cx, cy, factor) {
    const g = layout(dom());
    clearSketch(dom()); // a selection's outline belongs to the old view
    const zoom = Math.min(400, Math.max(1, state.zoom * factor));
    const f = zoom / state.zoom;
    // keep the point under the pointer where it is: screen = a + zoom * b, solved for the new pan
    const centre = (1 - state.zoom) * g.base / 2, newCentre = (1 - zoom) * g.base / 2;
    state.panX = cx - f * (cx - state.panX - centre - g.left) - newCentre - g.left;
    state.panY = cy - f * (cy - state.panY - centre - g.top) - newCentre - g.top;
    if (zoom === 1) { state.panX = 0; state.panY = 0; }
    state.zoom = zoom;
    redraw();
  }

  function sketch(parts, drag) {
    const g = layout(parts);
    const ctx = size(parts.overlay, g);
    ctx.clearRect(0, 0, g.w, g.h);
    ctx.strokeStyle = "#0b5fff";
    ctx.fillStyle = "rgba(11, 95, 255, 0.12)";
    ctx.lineWidth = 1.5;
    ctx.beginPath();
    if (state.mode === "box") {
      const [x0, y0] = drag.start, [x1, y1] = drag.path[drag.path.length - 1];
      ctx.rect(x0, y0, x1 - x0, y1 - y0);
    } else {
      drag.path.forEach(([px, py], k) => (k ? ctx.lineTo(px, py) : ctx.moveTo(px, py)));
      ctx.closePath();
    }
    ctx.fill();
    ctx.stroke();
  }

  function clearSketch(parts) {
    const g = layout(parts);
    size(parts.overlay, g).clearRect(0, 0, g.w, g.h);
  }

  let hovering = -1;
  function hover(parts, at) {
    const i = nearest(at[0], at[1], 8);
    parts.overlay.style.cursor = i >= 0 ? "pointer" : state.mode === "pan" ? "grab" : "crosshair";
    if (i < 0) { parts.tip.hidden = true; hovering = -1; return; }
    const id = state.ids[i];
    const tip = parts.tip;
    tip.style.left = `${Math.min(at[0] + 14, parts.stage.clientWidth - 150)}px`;
    tip.style.top = `${Math.max(at[1] - 150, 4)}px`;
    tip.querySelector("span").textContent = `${state.legend[state.group[i]]?.name || ""} · #${id}`;
    tip.hidden = false;
    if (hovering === id) return;
    hovering = id;
    const img = tip.querySelector("img");
    const show = () => { if (hovering === id) img.src = state.urls.get(id) || ""; };
    if (state.urls.get(id)) show();
    else {
      img.removeAttribute("src");
      if (!state.urls.has(id)) fetchThumbs([id]).then(show);
    }
  }

  // For the page's tests and the benchmark: where a photo's point is drawn, in client (viewport) pixels.
  host.clipsearchMap = {
    screenOf(id) {
      const parts = dom(), g = layout(parts), i = state.index.get(id);
      if (i === undefined) return null;
      return { x: g.rect.left + sx(g, state.x[i]), y: g.rect.top + sy(g, state.y[i]) };
    },
    load, draw, state,
  };

  state.hits = new Set(window.clipsearchHits || []);
  // The panel is drawn afresh each time its view opens: one listener, the current map's.
  if (window.clipsearchMapHits) window.removeEventListener("clipsearch-hits", window.clipsearchMapHits);
  window.clipsearchMapHits = (event) => {
    state.hits = new Set(event.detail || []);
    if (state.n) redraw();
  };
  window.addEventListener("clipsearch-hits", window.clipsearchMapHits);
  watch("value", () => load(props.value));
  load(props.value);
})();
