// Play a selection (or a song path) in order: when its player ends, it moves on to the next track,
// and the list marks the track playing. ("ended" and "play" do not bubble: capturing listeners.)
var QUEUE_LISTS = {"queue-player": "selection-list", "path-player": "path-list", "mix-player": "mix-list"};

function markPlaying(player) {
  var list = document.getElementById(QUEUE_LISTS[player.id]);
  if (!list) { return; }
  var pos = parseInt(player.getAttribute("data-pos") || "0", 10);
  var items = list.children;
  for (var i = 0; i < items.length; i++) { items[i].classList.toggle("playing", i === pos); }
}

document.addEventListener("play", function (event) {
  var player = event.target;
  if (player && QUEUE_LISTS[player.id]) { markPlaying(player); }
}, true);

document.addEventListener("ended", function (event) {
  var player = event.target;
  if (!player || !QUEUE_LISTS[player.id]) { return; }
  var queue = JSON.parse(player.getAttribute("data-queue") || "[]");
  var next = parseInt(player.getAttribute("data-pos") || "0", 10) + 1;
  if (next < queue.length) {
    player.setAttribute("data-pos", String(next));
    player.src = queue[next];
    player.play();
  }
}, true);
