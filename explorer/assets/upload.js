// The upload box (query by an uploaded clip): its file input is emptied once the chosen file is taken,
// so that choosing the same file again is a change the page sees (a browser fires no change event for
// a file input whose value did not change). The file, already read by dcc.Upload, is not affected.
(function () {
  document.addEventListener("change", function (event) {
    var input = event.target;
    if (input && input.matches && input.matches("#upload input[type=file]")) {
      setTimeout(function () { input.value = ""; }, 0);
    }
  }, true);
})();
