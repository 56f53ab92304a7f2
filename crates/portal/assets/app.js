// Live updates for the dashboard: pending values fill in without a reload.
// The page works fully without this script; it only adds freshness.
(function () {
  "use strict";
  var root = document.getElementById("dashboard");
  if (!root) return;

  function ago(iso) {
    if (!iso) return "not yet";
    var seconds = Math.max(0, Math.round((Date.now() - Date.parse(iso)) / 1000));
    if (seconds < 2) return "just now";
    if (seconds < 60) return seconds + " s ago";
    if (seconds < 3600) return Math.floor(seconds / 60) + " min ago";
    return Math.floor(seconds / 3600) + " h ago";
  }

  function refreshAges() {
    var times = root.querySelectorAll("time[datetime]");
    for (var i = 0; i < times.length; i++) {
      var iso = times[i].getAttribute("datetime");
      if (iso) times[i].textContent = ago(iso);
    }
  }

  function apply(update) {
    var filled = 0;
    update.rows.forEach(function (row) {
      var tr = document.getElementById("item-" + row.id);
      if (!tr) return;
      var badge = tr.querySelector(".badge");
      badge.className = "badge badge-" + row.class;
      badge.textContent = row.badge;
      var time = tr.querySelector("time");
      time.setAttribute("datetime", row.checked || "");
      time.textContent = ago(row.checked);
      var wasPending = tr.classList.contains("pending");
      tr.classList.toggle("pending", row.level === "UNKNOWN");
      if (wasPending && row.level !== "UNKNOWN") filled++;
    });
    Object.keys(update.counts).forEach(function (level) {
      var el = root.querySelector('[data-count="' + level + '"]');
      if (el) el.textContent = update.counts[level];
    });
    var live = document.getElementById("live");
    var pending = root.querySelectorAll("tr.pending").length;
    if (filled > 0 || pending > 0 || live.textContent) {
      live.textContent = pending > 0
        ? pending + (pending === 1 ? " value is" : " values are") + " still being computed."
        : (filled > 0 ? "All values are up to date." : live.textContent);
    }
    root.setAttribute("data-version", update.version);
  }

  function showStale(state) {
    var banner = document.getElementById("stale");
    banner.hidden = !state.stale;
    if (state.stale) banner.querySelector(".since").textContent = state.stale_since;
  }

  // The browser reconnects by itself when a stream ends (it resumes from the
  // last event id). When the portal refuses a stream (busy: 503, or 429) the
  // EventSource gives up for good, so this opens a new one after a while.
  var retryIn = 10000;
  var source = null;
  function listen() {
    var own = new EventSource("/events?since=" + encodeURIComponent(root.getAttribute("data-version")));
    source = own;
    own.addEventListener("update", function (event) {
      retryIn = 10000;
      try { apply(JSON.parse(event.data)); } catch (err) { /* a malformed event is skipped */ }
    });
    own.addEventListener("stale", function (event) {
      try { showStale(JSON.parse(event.data)); } catch (err) { /* skipped */ }
    });
    own.addEventListener("error", function () {
      if (own.readyState !== EventSource.CLOSED || source !== own) return;
      source = null;
      setTimeout(function () { if (!source) listen(); }, retryIn + Math.random() * retryIn);
      retryIn = Math.min(retryIn * 2, 300000);
    });
  }
  if (window.EventSource) {
    listen();
    // Leaving closes the stream, so the browser may keep the page in its
    // back/forward cache; coming back opens it again from the version shown.
    window.addEventListener("pagehide", function () {
      if (source) source.close();
      source = null;
    });
    window.addEventListener("pageshow", function (event) {
      if (!event.persisted) return;
      refreshAges();
      if (!source) listen();
    });
  }
  // The page carries absolute times (so it is the same for every visitor
  // and can be revalidated); ages are worded here, now and every 5 s.
  refreshAges();
  setInterval(refreshAges, 5000);
})();
