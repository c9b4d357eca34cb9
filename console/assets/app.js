// Tally console: small enhancements over pages that work without script.
// - the navigation toggle at narrow widths;
// - confirmation for destructive forms (data-confirm names what will happen);
// - live updates: on each pipeline event (debounced), the page is fetched again and every
//   [data-live] element is replaced in place, so numbers come from the server as before;
//   while a refresh loads, the parts it will replace are marked aria-busy (and dimmed).
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

  document.querySelectorAll("form[data-confirm]").forEach(function (form) {
    form.addEventListener("submit", function (event) {
      if (!window.confirm(form.getAttribute("data-confirm"))) {
        event.preventDefault();
      }
    });
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
  function refresh() {
    pending = null;
    if (refreshing) { return; }
    refreshing = true;
    var parts = document.querySelectorAll("[data-live]");
    parts.forEach(function (element) { element.setAttribute("aria-busy", "true"); });
    fetch(window.location.href, { credentials: "same-origin", headers: { "accept": "text/html" } })
      .then(function (response) {
        if (!response.ok) { throw new Error("status " + response.status); }
        return response.text();
      })
      .then(function (text) {
        var doc = new DOMParser().parseFromString(text, "text/html");
        document.querySelectorAll("[data-live]").forEach(function (element) {
          var fresh = doc.getElementById(element.id);
          if (fresh && fresh.innerHTML !== element.innerHTML) {
            element.innerHTML = fresh.innerHTML;
          }
        });
      })
      .catch(function () { setState("retry", "live: update failed, retrying"); })
      .then(function () {
        refreshing = false;
        parts.forEach(function (element) { element.removeAttribute("aria-busy"); });
      });
  }
  var source = new EventSource(stream);
  source.addEventListener("open", function () { setState("on", "live"); });
  source.addEventListener("error", function () { setState("retry", "live: reconnecting"); });
  ["feature_metrics", "alert"].forEach(function (name) {
    source.addEventListener(name, function () {
      if (!pending) { pending = window.setTimeout(refresh, 2000); }
    });
  });
})();
