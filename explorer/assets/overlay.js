// The map's highlight (issue #20), drawn on a canvas over the points (pointmap.js): the selected
// track (or an uploaded clip's star) with a line to each of its neighbours' rings, or a song path,
// and the rest of the map dimmed by one translucent fill: a click costs a canvas draw, not a
// redraw of every point. Set directly by the track panel (track.js, window.musicmapOverlay.set), and
// by #highlight's data-highlight attribute (JSON, from the server's callbacks: a path, a clip, "×";
// seen here the moment it is rendered); redrawn when Plotly pans, zooms or redraws.
// #map's data-highlighted says how many tracks are highlighted (for tests and tools).
(function () {
  var DIM = "rgba(255, 255, 255, 0.62)";  // the points' 0.85 opacity shows as ~0.3 under it
  var LINE = "rgba(17, 17, 17, 0.35)";
  var highlight = {mode: "none", marks: []};
  var drawn = 0;

  function graph() { return document.querySelector("#map .js-plotly-plot"); }

  // above the points (pointmap.js), below the last layer (the hover labels)
  function canvasOf(gd) {
    return window.musicmapLayer.canvas(gd, "musicmap-overlay", function (box) {
      var layers = box.querySelectorAll(":scope > svg.main-svg");
      return layers.length > 1 ? layers[layers.length - 1] : null;
    });
  }

  function shape(ctx, x, y, mark) {
    var r = mark.size / 2;
    ctx.beginPath();
    if (mark.symbol === "diamond") {
      ctx.moveTo(x, y - r * 1.2); ctx.lineTo(x + r, y); ctx.lineTo(x, y + r * 1.2); ctx.lineTo(x - r, y);
      ctx.closePath();
    } else if (mark.symbol === "star") {
      for (var i = 0; i < 10; i++) {
        var a = -Math.PI / 2 + i * Math.PI / 5, rr = i % 2 ? r * 0.5 : r * 1.15;
        if (i === 0) { ctx.moveTo(x + rr * Math.cos(a), y + rr * Math.sin(a)); }
        else { ctx.lineTo(x + rr * Math.cos(a), y + rr * Math.sin(a)); }
      }
      ctx.closePath();
    } else {
      ctx.arc(x, y, r, 0, 2 * Math.PI);
    }
    if (mark.fill) { ctx.fillStyle = mark.fill; ctx.fill(); }
    ctx.lineWidth = 3;
    ctx.strokeStyle = mark.ring;
    ctx.stroke();
  }

  function draw(moving) {
    var gd = graph();
    if (!gd || !gd._fullLayout || !gd._fullLayout.xaxis || !gd._fullLayout.xaxis._length) { return 0; }
    var canvas = canvasOf(gd);
    if (!canvas) { return 0; }
    var fl = gd._fullLayout, dpr = window.devicePixelRatio || 1;
    var w = Math.round(fl.width * dpr), h = Math.round(fl.height * dpr);
    if (canvas.width !== w || canvas.height !== h) {
      canvas.width = w; canvas.height = h;
      canvas.style.width = fl.width + "px"; canvas.style.height = fl.height + "px";
    }
    var ctx = canvas.getContext("2d");
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    ctx.clearRect(0, 0, fl.width, fl.height);
    var marks = highlight.marks || [];
    drawn = 0;
    if (!marks.length) { return 0; }
    var v = window.musicmapLayer.view(gd, moving);
    var X = function (x) { return v.left + (x - v.x0) / v.xspan * v.width; };
    var Y = function (y) { return v.top + (1 - (y - v.y0) / v.yspan) * v.height; };
    ctx.save();
    ctx.beginPath();
    ctx.rect(v.left, v.top, v.width, v.height);
    ctx.clip();
    ctx.fillStyle = DIM;  // everything but the highlight dimmed
    ctx.fillRect(v.left, v.top, v.width, v.height);
    ctx.beginPath();
    ctx.lineWidth = 1;
    ctx.strokeStyle = LINE;
    var i;
    for (i = 1; i < marks.length && highlight.mode !== "spots"; i++) {  // spots: a search's matches, no lines
      var from = highlight.mode === "path" ? marks[i - 1] : marks[0];
      ctx.moveTo(X(from.x), Y(from.y));
      ctx.lineTo(X(marks[i].x), Y(marks[i].y));
    }
    ctx.stroke();
    for (i = marks.length - 1; i >= 0; i--) {  // the first mark (the selected track) on top
      shape(ctx, X(marks[i].x), Y(marks[i].y), marks[i]);
    }
    ctx.restore();
    drawn = marks.length;
    return drawn;
  }

  function read(el, name) {
    try { return JSON.parse(el.getAttribute(name) || "null"); } catch (e) { return null; }
  }

  function attach() {
    var source = document.getElementById("highlight");
    if (source && !source.musicmapOverlay) {
      source.musicmapOverlay = true;
      new MutationObserver(function () { window.musicmapOverlay.set(read(source, "data-highlight")); })
        .observe(source, {attributes: true, attributeFilter: ["data-highlight"]});
      window.musicmapOverlay.set(read(source, "data-highlight"));
    }
    var gd = graph();
    if (!gd || !gd.on) { return; }
    if (!gd.musicmapOverlay) {
      gd.musicmapOverlay = true;
      gd.on("plotly_afterplot", function () { draw(null); });
      gd.on("plotly_relayouting", function (moving) { draw(moving); });
      gd.on("plotly_relayout", function () { draw(null); });
      draw(null);
    }
  }

  window.musicmapOverlay = {
    set: function (value) {
      highlight = value && value.marks ? value : {mode: "none", marks: []};
      var drawn = draw(null);
      var container = document.getElementById("map");
      if (container) {
        var ids = new Set(highlight.marks.map(function (m) { return m.id; }));
        container.setAttribute("data-highlighted", String(ids.size));
      }
      return drawn;
    },
    redraw: function () { return draw(null); },
    // what is drawn now: the highlight and how many marks the canvas holds
    state: function () {
      return {mode: highlight.mode, marks: highlight.marks, drawn: drawn};
    },
  };
  window.addEventListener("resize", function () { setTimeout(function () { draw(null); }, 50); });
  // Dash renders the graph after this script runs, and again when the page is rebuilt.
  new MutationObserver(attach).observe(document.documentElement, {childList: true, subtree: true});
})();
