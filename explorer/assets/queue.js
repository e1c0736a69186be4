// Play a selection (or a song path) in order: when its player ends, it moves on to the next track.
// ("ended" does not bubble, hence the capturing listener on the document.)
document.addEventListener("ended", function (event) {
  var player = event.target;
  if (!player || (player.id !== "queue-player" && player.id !== "path-player")) { return; }
  var queue = JSON.parse(player.getAttribute("data-queue") || "[]");
  var next = parseInt(player.getAttribute("data-pos") || "0", 10) + 1;
  if (next < queue.length) {
    player.setAttribute("data-pos", String(next));
    player.src = queue[next];
    player.play();
  }
}, true);
