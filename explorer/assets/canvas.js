// What the map's two canvases share (pointmap.js draws the points, overlay.js the highlight): each
// lies inside Plotly's .svg-container, between its SVG layers, and maps data to pixels from the
// axes' ranges. Loaded before both (Dash loads the assets in name order).
(function () {
  window.musicmapLayer = {
    // The canvas of this class in the plot, made on first use and put before the node `before(box)`
    // returns (null: last).
    canvas: function (gd, className, before) {
      var box = gd.querySelector(".svg-container");
      if (!box) { return null; }
      var canvas = box.querySelector("canvas." + className);
      if (!canvas) {
        canvas = document.createElement("canvas");
        canvas.className = className;
        canvas.style.cssText = "position:absolute;left:0;top:0;pointer-events:none;";
        box.insertBefore(canvas, before(box));
      }
      return canvas;
    },
    // Data to pixels from the axes' ranges (during a drag, the ranges Plotly reports in `moving`).
    view: function (gd, moving) {
      var fl = gd._fullLayout, xa = fl.xaxis, ya = fl.yaxis;
      var xr = [xa.range[0], xa.range[1]], yr = [ya.range[0], ya.range[1]];
      if (moving && moving["xaxis.range[0]"] !== undefined) { xr = [moving["xaxis.range[0]"], moving["xaxis.range[1]"]]; }
      if (moving && moving["yaxis.range[0]"] !== undefined) { yr = [moving["yaxis.range[0]"], moving["yaxis.range[1]"]]; }
      return {left: xa._offset, top: ya._offset, width: xa._length, height: ya._length,
              x0: xr[0], xspan: (xr[1] - xr[0]) || 1, y0: yr[0], yspan: (yr[1] - yr[0]) || 1};
    }
  };
})();
