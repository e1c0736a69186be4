// The map's points (issue #20): every track drawn by this script on a 2-D canvas, under Plotly's
// top layers (the lasso outline, the highlight overlay, the hover layer). Plotly keeps the axes,
// pan and zoom, the legend, the mode bar and the lasso; its traces are empty.
//
// Why not Plotly's WebGL scatter: in a browser without a GPU (software WebGL) it took ~2 s a frame
// at 1M points, and every colour change, filter, pan and zoom is a frame. Here a frame is written
// pixel by pixel into one ImageData: ~40 ms for 1M points on the same machine (39 ms in
// benchmarks/results/explorer-20261130-053527.json).
//
// What it reads:
//   layout.meta.musicmap   {n, size, points, codes, colors, under} (explorer/figure.py map_figure)
//   GET meta.points        n × int32 id, n × float32 x, n × float32 y (once per map)
//   GET meta.codes         n × uint8: each point's legend entry (once per colour choice)
//   #map-filter[data-filter]  {n, bits} a bit per point that stands out (the rest is greyed), or null
// What it does: hover → the hover card (hovercard.js), click → the track's panel (track.js),
// lasso / box → set_props("selection") with the ids inside, in map order.
// What it says: #map[data-map-points] (points drawn, set once the map is drawn),
// window.musicmapPoints.state() / locate(id) / visible(k) for tests and the benchmark.
(function () {
  var ALPHA = 0.85;      // a point's opacity over the white plot
  var FILTERED = 0.15;   // a greyed point's
  var HIT_PX = 4;        // how far outside a point's disc the pointer still picks it

  var pts = null;        // {url, n, ids, xs, ys, grid}
  var cat = null;        // {url, codes, order}
  var shown = null;      // Uint8Array of bits, or null
  var shownCount = 0;
  var shownDrawn = false;  // has a frame been drawn since the filter last changed
  var frameFiltered = false;  // did the last frame grey by a filter
  var loading = {};      // url → true while fetched
  var image = null;      // the ImageData drawn into
  var lastMs = 0, frames = 0, drawnCount = 0;

  function graph() { return document.querySelector("#map .js-plotly-plot"); }
  function meta(gd) { return gd && gd.layout && gd.layout.meta ? gd.layout.meta.musicmap : null; }

  // above the plot's background (the first layer), below the lasso outline and the overlay
  function canvasOf(gd) {
    return window.musicmapLayer.canvas(gd, "musicmap-points", function (box) {
      var first = box.querySelector(":scope > svg.main-svg");
      return first ? first.nextSibling : box.firstChild;
    });
  }

  function fetchBytes(url, then) {
    if (loading[url]) { return; }
    loading[url] = true;
    fetch(url, {credentials: "same-origin"})
      .then(function (r) { if (!r.ok) { throw new Error(url + ": " + r.status); } return r.arrayBuffer(); })
      .then(function (buf) { delete loading[url]; then(buf); })
      .catch(function (e) { delete loading[url]; console.error("musicmap: the map's points", e); });
  }

  // A uniform grid over the points (counting sort): a pick looks at a few cells, not at every point.
  function buildGrid(xs, ys, n) {
    var x0 = Infinity, x1 = -Infinity, y0 = Infinity, y1 = -Infinity, i;
    for (i = 0; i < n; i++) {
      if (xs[i] < x0) { x0 = xs[i]; } if (xs[i] > x1) { x1 = xs[i]; }
      if (ys[i] < y0) { y0 = ys[i]; } if (ys[i] > y1) { y1 = ys[i]; }
    }
    var g = Math.max(4, Math.min(1024, Math.round(Math.sqrt(n / 4))));
    var sx = g / ((x1 - x0) || 1), sy = g / ((y1 - y0) || 1);
    var cell = new Int32Array(n), start = new Int32Array(g * g + 1), rows = new Int32Array(n);
    for (i = 0; i < n; i++) {
      var cx = Math.min(g - 1, Math.floor((xs[i] - x0) * sx)), cy = Math.min(g - 1, Math.floor((ys[i] - y0) * sy));
      cell[i] = cy * g + cx;
      start[cell[i] + 1]++;
    }
    for (i = 0; i < g * g; i++) { start[i + 1] += start[i]; }
    var fill = start.slice(0, g * g);
    for (i = 0; i < n; i++) { rows[fill[cell[i]]++] = i; }
    return {g: g, x0: x0, y0: y0, sx: sx, sy: sy, start: start, rows: rows};
  }

  function setPoints(url, buf) {
    var n = buf.byteLength / 12;
    var ids = new Int32Array(buf, 0, n), xs = new Float32Array(buf, 4 * n, n), ys = new Float32Array(buf, 8 * n, n);
    pts = {url: url, n: n, ids: ids, xs: xs, ys: ys, grid: buildGrid(xs, ys, n), row: null};
    redraw(null);
  }

  // The drawing order: "other" first (under the rest), then every other point in one fixed shuffled
  // order, the categories interleaved. Drawn a category at a time, the legend's last covered the
  // others wherever points crowd; in map order (by id: files in path order, so folder by folder) a
  // library filed by genre would still draw its last folder's genre on top.
  function shuffled(n) {
    if (pts && pts.shuffled && pts.shuffled.length === n) { return pts.shuffled; }
    var out = new Int32Array(n), seed = 0x9e3779b9, i, j, t;
    for (i = 0; i < n; i++) { out[i] = i; }
    for (i = n - 1; i > 0; i--) {  // Fisher–Yates with a small seeded generator (mulberry32)
      seed = (seed + 0x6d2b79f5) | 0;
      t = Math.imul(seed ^ (seed >>> 15), seed | 1);
      t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
      j = ((t ^ (t >>> 14)) >>> 0) % (i + 1);
      t = out[i]; out[i] = out[j]; out[j] = t;
    }
    if (pts && pts.n === n) { pts.shuffled = out; }
    return out;
  }

  // The points' positions and codes copied into the drawing order, once per order and points: a
  // frame then reads them front to back (gathered at random from map order, a 1M-point frame took
  // 94 ms instead of 40).
  function inOrder() {
    if (cat.inOrder && cat.inOrder.pts === pts) { return cat.inOrder; }
    var n = pts.n, order = cat.order, xs = new Float32Array(n), ys = new Float32Array(n),
        codes = new Uint8Array(n), i;
    for (var j = 0; j < n; j++) { i = order[j]; xs[j] = pts.xs[i]; ys[j] = pts.ys[i]; codes[j] = cat.codes[i]; }
    cat.inOrder = {pts: pts, xs: xs, ys: ys, codes: codes};
    return cat.inOrder;
  }

  function setCodes(url, buf, under) {
    var codes = new Uint8Array(buf), n = codes.length, low = new Uint8Array(256), i, k = 0;
    (under || []).forEach(function (c) { low[c] = 1; });
    var walk = shuffled(n), order = new Int32Array(n);
    for (i = 0; i < n; i++) { if (low[codes[walk[i]]]) { order[k++] = walk[i]; } }
    for (i = 0; i < n; i++) { if (!low[codes[walk[i]]]) { order[k++] = walk[i]; } }
    cat = {url: url, codes: codes, order: order};
    redraw(null);
  }

  function load(gd) {
    var m = meta(gd);
    if (!m) { return; }
    if (!pts || pts.url !== m.points) {
      var pu = m.points;
      fetchBytes(pu, function (buf) { if (meta(graph()) && meta(graph()).points === pu) { setPoints(pu, buf); } });
    }
    if (!cat || cat.url !== m.codes) {
      var cu = m.codes, under = m.under;
      fetchBytes(cu, function (buf) { if (meta(graph()) && meta(graph()).codes === cu) { setCodes(cu, buf, under); } });
    }
  }

  // "#rrggbb" at opacity a over white, as the little-endian RGBA word ImageData holds.
  function word(hex, a) {
    var v = parseInt(hex.slice(1), 16), r = v >> 16 & 255, g = v >> 8 & 255, b = v & 255;
    var mix = function (c) { return Math.round(c * a + 255 * (1 - a)); };
    return (255 << 24 | mix(b) << 16 | mix(g) << 8 | mix(r)) >>> 0;
  }

  function ready(gd) {
    var m = meta(gd);
    return m && pts && cat && pts.url === m.points && cat.url === m.codes && cat.codes.length === pts.n &&
      gd._fullLayout && gd._fullLayout.xaxis && gd._fullLayout.xaxis._length;
  }

  function draw(moving) {
    var gd = graph();
    if (!gd || !ready(gd)) { return; }
    var t0 = performance.now();
    var canvas = canvasOf(gd);
    if (!canvas) { return; }
    var fl = gd._fullLayout, dpr = window.devicePixelRatio || 1, m = meta(gd);
    var cw = Math.round(fl.width * dpr), ch = Math.round(fl.height * dpr);
    if (canvas.width !== cw || canvas.height !== ch) {
      canvas.width = cw; canvas.height = ch;
      canvas.style.width = fl.width + "px"; canvas.style.height = fl.height + "px";
    }
    var v = window.musicmapLayer.view(gd, moving);
    var W = Math.max(1, Math.round(v.width * dpr)), H = Math.max(1, Math.round(v.height * dpr));
    var ctx = canvas.getContext("2d");
    if (!image || image.width !== W || image.height !== H) { image = ctx.createImageData(W, H); }
    var buf = new Uint32Array(image.data.buffer);
    buf.fill(0);
    // the legend's hidden entries are not drawn
    var traces = gd._fullData || [], hidden = new Uint8Array(256), colour = new Uint32Array(256),
        pale = new Uint32Array(256), c;
    for (c = 0; c < m.colors.length; c++) {
      colour[c] = word(m.colors[c], ALPHA);
      pale[c] = word(m.colors[c], FILTERED);
      hidden[c] = traces[c] && traces[c].visible !== true ? 1 : 0;
    }
    // a disc of the marker's diameter, as offsets into the image
    var r = Math.max(0.5, m.size * dpr / 2), ri = Math.ceil(r - 0.5), offs = [], dx, dy;
    for (dy = -ri; dy <= ri; dy++) {
      for (dx = -ri; dx <= ri; dx++) { if (dx * dx + dy * dy <= r * r + 0.25) { offs.push([dx, dy, dy * W + dx]); } }
    }
    var flat = new Int32Array(offs.map(function (o) { return o[2]; })), k = flat.length;
    var ax = W / v.xspan, bx = -v.x0 * ax, ay = -H / v.yspan, by = H + v.y0 * H / v.yspan;
    var g = inOrder(), xs = g.xs, ys = g.ys, codes = g.codes, order = cat.order, n = pts.n;

    function pass(wantShown, palette) {
      var count = 0;
      for (var j = 0; j < n; j++) {
        var i = order[j], code = codes[j];
        if (hidden[code]) { continue; }
        if (shown && (((shown[i >> 3] >> (i & 7)) & 1) === 1) !== wantShown) { continue; }
        var px = Math.round(xs[j] * ax + bx), py = Math.round(ys[j] * ay + by);
        if (px < -ri || py < -ri || px >= W + ri || py >= H + ri) { continue; }
        var col = palette[code];
        count++;
        if (px >= ri && py >= ri && px < W - ri && py < H - ri) {
          var base = py * W + px;
          for (var q = 0; q < k; q++) { buf[base + flat[q]] = col; }
        } else {
          for (var e = 0; e < offs.length; e++) {
            var ox = px + offs[e][0], oy = py + offs[e][1];
            if (ox >= 0 && oy >= 0 && ox < W && oy < H) { buf[oy * W + ox] = col; }
          }
        }
      }
      return count;
    }
    if (shown) {
      var greyed = pass(false, pale);  // under the tracks that stand out
      shownCount = pass(true, colour);
      drawnCount = greyed + shownCount;
    } else {
      shownCount = 0;
      drawnCount = pass(true, colour);
    }
    ctx.setTransform(1, 0, 0, 1, 0, 0);
    ctx.clearRect(0, 0, cw, ch);
    ctx.putImageData(image, Math.round(v.left * dpr), Math.round(v.top * dpr));
    lastMs = performance.now() - t0;
    frames++;
    shownDrawn = true;
    frameFiltered = shown !== null;
    var container = document.getElementById("map");
    if (container && !moving) {
      container.setAttribute("data-map-points", String(n));
      if (!container.hasAttribute("data-highlighted")) { container.setAttribute("data-highlighted", "0"); }
    }
  }

  // Draws asked for within one animation frame make one draw (Plotly's relayout and its afterplot
  // both ask; a drag asks at every mouse move): the latest view wins.
  var wanted = null;
  function redraw(moving) {
    var first = wanted === null;
    wanted = {moving: moving || null};
    if (first) {
      requestAnimationFrame(function () { var w = wanted; wanted = null; draw(w.moving); });
    }
  }

  // Each row's place in the drawing order (the later, the higher), once per order.
  function ranks() {
    if (cat.rank && cat.rank.length === pts.n) { return cat.rank; }
    var rank = new Int32Array(pts.n), order = cat.order;
    for (var j = 0; j < order.length; j++) { rank[order[j]] = j; }
    cat.rank = rank;
    return rank;
  }

  // The point under the pointer (client coordinates): its row, or -1. Of the points whose disc holds
  // the pointer, the one drawn on top (one that stands out over a greyed one, then the later in the
  // drawing order): the one the eye sees there; else the nearest whose disc is within HIT_PX.
  function pick(clientX, clientY) {
    var gd = graph();
    if (!gd || !ready(gd)) { return -1; }
    var box = gd.getBoundingClientRect(), v = window.musicmapLayer.view(gd, null), m = meta(gd);
    var px = clientX - box.left - v.left, py = clientY - box.top - v.top;
    if (px < 0 || py < 0 || px > v.width || py > v.height) { return -1; }
    var x = v.x0 + px / v.width * v.xspan, y = v.y0 + (1 - py / v.height) * v.yspan;
    var reach = m.size / 2 + HIT_PX, rx = reach / v.width * v.xspan, ry = reach / v.height * v.yspan;
    var grid = pts.grid, traces = gd._fullData || [];
    var cx0 = Math.max(0, Math.floor((x - rx - grid.x0) * grid.sx)), cx1 = Math.min(grid.g - 1, Math.floor((x + rx - grid.x0) * grid.sx));
    var cy0 = Math.max(0, Math.floor((y - ry - grid.y0) * grid.sy)), cy1 = Math.min(grid.g - 1, Math.floor((y + ry - grid.y0) * grid.sy));
    var rank = ranks(), disc = m.size * m.size / 4, n = pts.n;
    var top = -1, topKey = -1, near = -1, nearD = Infinity;
    for (var cy = cy0; cy <= cy1; cy++) {
      for (var cx = cx0; cx <= cx1; cx++) {
        var c = cy * grid.g + cx;
        for (var s = grid.start[c]; s < grid.start[c + 1]; s++) {
          var i = grid.rows[s];
          if (traces[cat.codes[i]] && traces[cat.codes[i]].visible !== true) { continue; }
          var ddx = (pts.xs[i] - x) / v.xspan * v.width, ddy = (pts.ys[i] - y) / v.yspan * v.height;
          var d = ddx * ddx + ddy * ddy;
          if (d <= disc) {
            var key = rank[i] + (shown && ((shown[i >> 3] >> (i & 7)) & 1) ? n : 0);
            if (key > topKey) { top = i; topKey = key; }
          } else if (d <= reach * reach && d < nearD) {
            near = i; nearD = d;
          }
        }
      }
    }
    return top >= 0 ? top : near;
  }

  // The rows inside a lasso (data-space polygon) or a box, of the categories shown, in map order.
  function inside(event) {
    var gd = graph(), out = [];
    if (!gd || !ready(gd) || !event) { return out; }
    var traces = gd._fullData || [], xs = pts.xs, ys = pts.ys, n = pts.n, i;
    var visible = function (i) { var t = traces[cat.codes[i]]; return !t || t.visible === true; };
    if (event.range && event.range.x && event.range.y) {
      var xa = Math.min(event.range.x[0], event.range.x[1]), xb = Math.max(event.range.x[0], event.range.x[1]);
      var ya = Math.min(event.range.y[0], event.range.y[1]), yb = Math.max(event.range.y[0], event.range.y[1]);
      for (i = 0; i < n; i++) { if (xs[i] >= xa && xs[i] <= xb && ys[i] >= ya && ys[i] <= yb && visible(i)) { out.push(i); } }
      return out;
    }
    var lx = event.lassoPoints && event.lassoPoints.x, ly = event.lassoPoints && event.lassoPoints.y;
    if (!lx || lx.length < 3) { return out; }
    var x0 = Math.min.apply(null, lx), x1 = Math.max.apply(null, lx), y0 = Math.min.apply(null, ly), y1 = Math.max.apply(null, ly);
    for (i = 0; i < n; i++) {
      var x = xs[i], y = ys[i];
      if (x < x0 || x > x1 || y < y0 || y > y1 || !visible(i)) { continue; }
      var odd = false;
      for (var a = 0, b = lx.length - 1; a < lx.length; b = a++) {
        if ((ly[a] > y) !== (ly[b] > y) && x < (lx[b] - lx[a]) * (y - ly[a]) / (ly[b] - ly[a]) + lx[a]) { odd = !odd; }
      }
      if (odd) { out.push(i); }
    }
    return out;
  }

  // a row's point: track id, client coordinates, map coordinates
  function place(gd, row) {
    var box = gd.getBoundingClientRect(), v = window.musicmapLayer.view(gd, null);
    return {id: pts.ids[row], x: box.left + v.left + (pts.xs[row] - v.x0) / v.xspan * v.width,
            y: box.top + v.top + (1 - (pts.ys[row] - v.y0) / v.yspan) * v.height, mx: pts.xs[row], my: pts.ys[row]};
  }

  function setShown(value) {
    shown = null;
    shownDrawn = false;
    if (value && value.bits) {
      var raw = atob(value.bits), bytes = new Uint8Array(raw.length);
      for (var i = 0; i < raw.length; i++) { bytes[i] = raw.charCodeAt(i); }
      shown = bytes;
    }
    redraw(null);
  }

  function setProps(id, value) {
    if (window.dash_clientside && window.dash_clientside.set_props) { window.dash_clientside.set_props(id, {data: value}); }
  }

  function attach() {
    var filter = document.getElementById("map-filter");
    if (filter && !filter.musicmapPoints) {
      filter.musicmapPoints = true;
      var read = function () {
        try { return JSON.parse(filter.getAttribute("data-filter") || "null"); } catch (e) { return null; }
      };
      new MutationObserver(function () { setShown(read()); })
        .observe(filter, {attributes: true, attributeFilter: ["data-filter"]});
      setShown(read());
    }
    var gd = graph();
    if (!gd || !gd.on || gd.musicmapPoints) { return; }
    gd.musicmapPoints = true;
    gd.on("plotly_afterplot", function () { load(gd); redraw(null); });
    gd.on("plotly_relayouting", function (moving) { redraw(moving); });
    gd.on("plotly_relayout", function () { redraw(null); });
    gd.on("plotly_selected", function (event) {
      if (!event) { return; }
      var rows = inside(event), ids = new Array(rows.length);
      for (var i = 0; i < rows.length; i++) { ids[i] = pts.ids[rows[i]]; }
      setProps("selection", ids.length ? ids : null);
      // the selection is shown by greying the rest: Plotly's outline would outlive a "clear"
      if (window.Plotly && gd.layout.selections && gd.layout.selections.length) {
        setTimeout(function () { window.Plotly.relayout(gd, {selections: []}); }, 0);
      }
    });
    gd.on("plotly_deselect", function () { setProps("selection", null); });
    // hover: the card of the point under the pointer; a pointer cursor over a point
    var hoverFrame = 0, lastMove = null;
    gd.addEventListener("mousemove", function (e) {
      lastMove = e;
      if (hoverFrame) { return; }
      hoverFrame = requestAnimationFrame(function () {
        hoverFrame = 0;
        var card = window.musicmapHoverCard, row = lastMove.buttons ? -1 : pick(lastMove.clientX, lastMove.clientY);
        var drag = gd.querySelector(".nsewdrag");
        if (drag) { drag.style.cursor = row >= 0 ? "pointer" : ""; }
        if (!card) { return; }
        if (row >= 0) { card.hover(pts.ids[row], lastMove); } else { card.hide(); }
      });
    });
    gd.addEventListener("mouseleave", function () { if (window.musicmapHoverCard) { window.musicmapHoverCard.hide(); } });
    // a click (press and release in place) selects the point under it
    gd.addEventListener("mousedown", function (e) {
      pressed = e.button === 0 ? {x: e.clientX, y: e.clientY, t: performance.now()} : null;
    }, true);
    load(gd);
    redraw(null);
  }

  window.musicmapPoints = {
    redraw: function () { redraw(null); },
    // what is drawn: the map's points, whether all has arrived, the last frame's milliseconds,
    // frames so far, points in the last frame (in view, not hidden), and the filter
    state: function () {
      var gd = graph();
      return {n: pts ? pts.n : 0, ready: !!(gd && ready(gd)), ms: lastMs, frames: frames, drawn: drawnCount,
              filtered: frameFiltered, shown: shownCount};
    },
    // a track's point in client coordinates (null: not on the map)
    locate: function (id) {
      var gd = graph();
      if (!gd || !ready(gd)) { return null; }
      if (!pts.row) { pts.row = new Map(); for (var i = 0; i < pts.n; i++) { pts.row.set(pts.ids[i], i); } }
      var row = pts.row.get(id);
      if (row === undefined) { return null; }
      return place(gd, row);
    },
    // the point of the map's row-th track
    at: function (row) { var gd = graph(); return gd && ready(gd) && row >= 0 && row < pts.n ? place(gd, row) : null; },
    // every track's point (client coordinates), for tests on small maps
    all: function () {
      var gd = graph(), out = [];
      if (!gd || !ready(gd)) { return out; }
      for (var i = 0; i < pts.n; i++) { out.push(place(gd, i)); }
      return out;
    },
    // the tracks a filter (or a selection shown on the map) makes stand out, and how many of them
    // the last frame drew; null without a filter
    shown: function () {
      if (!shown || !pts || !shownDrawn) { return null; }
      var ids = [];
      for (var i = 0; i < pts.n; i++) { if ((shown[i >> 3] >> (i & 7)) & 1) { ids.push(pts.ids[i]); } }
      return {ids: ids, drawn: shownCount};
    },
    // up to k tracks drawn in view (not greyed), in map order: ids
    visible: function (k) {
      var gd = graph(), out = [];
      if (!gd || !ready(gd)) { return out; }
      var v = window.musicmapLayer.view(gd, null);
      for (var i = 0; i < pts.n && out.length < k; i++) {
        var fx = (pts.xs[i] - v.x0) / v.xspan, fy = (pts.ys[i] - v.y0) / v.yspan;
        if (fx > 0.02 && fx < 0.98 && fy > 0.02 && fy < 0.98 && (!shown || (shown[i >> 3] >> (i & 7)) & 1)) { out.push(pts.ids[i]); }
      }
      return out;
    },
    pick: function (clientX, clientY) { var row = pick(clientX, clientY); return row >= 0 ? pts.ids[row] : null; },
  };
  // a press on the map (mousedown above) released in place selects the point under it; once for
  // the page, whichever graph element Dash renders
  var pressed = null;
  window.addEventListener("mouseup", function (e) {
    var p = pressed;
    pressed = null;
    if (!p || Math.abs(e.clientX - p.x) > 4 || Math.abs(e.clientY - p.y) > 4 || performance.now() - p.t > 800) { return; }
    var row = pick(e.clientX, e.clientY);
    if (row >= 0) { window.musicmapTrack.open(pts.ids[row]); }  // the panel asked for at once (track.js)
  }, true);
  window.addEventListener("resize", function () { setTimeout(function () { redraw(null); }, 50); });
  // Dash renders the graph after this script runs, and again when the page is rebuilt.
  new MutationObserver(attach).observe(document.documentElement, {childList: true, subtree: true});
})();
