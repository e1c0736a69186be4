// The person's taste on the page (issue #31): 👍/👎 on the track panel and on every list row, and the
// players' plays and skips, all sent to POST /api/v1/events (explorer/api.py) with the source
// "explorer" and the list the track came from as the context ({"list": "similar", "of": 12}).
//   - a thumb pressed again takes it back (undo: true); after each, a toast says what was recorded,
//     with "undo"; the track panel is asked again, so its list follows the new taste at once;
//   - a player (#player, and the selection's, path's and mix's queue players) records "played"
//     (seconds heard, duration) when its track ends or is left after 90 %, and "skipped" (the second
//     left at) when another track takes its place before that, once at least a second was heard;
//     a track ending at 90 % or more as the page is left is sent with keepalive (not lost);
//   - where the server records nothing (`musicmap serve --no-record`, a read-only store), the thumbs
//     are disabled and say why.
// Buttons it handles: button[data-thumb][data-thumb-of] (drawn by track.js and lists.js); keys.js
// calls thumb() for the l and d keys.
(function () {
  var PLAYED_SHARE = 0.9;  // left after this share of the track: a play, not a skip
  var LEAST_HEARD_S = 1;  // a track left before a second was heard is neither
  var PLAYERS = {"player": null, "queue-player": "selection", "path-player": "path", "mix-player": "mix"};
  var thumbs = {};  // track id → "liked" | "disliked" | "": set on this page since the lists were drawn
  var recording = {on: true, why: null};
  var contexts = {};  // track id → the list it was last opened from
  var sessions = {};  // player id → {track, context, heard, last, duration, done}
  var sent = [];  // every event sent, with the server's answer (tests read it: state())
  var toastTimer = null;

  function post(events) {
    var record = {events: events, status: null, body: null};
    sent.push(record);
    return fetch("/api/v1/events", {method: "POST", credentials: "same-origin", keepalive: true,
                                    headers: {"Content-Type": "application/json"},
                                    body: JSON.stringify({events: events})})
      .then(function (r) {
        return r.json().then(function (body) { return {ok: r.ok, status: r.status, body: body}; },
                             function () { return {ok: false, status: r.status, body: {error: "the server answered " + r.status}}; });
      }, function () { return {ok: false, status: 0, body: {error: "the server did not answer"}}; })
      .then(function (answer) {
        record.status = answer.status;
        record.body = answer.body;
        if (answer.status === 403) { setRecording({on: false, why: (answer.body && answer.body.error) || "not recording"}); }
        return answer;
      });
  }

  function event(kind, track, extra) {
    var e = {kind: kind, track_id: Number(track), source: "explorer"};
    Object.keys(extra || {}).forEach(function (k) { if (extra[k] !== null && extra[k] !== undefined) { e[k] = extra[k]; } });
    return e;
  }

  // --- thumbs ------------------------------------------------------------------------------------

  function thumbOf(track, fromServer) {
    return Object.prototype.hasOwnProperty.call(thumbs, track) ? thumbs[track] : (fromServer || "");
  }

  // The 👍 and 👎 of one track (a row's, or the panel's with ``ids``), drawn as its state says.
  function buttons(track, fromServer, ids) {
    var state = thumbOf(track, fromServer);
    return [["liked", "👍", "like"], ["disliked", "👎", "dislike"]].map(function (b) {
      var button = document.createElement("button");
      button.type = "button";
      button.className = "thumb-button";
      button.textContent = b[1];
      button.setAttribute("aria-label", b[2]);
      button.setAttribute("data-thumb", b[0]);
      button.setAttribute("data-thumb-of", String(track));
      if (ids) { button.id = ids[b[0]]; }
      paint(button, state);
      return button;
    });
  }

  function paint(button, state) {
    var pressed = button.getAttribute("data-thumb") === state;
    button.setAttribute("aria-pressed", pressed ? "true" : "false");
    button.classList.toggle("pressed", pressed);
    button.disabled = !recording.on;
    var verb = button.getAttribute("data-thumb") === "liked" ? "like" : "dislike";
    button.title = !recording.on ? "not recorded: " + (recording.why || "recording is off")
                 : pressed ? "take back the " + verb + " (" + (verb === "like" ? "l" : "d") + ")"
                 : verb + " this track (" + (verb === "like" ? "l" : "d") + ")";
  }

  function repaint(track) {
    var all = document.querySelectorAll(track === undefined ? "button[data-thumb]"
                                                            : "button[data-thumb][data-thumb-of='" + track + "']");
    for (var i = 0; i < all.length; i++) {  // each button by its own track's state
      var b = all[i];
      paint(b, thumbOf(b.getAttribute("data-thumb-of"), b.getAttribute("aria-pressed") === "true" ? b.getAttribute("data-thumb") : ""));
    }
  }

  function setRecording(value) {
    if (!value) { return; }
    var changed = value.on !== recording.on || value.why !== recording.why;
    recording = {on: !!value.on, why: value.why || null};
    if (changed) { repaint(); }
    var off = document.getElementById("thumb-off");
    if (off) { off.hidden = recording.on; off.textContent = recording.on ? "" : "not recorded: " + recording.why; }
  }

  function nameOf(track) {
    var row = document.querySelector("ol[data-rows] button.similar-item[data-track='" + track + "']");
    if (row) { return row.title; }
    var title = document.getElementById("track-title");
    return title && window.musicmapTrack && window.musicmapTrack.state().shown === Number(track) ? title.textContent
                                                                                                 : "track " + track;
  }

  function toast(text, undo) {
    var box = document.getElementById("taste-toast");
    if (!box) {
      box = document.createElement("div");
      box.id = "taste-toast";
      box.setAttribute("role", "status");
      document.body.append(box);
    }
    box.replaceChildren(document.createTextNode(text));
    if (undo) {
      var link = document.createElement("button");
      link.type = "button";
      link.id = "taste-undo";
      link.className = "link";
      link.textContent = "undo";
      link.addEventListener("click", function () { box.hidden = true; undo(); });
      box.append(document.createTextNode(" · "), link);
    }
    box.hidden = false;
    clearTimeout(toastTimer);
    toastTimer = setTimeout(function () { box.hidden = true; }, 8000);
  }

  // 👍 or 👎 (``kind``: liked or disliked) on ``track``; again on a pressed one: taken back.
  function thumb(track, kind, context, before) {
    track = Number(track);
    if (!recording.on) { toast("Not recorded: " + (recording.why || "recording is off")); return Promise.resolve(null); }
    var was = before !== undefined ? before : thumbOf(track, pressedOf(track));
    var undo = was === kind;
    return post([event(kind, track, {undo: undo || null, context: context || {list: "panel"}})]).then(function (answer) {
      if (!answer.ok) {
        toast(answer.status === 403 ? "Not recorded: " + recording.why : "Not recorded: " + ((answer.body && answer.body.error) || answer.status));
        return answer;
      }
      thumbs[track] = undo ? "" : kind;
      repaint(track);
      var what = undo ? (kind === "liked" ? "like taken back: " : "dislike taken back: ")
                      : (kind === "liked" ? "👍 liked " : "👎 disliked ");
      toast(what + nameOf(track), function () { thumb(track, kind, context, thumbs[track]); });
      if (window.musicmapTrack) { window.musicmapTrack.refresh(); }  // the lists follow the new taste
      return answer;
    });
  }

  function pressedOf(track) {
    var b = document.querySelector("button[data-thumb][data-thumb-of='" + track + "'][aria-pressed='true']");
    return b ? b.getAttribute("data-thumb") : "";
  }

  function listContext(button) {
    var list = button.closest("ol[data-rows]");
    if (!list) { return {list: "panel"}; }
    return contextOf(list);
  }

  // The list a row belongs to, as an event's context: {"list": "similar", "of": 12}.
  function contextOf(list) {
    var name = (list.id || "list").replace(/-list$/, "");
    var context = {list: name};
    if (name === "similar" && window.musicmapTrack && window.musicmapTrack.state().shown !== null) {
      context.of = window.musicmapTrack.state().shown;
    }
    return context;
  }

  document.addEventListener("click", function (e) {
    var button = e.target.closest ? e.target.closest("button[data-thumb][data-thumb-of]") : null;
    if (!button) { return; }
    e.preventDefault();
    e.stopPropagation();
    thumb(Number(button.getAttribute("data-thumb-of")), button.getAttribute("data-thumb"), listContext(button));
  }, true);

  // --- plays and skips -----------------------------------------------------------------------------

  function trackOf(player) {
    var m = /\/audio\/(\d+)/.exec(player.currentSrc || player.getAttribute("src") || "");
    return m ? Number(m[1]) : null;
  }

  // A player's track is left (another takes its place, or the page goes): a play after 90 %, a skip before.
  function leave(s, onlyPlays) {
    if (!s || s.done || s.heard < LEAST_HEARD_S) { return; }
    s.done = true;
    var at = s.last || 0, duration = s.duration || null;
    if (duration && at >= PLAYED_SHARE * duration) {
      post([event("played", s.track, {seconds: Math.min(s.heard, duration), duration: duration, context: s.context})]);
    } else if (!onlyPlays) {
      post([event("skipped", s.track, {seconds: at, duration: duration, context: s.context})]);
    } else {
      s.done = false;
    }
  }

  document.addEventListener("loadstart", function (e) {
    var player = e.target;
    if (!player || !Object.prototype.hasOwnProperty.call(PLAYERS, player.id)) { return; }
    var track = trackOf(player), old = sessions[player.id];
    if (old && old.track === track && old.element === player) { return; }
    leave(old, false);
    sessions[player.id] = track === null ? null : {
      track: track, element: player, heard: 0, last: null, duration: null, done: false,
      context: PLAYERS[player.id] ? {list: PLAYERS[player.id]} : (contexts[track] || {list: "panel"})};
  }, true);

  // A new source: the old track is left. "emptied" comes before the player's position is reset to 0
  // (a "timeupdate" at 0 follows), so the last position heard is still the one kept.
  document.addEventListener("emptied", function (e) {
    var s = sessions[e.target.id];
    if (!s || s.element !== e.target) { return; }
    leave(s, false);
    s.done = true;
  }, true);

  document.addEventListener("timeupdate", function (e) {
    var s = sessions[e.target.id];
    if (!s || s.element !== e.target || s.done) { return; }
    var at = e.target.currentTime;
    if (s.last !== null && at > s.last && at - s.last < 2 && !e.target.seeking) { s.heard += at - s.last; }
    s.last = at;
    if (isFinite(e.target.duration) && e.target.duration > 0) { s.duration = e.target.duration; }
  }, true);

  document.addEventListener("ended", function (e) {
    var s = sessions[e.target.id];
    if (!s || s.element !== e.target || s.done) { return; }
    s.done = true;
    var duration = isFinite(e.target.duration) ? e.target.duration : s.duration;
    post([event("played", s.track, {seconds: Math.min(Math.max(s.heard, 0), duration || s.heard) || duration,
                                    duration: duration, context: s.context})]);
  }, true);

  window.addEventListener("pagehide", function () {
    Object.keys(sessions).forEach(function (id) { leave(sessions[id], true); });  // keepalive: sent as the page goes
  });

  window.musicmapTaste = {
    thumb: thumb,
    buttons: buttons,
    // the list a track is opened from (track.js, lists.js): its plays and skips carry it
    opened: function (track, context) { if (context) { contexts[Number(track)] = context; } },
    contextOf: contextOf,
    recording: setRecording,
    state: function () {
      return {thumbs: thumbs, recording: recording, sent: sent,
              sessions: Object.keys(sessions).reduce(function (out, id) {
                var s = sessions[id];
                out[id] = s && {track: s.track, heard: s.heard, last: s.last, duration: s.duration, done: s.done, context: s.context};
                return out;
              }, {})};
    },
  };
})();
