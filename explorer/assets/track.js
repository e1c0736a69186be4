// The track panel (issue #20): drawn by the page from one JSON request, GET /api/v1/panel/<id>
// (explorer/panels.py, track_view), not by a Dash callback. A click on the map or on a list row asks
// for it at once (window.musicmapTrack.open) and draws the panel and the map's highlight the moment
// it comes: Dash's round trip (its renderer before the request, the callback, React taking in the
// panel's components) was most of a click's 100 ms. Dash still keeps the chosen track (the
// "selected" store: the URL, the keys, other callbacks); a change of it or of a variety control
// reaches here through a browser-side callback (explorer/callbacks.py), which asks again only when
// the question differs from the last one.
// Ids kept for tools and tests: #track-title, #player, #similar-list (drawn by lists.js),
// #similar-problem, #select-similar, #path-start-note, #path-steps, #path-go, #path-from-button.
(function () {
  var controls = {k: null, per_artist: null, per_album: null, dedupe: false, where: "", path_from: null, taste: true};
  var asked = null;  // the last question: its URL (a track's) or "none"
  var pending = false;  // the last question is not answered yet
  var failed = false;  // the last question's answer was an error
  var shown = null;  // the track whose panel is drawn
  var opening = null;  // a track chosen on the page that Dash has not been told of yet
  var told = [];  // tracks Dash was told of whose echo has not come back
  var serial = 0;

  function box() { return document.getElementById("track-view"); }

  function el(tag, attrs, children) {
    var node = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (name) {
      var value = attrs[name];
      if (value === null || value === undefined || value === false) { return; }
      if (name === "text") { node.textContent = value; } else { node.setAttribute(name, value === true ? "" : value); }
    });
    (children || []).forEach(function (child) { if (child) { node.append(child); } });
    return node;
  }

  function url(track) {
    var q = new URLSearchParams();
    var k = Number(controls.k);
    if (k >= 1) { q.set("k", String(Math.floor(k))); }
    if (Number(controls.per_artist) >= 1) { q.set("max_per_artist", String(Math.floor(controls.per_artist))); }
    if (Number(controls.per_album) >= 1) { q.set("max_per_album", String(Math.floor(controls.per_album))); }
    if (controls.dedupe) { q.set("dedupe", "true"); }
    if (controls.where && String(controls.where).trim()) { q.set("where", String(controls.where).trim()); }
    if (controls.path_from !== null && controls.path_from !== undefined) { q.set("path_from", String(controls.path_from)); }
    if (controls.taste === false) { q.set("taste", "false"); }  // "use my taste" off: plain similarity
    var s = q.toString();
    return "/api/v1/panel/" + track + (s ? "?" + s : "");
  }

  function setProps(id, props) {
    if (window.dash_clientside && window.dash_clientside.set_props) { window.dash_clientside.set_props(id, props); }
  }

  // After the next paint: what Dash is told of a click (its renderer's work, 10-30 ms on this page,
  // would otherwise hold up the panel's drawing on a 2-core machine).
  function afterPaint(fn) {
    requestAnimationFrame(function () { setTimeout(fn, 0); });
  }

  // Dash's own copy of the highlight (#highlight's attribute) follows what is drawn, after the paint:
  // a later highlight from a Dash callback (a path, a clip) is then always a change the overlay sees.
  // Only if it is still what is drawn: a clip's star or a path that came meanwhile is not undone.
  function keepDashInStep(highlight) {
    afterPaint(function () {
      if (window.musicmapOverlay.state().marks !== highlight.marks) { return; }
      setProps("highlight", {"data-highlight": JSON.stringify(highlight)});
    });
  }

  function prompt(view) {
    view.replaceChildren(el("p", {text: view.getAttribute("data-prompt") || ""}));
  }

  // A file the browser cannot play (its decoder refuses it, or the file is gone): said under the
  // player, with the file to download, rather than a silent 0:00.
  function playerError(player) {
    var code = player.error ? player.error.code : 0;
    var why = code === 4 ? "This browser cannot play this file" : code === 2 ? "The file could not be fetched"
                         : "The file could not be played";
    return el("div", {"class": "error", id: "player-error", title: player.error && player.error.message || ""}, [
      document.createTextNode(why + ": "),
      el("a", {href: player.getAttribute("src"), download: "", text: "download it"}),
      document.createTextNode(" to play it elsewhere.")]);
  }

  function unplayable(event) {
    var player = event.target, old = document.getElementById("player-error");
    if (old) { old.remove(); }
    if (player.isConnected) { player.after(playerError(player)); }
  }

  function panel(t) {
    if (window.musicmapTaste) { window.musicmapTaste.recording(t.recording); }  // before the thumbs are drawn
    var rows = t.fields.map(function (f) {
      return el("tr", {}, [el("th", {text: f[0]}), el("td", {text: f[1], title: f[2]})]);
    });
    var player = document.getElementById("player");
    if (player && player.closest("#track-view")) {  // the same player: its volume stays
      if (!player.src.endsWith(t.audio)) { player.src = t.audio; player.play().catch(function () {}); }
    } else {
      player = el("audio", {id: "player", src: t.audio, controls: true, autoplay: true, preload: "auto"});
      player.addEventListener("error", unplayable);
    }
    var out = [
      el("div", {"class": "track-head"}, [
        el("img", {"data-src": t.cover, "class": "cover", alt: "", width: "96", height: "96"}),
        el("div", {}, [el("h3", {id: "track-title", text: t.title}), el("p", {"class": "what", text: t.byline}),
                       el("div", {"class": "thumbs", id: "track-thumbs"},
                          (window.musicmapTaste ? window.musicmapTaste.buttons(t.id, t.thumb || "",
                                                                              {liked: "thumb-up", disliked: "thumb-down"}) : [])
                            .concat([el("span", {"class": "what", id: "thumb-off", hidden: t.recording.on,
                                                 text: t.recording.on ? "" : "not recorded: " + t.recording.why})]))])]),
      el("table", {"class": "track-table"}, [el("tbody", {}, rows)]),
      player,
    ];
    if (player.error) { out.push(playerError(player)); }  // the same player, already failed on this file
    if (t.styles.length) {
      out.push(el("div", {"class": "styles"}, [el("h4", {text: t.styles_heading})].concat(t.styles.map(function (s) {
        var bar = el("div", {"class": "bar"});
        bar.style.width = s.width + "%";
        return el("div", {"class": "style-row"}, [el("span", {text: s.label}), bar]);
      }))));
    }
    if (t.problem) { out.push(el("div", {"class": "error", id: "similar-problem", text: "filter not applied: " + t.problem})); }
    var list = el("ol", {id: "similar-list", "class": "track-list", "data-rows": JSON.stringify(t.similar)});
    window.musicmapLists.draw(list);
    out.push(el("h4", {text: t.similar_heading}));
    if (t.taste) {
      out.push(el("p", {"class": "what", id: "similar-taste",
                        text: "steered by your taste (" + t.taste.liked + " liked, " + t.taste.disliked + " disliked, "
                              + t.taste.plays + " played, " + t.taste.skips + " skipped; “use my taste” turns it off)"}));
    }
    out.push(list,
             el("p", {"class": "what keys", text: "keys: j/k move · Enter open · n most similar · b back · space play/pause · l like · d dislike · / search"}),
             el("button", {type: "button", "class": "small-button", "data-action": "select", "data-value": t.select,
                           id: "select-similar", text: "select these"}),
             el("form", {"class": "like-but", id: "like-but", "data-track": String(t.id)}, [
               el("label", {"for": "like-but-text", text: "like this, but… "}),
               el("input", {id: "like-but-text", type: "text", placeholder: "calmer, more piano", maxlength: "300",
                            autocomplete: "off"}),
               el("button", {type: "submit", "class": "small-button", text: "find"})]),
             el("h4", {text: "Song path"}));
    var path = t.path;
    if (path.start !== null) {
      out.push(el("div", {"class": "path-controls"}, [
        el("span", {text: "from " + path.start + " to here, in "}),
        el("input", {id: "path-steps", type: "number", min: "2", max: String(path.max_steps), step: "1",
                     value: String(path.steps), "class": "path-steps"}),
        el("span", {text: " tracks "}),
        el("button", {type: "button", id: "path-go", "class": "small-button", "data-from": String(path.start_id),
                      "data-to": String(t.id), text: "draw the path"})]));
    } else if (path.starts_here) {
      out.push(el("p", {"class": "what", id: "path-start-note", text: "The path starts here: now pick the track it should end on."}));
    }
    out.push(el("button", {type: "button", "class": "small-button", "data-action": "path-from", "data-value": String(t.id),
                           id: "path-from-button",
                           title: "then pick another track: a path of similar tracks leads from this one to that one",
                           text: "start a path here"}));
    return out;
  }

  function draw(view, t) {
    view.replaceChildren.apply(view, panel(t));
    window.musicmapLists.pictures(view);  // the cover after the paint, as the list's
    shown = t.id;
    window.musicmapOverlay.set(t.highlight);
    keepDashInStep(t.highlight);
    var clip = document.getElementById("panel");
    if (clip && clip.childNodes.length) { setProps("panel", {children: null}); }  // a clip's panel gives way
  }

  // An answer that is an error: said in place of the panel, or, when the panel shown is this track's
  // (a control changed), over it, the panel and its player kept.
  function fail(view, track, message) {
    failed = true;
    if (shown === track) {
      var line = document.getElementById("panel-error") || el("div", {"class": "error", id: "panel-error"});
      line.textContent = message;
      view.prepend(line);
      return;
    }
    view.replaceChildren(el("div", {"class": "error", id: "panel-error", text: message}));
    clearHighlight();
    shown = null;
  }

  function clearHighlight() {
    var s = window.musicmapOverlay.state();  // only this panel's own: a clip's star or a path stays
    if (shown !== null && s.mode === "rays" && s.marks.length && s.marks[0].id === shown) {
      var none = {mode: "none", marks: []};
      window.musicmapOverlay.set(none);
      keepDashInStep(none);
    }
  }

  // Dash is told of a track chosen on the page once its panel is drawn (after the paint), unless
  // another was chosen meanwhile; its echo (the callback below, called with this track) is known.
  function tellDash(track) {
    if (opening !== track) { return; }
    opening = null;
    told.push(track);
    setProps("selected", {data: track});
  }

  // Ask for a track's panel (or draw the prompt for none). A question already asked is not asked
  // again, unless its answer was an error and a person asks (``retry``).
  function ask(track, retry, force) {
    var view = box();
    if (!view) { return; }
    if (track === null || track === undefined) {
      if (asked === "none" && view.childNodes.length) { return; }
      asked = "none";
      pending = false;
      serial++;
      clearHighlight();
      shown = null;
      prompt(view);
      return;
    }
    var address = url(track);
    if (address === asked && !(failed && retry) && !force) {
      if (!pending) { tellDash(track); }  // else the answer's arrival tells
      return;
    }
    asked = address;
    failed = false;
    pending = true;
    var mine = ++serial;
    var done = function (answer) {
      if (mine !== serial) { return; }  // a newer question was asked
      pending = false;
      if (answer.ok) { draw(view, answer.body); } else {
        fail(view, track, answer.status === 404 ? "No track " + track + " in this store."
                                                : (answer.body && answer.body.error) || "the server answered " + answer.status);
      }
      afterPaint(function () { tellDash(track); });
    };
    fetch(address, {credentials: "same-origin"})
      .then(function (r) {
        return r.json()
          .then(function (body) { return {ok: r.ok, status: r.status, body: body}; },
                function () { return {ok: false, status: r.status, body: {error: "the server answered " + r.status}}; });
      })
      .then(done, function () { done({ok: false, status: 0, body: {error: "The server did not answer; try again."}}); });
  }

  // "like this, but…": the search by sound among this track's neighbours (explorer/callbacks.py, search)
  document.addEventListener("submit", function (event) {
    var form = event.target.closest ? event.target.closest("#like-but") : null;
    if (!form) { return; }
    event.preventDefault();
    var text = document.getElementById("like-but-text").value.trim();
    if (!text) { return; }
    setProps("search-like", {data: Number(form.getAttribute("data-track"))});
    setProps("search-by", {value: "sound"});
    setProps("search", {value: text});
  });

  // "draw the path": Dash draws it (explorer/callbacks.py, draw_path)
  document.addEventListener("click", function (event) {
    var go = event.target.closest ? event.target.closest("#path-go") : null;
    if (!go) { return; }
    var steps = document.getElementById("path-steps");
    setProps("path-request", {data: {from: Number(go.getAttribute("data-from")), to: Number(go.getAttribute("data-to")),
                                     steps: steps && steps.value !== "" ? Number(steps.value) : null, at: Date.now()}});
  });

  // Back and forward (the browser's buttons, the "b" key): Dash's Location for the URL ("url") only
  // notices an address that differs from the last one it saw itself, and the view's changes are
  // pushed by the other ("url-out"), so going back to the page's first address looked like no
  // change. It is handed the address on every history step (explorer/callbacks.py, from_url).
  window.addEventListener("popstate", function () {
    setProps("url", {search: window.location.search, hash: window.location.hash});
  });

  window.musicmapTrack = {
    // a track chosen on the page (map, list): asked for now; Dash is told once it is drawn
    open: function (track) {
      opening = track;
      ask(track, true);
    },
    // the chosen track and the variety controls, from Dash (explorer/callbacks.py); ``chosen``: the
    // chosen track was set there. A track Dash chose (a search hit, a link, back, "×", a clip) wins
    // over one still being opened; a control's change applies to the one being opened.
    request: function (values, chosen) {
      controls = values;
      if (chosen) {
        var echo = told.indexOf(values.track);
        if (echo >= 0) { told.splice(echo, 1); } else { opening = null; }
      }
      ask(opening !== null ? opening : values.track, false);
    },
    // the shown track's panel asked again (a thumb changed the taste that steers its list)
    refresh: function () { if (shown !== null && opening === null) { ask(shown, false, true); } },
    state: function () { return {asked: asked, shown: shown, opening: opening, pending: pending}; },
  };
})();
