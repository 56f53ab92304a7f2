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
      badge.textContent = row.level;
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
    var banner = document.getElementById("stale");
    banner.hidden = !update.stale;
    if (update.stale) banner.querySelector(".since").textContent = update.stale_since;
    var live = document.getElementById("live");
    var pending = root.querySelectorAll("tr.pending").length;
    if (filled > 0 || pending > 0 || live.textContent) {
      live.textContent = pending > 0
        ? pending + (pending === 1 ? " value is" : " values are") + " still being computed."
        : (filled > 0 ? "All values are up to date." : live.textContent);
    }
    root.setAttribute("data-version", update.version);
  }

  if (window.EventSource) {
    var source = new EventSource("/events?since=" + encodeURIComponent(root.getAttribute("data-version")));
    source.addEventListener("update", function (event) {
      try { apply(JSON.parse(event.data)); } catch (err) { /* a malformed event is skipped */ }
    });
  }
  setInterval(refreshAges, 5000);
})();
