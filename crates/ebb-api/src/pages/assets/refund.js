// Checks the address while it is typed, with the server's own validator (GET /refund-link/check), so
// the page and the server never disagree. The form works the same without this script: the server
// checks again on every step.
(function () {
  "use strict";
  var input = document.getElementById("address");
  var out = document.getElementById("address-check");
  if (!input || !out || !window.fetch) return;
  var timer = null;
  var seq = 0;
  function check() {
    var value = input.value.trim();
    var mine = ++seq;
    if (value === "") {
      out.textContent = "";
      out.className = "check";
      input.removeAttribute("aria-invalid");
      return;
    }
    var q = "?token_id=" + encodeURIComponent(input.dataset.tokenId) +
      "&lang=" + encodeURIComponent(input.dataset.lang) +
      "&address=" + encodeURIComponent(value);
    fetch("/refund-link/check" + q, { credentials: "same-origin", headers: { "Accept": "application/json" } })
      .then(function (r) { return r.json(); })
      .then(function (res) {
        if (mine !== seq) return; // a later keystroke already asked again
        out.textContent = res.message;
        out.className = res.ok ? "check ok" : "check bad";
        if (res.ok) input.removeAttribute("aria-invalid"); else input.setAttribute("aria-invalid", "true");
      })
      .catch(function () { /* the server checks on submit anyway */ });
  }
  input.addEventListener("input", function () {
    clearTimeout(timer);
    timer = setTimeout(check, 200);
  });
  if (input.value.trim() !== "") check();
})();
