// The vqs dashboard: refresh the live part of the page every few seconds, and ask before
// destructive actions. Served by the app itself (no build step, nothing from outside).
(function () {
  "use strict";
  var live = document.getElementById("live");
  var stamp = document.getElementById("refreshed");

  document.addEventListener("submit", function (e) {
    var form = e.target;
    var question = form.getAttribute && form.getAttribute("data-confirm");
    if (question && !window.confirm(question)) {
      e.preventDefault();
    }
  });

  if (!live) {
    return;
  }
  var every = parseInt(live.getAttribute("data-refresh"), 10) || 3000;
  var busy = false;

  function refresh() {
    if (busy || document.hidden) {
      return;
    }
    busy = true;
    var url = new URL(window.location.href);
    url.searchParams.set("fragment", "1");
    url.searchParams.delete("flash");
    fetch(url.toString(), { credentials: "same-origin", cache: "no-store" })
      .then(function (resp) {
        if (resp.status === 401) {
          window.location.reload(); // signed out: show the login form
          return null;
        }
        if (!resp.ok) {
          throw new Error("HTTP " + resp.status);
        }
        return resp.text();
      })
      .then(function (html) {
        if (html === null) {
          return;
        }
        live.innerHTML = html; // server-rendered; every value in it is escaped there
        live.classList.remove("stale");
        if (stamp) {
          stamp.textContent = "updated " + new Date().toLocaleTimeString();
        }
      })
      .catch(function () {
        live.classList.add("stale");
        if (stamp) {
          stamp.textContent = "cannot reach the server; retrying";
        }
      })
      .then(function () {
        busy = false;
      });
  }

  window.setInterval(refresh, every);
  document.addEventListener("visibilitychange", refresh);
})();
