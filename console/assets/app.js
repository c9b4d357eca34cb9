// Tally console: small enhancements over pages that work without script.
// - the navigation toggle at narrow widths;
// - confirmation for destructive forms (data-confirm names what will happen), listened for
//   on the document, so forms in refreshed parts keep asking;
// - live updates: on each pipeline event (debounced), the page is fetched again and every
//   [data-live] part is replaced in place, so numbers come from the server as before. A part
//   someone is using (focus inside, or an open dialog) is left alone until they are done;
//   while a refresh loads, the parts it may replace are marked aria-busy.
(function () {
  "use strict";
  document.documentElement.classList.add("js");

  var toggle = document.querySelector(".nav-toggle");
  var nav = document.getElementById("nav");
  if (toggle && nav) {
    toggle.addEventListener("click", function () {
      var open = nav.classList.toggle("open");
      toggle.setAttribute("aria-expanded", open ? "true" : "false");
    });
  }

  document.addEventListener("submit", function (event) {
    var form = event.target.closest ? event.target.closest("form[data-confirm]") : null;
    if (form && !window.confirm(form.getAttribute("data-confirm"))) {
      event.preventDefault();
    }
  });

  var live = document.getElementById("live");
  var stream = document.body.getAttribute("data-stream");
  if (!live || !stream || !window.EventSource || !document.querySelector("[data-live]")) {
    return;
  }
  var pending = null;
  var refreshing = false;
  function setState(state, text) {
    live.setAttribute("data-state", state);
    live.textContent = text;
  }
  function inUse(element) {
    return element.contains(document.activeElement) && document.activeElement !== document.body
      || element.querySelector("details[open]") !== null;
  }
  function refresh() {
    pending = null;
    if (refreshing) { return; }
    refreshing = true;
    var parts = Array.prototype.filter.call(document.querySelectorAll("[data-live]"),
      function (element) { return !inUse(element); });
    parts.forEach(function (element) { element.setAttribute("aria-busy", "true"); });
    fetch(window.location.href, { credentials: "same-origin", headers: { "accept": "text/html" } })
      .then(function (response) {
        if (!response.ok || response.redirected) { throw new Error("status " + response.status); }
        return response.text();
      })
      .then(function (text) {
        var doc = new DOMParser().parseFromString(text, "text/html");
        parts.forEach(function (element) {
          var fresh = doc.getElementById(element.id);
          if (fresh && !inUse(element) && fresh.innerHTML !== element.innerHTML) {
            element.innerHTML = fresh.innerHTML;
          }
        });
        setState("on", "live");
      })
      .catch(function () { setState("retry", "live: update failed, retrying"); })
      .then(function () {
        refreshing = false;
        parts.forEach(function (element) { element.removeAttribute("aria-busy"); });
      });
  }
  var source = new EventSource(stream);
  source.addEventListener("open", function () { setState("on", "live"); });
  source.addEventListener("error", function (event) {
    // A message named "error" from the server carries data; a dropped connection does not.
    if (event.data) { return; }
    setState("retry", "live: reconnecting");
  });
  ["feature_metrics", "alert"].forEach(function (name) {
    source.addEventListener(name, function () {
      if (!pending) { pending = window.setTimeout(refresh, 2000); }
    });
  });
})();
