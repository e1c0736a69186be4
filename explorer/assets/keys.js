// Keyboard use of the explorer (never while typing in a field):
//   j / ↓, k / ↑   move through the similar tracks (Enter opens the one focused)
//   n              open the most similar track (walk on through the library)
//   b              back to the track before (the URL keeps the history)
//   space          play / pause the track
//   l / d          like / dislike the track (again: take it back; taste.js)
//   /              search
(function () {
  function typing(target) {
    var tag = (target && target.tagName) || "";
    return tag === "INPUT" || tag === "TEXTAREA" || tag === "SELECT" || (target && target.isContentEditable);
  }
  function items() {
    return Array.prototype.slice.call(document.querySelectorAll("#similar-list li .similar-item"));
  }
  function move(step) {
    var list = items();
    if (!list.length) { return; }
    var at = list.indexOf(document.activeElement);
    var next = at < 0 ? (step > 0 ? 0 : list.length - 1) : Math.min(list.length - 1, Math.max(0, at + step));
    list[next].focus();
    list[next].scrollIntoView({block: "nearest"});
  }
  document.addEventListener("keydown", function (event) {
    if (event.ctrlKey || event.metaKey || event.altKey || typing(event.target)) { return; }
    var player = document.getElementById("player");
    switch (event.key) {
      case "j": case "ArrowDown": move(1); break;
      case "k": case "ArrowUp": move(-1); break;
      case "n": var first = items()[0]; if (first) { first.click(); } break;
      case "b": window.history.back(); break;
      case " ":
        if (!player || (document.activeElement && document.activeElement.tagName === "BUTTON")) { return; }
        if (player.paused) { player.play(); } else { player.pause(); }
        break;
      case "l": case "d":
        var shown = window.musicmapTrack ? window.musicmapTrack.state().shown : null;
        if (shown === null || !window.musicmapTaste) { return; }
        window.musicmapTaste.thumb(shown, event.key === "l" ? "liked" : "disliked", {list: "panel"});
        break;
      case "/": var box = document.getElementById("search"); if (box) { box.focus(); } break;
      default: return;
    }
    event.preventDefault();
  });
})();
