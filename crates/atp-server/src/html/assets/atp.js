// ATP dashboard: local times, confirmation of actions, and live refresh.
// No dependencies. The page works without it (it then reloads every 15 s).
(function () {
  "use strict";

  function pad(n) { return (n < 10 ? "0" : "") + n; }

  // Times: shown in local time; the UTC value stays in `datetime` and the
  // tooltip.
  function localiseTimes(root) {
    root.querySelectorAll("time[datetime]").forEach(function (el) {
      var d = new Date(el.getAttribute("datetime"));
      if (isNaN(d.getTime())) return;
      el.title = el.getAttribute("datetime");
      el.textContent = d.getFullYear() + "-" + pad(d.getMonth() + 1) + "-" + pad(d.getDate()) +
        " " + pad(d.getHours()) + ":" + pad(d.getMinutes()) + ":" + pad(d.getSeconds());
    });
  }

  // Forms with data-confirm ask first, then tell the server it was
  // confirmed; without this script the server asks on a page of its own.
  document.addEventListener("submit", function (ev) {
    var form = ev.target;
    var question = form.getAttribute("data-confirm");
    if (!question) return;
    if (!window.confirm(question)) {
      ev.preventDefault();
      return;
    }
    if (form.elements.confirm) form.elements.confirm.value = "yes";
  });

  // Filter selects apply at once.
  document.addEventListener("change", function (ev) {
    var el = ev.target;
    if (el.hasAttribute && el.hasAttribute("data-autosubmit") && el.form) el.form.submit();
  });

  function setStatus(state, text) {
    var el = document.getElementById("live-status");
    if (!el) return;
    el.setAttribute("data-state", state);
    el.textContent = text;
  }

  function updateCounts(data) {
    document.querySelectorAll("[data-count]").forEach(function (el) {
      var name = el.getAttribute("data-count");
      var n = name === "TOTAL" ? data.total : data.counts[name];
      if (n !== undefined && el.textContent !== String(n)) el.textContent = String(n);
    });
  }

  // Re-fetches this page and swaps every [data-live] element for the one
  // with the same id in the new copy. One fetch at a time; a change seen
  // meanwhile triggers one more.
  var fetching = false, again = false;
  function refresh() {
    if (fetching) { again = true; return; }
    fetching = true;
    fetch(window.location.href, { headers: { Accept: "text/html" }, credentials: "same-origin" })
      .then(function (r) {
        if (r.status === 404) {
          setStatus("down", "This task no longer exists.");
          return null;
        }
        return r.ok ? r.text() : null;
      })
      .then(function (text) {
        if (!text) return;
        var doc = new DOMParser().parseFromString(text, "text/html");
        document.querySelectorAll("[data-live][id]").forEach(function (el) {
          var fresh = doc.getElementById(el.id);
          if (!fresh) return;
          var node = document.importNode(fresh, true);
          localiseTimes(node);
          el.replaceWith(node);
        });
      })
      .catch(function () { /* the next change tries again */ })
      .then(function () {
        fetching = false;
        if (again) { again = false; refresh(); }
      });
  }

  function follow() {
    var url = document.body.getAttribute("data-events");
    if (!url || !window.EventSource) return;
    var token = document.body.getAttribute("data-token");
    var source = new EventSource(url);
    var lost = null;
    source.onopen = function () {
      clearTimeout(lost);
      setStatus("live", "live");
    };
    source.onmessage = function (ev) {
      var data;
      try { data = JSON.parse(ev.data); } catch (e) { return; }
      clearTimeout(lost);
      setStatus("live", "live");
      updateCounts(data);
      if (data.token !== token) {
        token = data.token;
        refresh();
      }
    };
    source.onerror = function () {
      // The server ends each stream after a while and the browser
      // reconnects at once: only say so if that takes long.
      if (source.readyState === EventSource.CLOSED) {
        setStatus("down", "live updates stopped");
        return;
      }
      clearTimeout(lost);
      lost = setTimeout(function () { setStatus("down", "reconnecting…"); }, 3000);
    };
  }

  function start() {
    localiseTimes(document);
    follow();
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
