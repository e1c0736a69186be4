// Track lists (the similar tracks, a path, an extension, tracks like a selection), drawn from the
// JSON in their data-rows attribute (explorer/panels.py, track_list). A list of Dash components
// costs the page ~10 ms a row to take in; these rows cost nothing to Dash. One row: the cover,
// "artist – title" over the genre (and, where the person's taste moved it, why: "↑ close to 3 tracks
// you liked"), the score as a bar and a number, "why?" where it applies, and 👍/👎 (taste.js).
// A row's button opens its track (track.js), "why?" asks for the explanation; the panels' action buttons
// (explorer/panels.py, action) make a selection, start a song path or leave a "like this, but…" search: all through
// dash_clientside.set_props, as a control's change would.
(function () {
  function el(tag, className, text) {
    var node = document.createElement(tag);
    if (className) { node.className = className; }
    if (text !== undefined) { node.textContent = text; }
    return node;
  }

  function row(r) {
    var li = el("li", "similar-row");
    var button = el("button", "similar-item");
    button.type = "button";
    button.title = r.name;
    button.setAttribute("data-track", String(r.id));
    var img = el("img", "thumb");
    img.setAttribute("data-src", "/api/v1/art/" + r.id + "?size=80");  // loaded after the list's paint
    img.width = 40; img.height = 40; img.alt = "";
    var lines = el("span", "lines");
    lines.append(el("span", "name", r.name), el("span", "genre", r.genre || ""));
    if (r.note) { lines.append(el("span", "taste-why", r.note)); }  // how the person's taste moved it, or the mix's why
    button.append(img, lines);
    li.append(button);
    if (window.musicmapTaste) { li.append.apply(li, window.musicmapTaste.buttons(r.id, r.thumb || "")); }
    if (r.bar !== null && r.bar !== undefined) {
      var bar = el("span", "score-bar");
      bar.title = "similarity " + r.score;
      var fill = el("span");
      fill.style.width = r.bar + "%";
      bar.append(fill);
      li.append(bar);
    }
    if (r.score) { li.append(el("span", "score", r.score)); }
    if (r.why) {
      var why = el("button", "why", "why?");
      why.type = "button";
      why.title = "what the two tracks share";
      why.setAttribute("data-pair", r.why);
      li.append(why);
    }
    return li;
  }

  function draw(list) {
    var raw = list.getAttribute("data-rows");
    if (list.musicmapDrawn === raw) { return; }
    list.musicmapDrawn = raw;
    var rows = [];
    try { rows = JSON.parse(raw || "[]"); } catch (e) { rows = []; }
    list.replaceChildren.apply(list, rows.map(row));
    pictures(list);
  }

  // Cover art once the list is painted: a dozen images (an SVG placeholder is drawn on the page's own
  // thread) would otherwise hold up the first paint of the rows by 15-60 ms on a 2-core machine.
  function pictures(root) {
    requestAnimationFrame(function () {
      setTimeout(function () {
        var waiting = root.querySelectorAll("img[data-src]");
        for (var i = 0; i < waiting.length; i++) {
          waiting[i].src = waiting[i].getAttribute("data-src");
          waiting[i].removeAttribute("data-src");
        }
      }, 0);
    });
  }

  function drawAll(root) {
    var lists = (root || document).querySelectorAll("ol[data-rows]");
    for (var i = 0; i < lists.length; i++) { draw(lists[i]); }
  }

  new MutationObserver(function (changes) {
    for (var i = 0; i < changes.length; i++) {
      var c = changes[i];
      if (c.type === "attributes" && c.target.matches && c.target.matches("ol[data-rows]")) { draw(c.target); }
      else if (c.type === "childList") {
        for (var j = 0; j < c.addedNodes.length; j++) {
          var node = c.addedNodes[j];
          if (node.nodeType === 1 && !(node instanceof SVGElement)) { drawAll(node.parentNode || node); break; }
        }
      }
    }
  }).observe(document.documentElement, {childList: true, subtree: true, attributes: true,
                                         attributeFilter: ["data-rows"]});

  document.addEventListener("click", function (event) {
    var target = event.target.closest ? event.target.closest("ol[data-rows] button, button[data-action]") : null;
    if (!target || !window.dash_clientside || !window.dash_clientside.set_props) { return; }
    var action = target.getAttribute("data-action"), value = target.getAttribute("data-value") || "";
    if (action === "select") {  // "select these": the ids become the selection
      var ids = value.split(",").filter(function (v) { return v !== ""; }).map(Number);
      window.dash_clientside.set_props("selection", {data: ids.length ? ids : null});
    } else if (action === "path-from") {  // "start a path here"
      window.dash_clientside.set_props("path-from", {data: Number(value)});
    } else if (action === "like-clear") {  // × beside "like …, but": the whole library again
      window.dash_clientside.set_props("search-like", {data: null});
    } else if (target.hasAttribute("data-pair")) {
      window.dash_clientside.set_props("explain-pair", {data: {pair: target.getAttribute("data-pair"), at: Date.now()}});
    } else if (target.hasAttribute("data-track")) {
      var track = Number(target.getAttribute("data-track")), list = target.closest("ol[data-rows]");
      if (window.musicmapTaste && list) { window.musicmapTaste.opened(track, window.musicmapTaste.contextOf(list)); }
      window.musicmapTrack.open(track);  // asks at once, then tells Dash
    }
  });

  window.musicmapLists = {draw: draw, pictures: pictures};
})();
