// The map's hover card (issue #20): a track's cover, title, artist, album, genre and year, fetched
// by id from /api/v1/map/<id> when the pointer rests on a point (found by pointmap.js). Nothing per
// point is sent with the map (a million titles would be 170 MB of JSON). Answers are cached; the
// newest hover wins.
(function () {
  var cache = new Map();
  var wanted = null;

  function card() { return document.getElementById("hover-card"); }

  function line(className, value) {
    var el = document.createElement("div");
    el.className = className;
    el.textContent = value;
    return el;
  }

  function fill(el, t) {
    var img = document.createElement("img");
    img.src = "/api/v1/art/" + t.id + "?size=96";
    img.width = 48; img.height = 48; img.alt = "";
    var text = document.createElement("div");
    text.className = "hover-text";
    var meta = [t.album, t.genre, t.year].filter(function (v) { return v !== null && v !== undefined && v !== ""; });
    text.append(line("hover-title", t.title || "—"), line("hover-artist", t.artist || "—"),
                line("hover-meta", meta.join(" · ")));
    el.replaceChildren(img, text);
    el.setAttribute("data-track", String(t.id));
  }

  function place(el, event) {
    var box = el.parentElement.getBoundingClientRect();
    var x = event.clientX - box.left + 16, y = event.clientY - box.top + 16;
    el.hidden = false;
    if (x + el.offsetWidth > box.width) { x = Math.max(0, x - el.offsetWidth - 32); }
    if (y + el.offsetHeight > box.height) { y = Math.max(0, y - el.offsetHeight - 32); }
    el.style.left = x + "px";
    el.style.top = y + "px";
  }

  function show(id, event) {
    var el = card();
    if (!el || wanted !== id) { return; }
    fill(el, cache.get(id));
    place(el, event);
  }

  // The point under the pointer is found by pointmap.js, which calls these.
  function hover(id, evt) {
    id = Number(id);
    var event = {clientX: evt.clientX, clientY: evt.clientY};
    wanted = id;
    if (cache.has(id)) { show(id, event); return; }
    fetch("/api/v1/map/" + id, {credentials: "same-origin"})
      .then(function (r) { return r.ok ? r.json() : null; })
      .then(function (t) {
        if (!t) { return; }
        if (cache.size > 5000) { cache.clear(); }
        cache.set(id, t);
        show(id, event);
      })
      .catch(function () { /* a lost hover card is not worth an error */ });
  }

  function hide() {
    wanted = null;
    var el = card();
    if (el) { el.hidden = true; }
  }

  window.musicmapHoverCard = {hover: hover, hide: hide};
})();
