// The map's state for tests and tools, on its container #map (issue #20):
//   data-map-points  how many tracks are drawn (set once the map is drawn, and after every redraw)
//   data-highlighted how many tracks are highlighted (set by overlay.js)
(function () {
  function update(gd) {
    var container = document.getElementById("map");
    var traces = gd._fullData || [];
    var points = 0;
    for (var i = 0; i < traces.length; i++) {
      points += traces[i].x ? traces[i].x.length : 0;
    }
    if (container) {
      container.setAttribute("data-map-points", String(points));
      if (!container.hasAttribute("data-highlighted")) { container.setAttribute("data-highlighted", "0"); }
    }
  }
  function attach() {
    var gd = document.querySelector("#map .js-plotly-plot");
    if (!gd || !gd.on) { return false; }
    if (!gd.musicmapState) {
      gd.musicmapState = true;
      gd.on("plotly_afterplot", function () { update(gd); });
      if (gd._fullData) { update(gd); }
    }
    return true;
  }
  // Dash renders the graph after this script runs, and again when the page is rebuilt.
  new MutationObserver(function () { attach(); }).observe(document.documentElement, {childList: true, subtree: true});
})();
