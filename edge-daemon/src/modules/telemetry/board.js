// Keeps the server-rendered board live: SSE for samples, status and faults; a periodic
// refresh of /api/v1/vehicles because "stale" and "offline" happen when nothing arrives.
(function () {
  "use strict";
  var table = document.getElementById("board");
  function row(id) { return table.querySelector('tr[data-vehicle="' + CSS.escape(id) + '"]'); }
  function setText(tr, cls, text) { var td = tr.querySelector("td." + cls); if (td) td.textContent = text; }
  function apply(id, view) {
    var tr = row(id);
    if (!tr || !view) return;
    var s = view.sample || {};
    var status = view.status || "unknown";
    var pill = tr.querySelector("td.status .pill");
    pill.className = "pill " + status; pill.textContent = status;
    var soc = s.soc_pct;
    tr.querySelector("td.soc .bar div").style.width = (soc == null ? 0 : Math.max(0, Math.min(100, soc))) + "%";
    var socTd = tr.querySelector("td.soc span:not(.chg)");
    socTd.textContent = soc == null ? "–" : Math.round(soc) + "%";
    var chg = tr.querySelector("td.soc .chg");
    if (s.charging && !chg) { chg = document.createElement("span"); chg.className = "chg"; chg.title = "charging"; chg.textContent = " ⚡"; tr.querySelector("td.soc").appendChild(chg); }
    if (!s.charging && chg) chg.remove();
    setText(tr, "speed", s.speed_kmh == null ? "–" : Math.round(s.speed_kmh) + " km/h");
    // A telemetry event carries no fault list: keep the count we have.
    var n = view.active_faults ? view.active_faults.length : parseInt(tr.dataset.faults || "0", 10);
    tr.querySelector("td.faults").innerHTML = n ? '<span class="fault">' + n + "</span>" : "";
    if (view.last_seen) { setText(tr, "seen", view.last_seen); tr.dataset.lastSeen = view.last_seen_ms; }
    tr.dataset.soc = soc == null ? "" : soc;
    tr.dataset.speed = s.speed_kmh == null ? "" : s.speed_kmh;
    tr.dataset.charging = s.charging ? "1" : "";
    tr.dataset.faults = n;
    tr.dataset.status = status;
    tr.classList.add("flash"); setTimeout(function () { tr.classList.remove("flash"); }, 400);
  }
  function totals() {
    var rows = table.querySelectorAll("tbody tr"), c = { online: 0, stale: 0, offline: 0, unknown: 0 };
    var charging = 0, moving = 0, socSum = 0, socN = 0, faults = 0;
    rows.forEach(function (tr) {
      var st = tr.dataset.status || tr.querySelector(".pill").textContent;
      c[st] = (c[st] || 0) + 1;
      if (tr.dataset.charging) charging++;
      if (tr.dataset.speed && parseFloat(tr.dataset.speed) > 1 && st === "online") moving++;
      if (tr.dataset.soc) { socSum += parseFloat(tr.dataset.soc); socN++; }
      faults += parseInt(tr.dataset.faults || "0", 10);
    });
    document.getElementById("t-count").textContent = rows.length;
    document.getElementById("t-online").textContent = c.online;
    document.getElementById("t-stale").textContent = c.stale;
    document.getElementById("t-offline").textContent = c.offline + c.unknown;
    document.getElementById("t-charging").textContent = charging;
    document.getElementById("t-moving").textContent = moving;
    document.getElementById("t-soc").textContent = socN ? Math.round(socSum / socN) + "%" : "–";
    document.getElementById("t-faults").textContent = faults;
  }
  function refresh() {
    fetch("/api/v1/vehicles").then(function (r) { return r.json(); }).then(function (j) {
      j.vehicles.forEach(function (v) { if (row(v.id)) apply(v.id, v.live); else location.reload(); });
      totals();
    }).catch(function () {});
  }
  var link = document.getElementById("link");
  var es = new EventSource("/api/v1/telemetry/stream");
  es.onopen = function () { link.textContent = "live"; };
  es.onerror = function () { link.textContent = "reconnecting…"; };
  es.addEventListener("telemetry", function (e) {
    var d = JSON.parse(e.data);
    apply(d.vehicle_id, { sample: d.sample, status: d.status, active_faults: null,
      last_seen: new Date(d.sample.received_ms).toISOString(), last_seen_ms: d.sample.received_ms });
    totals();
  });
  es.addEventListener("status", function (e) { var d = JSON.parse(e.data); apply(d.vehicle_id, d.view); totals(); });
  es.addEventListener("faults", function (e) { var d = JSON.parse(e.data); apply(d.vehicle_id, d.view); totals(); });
  es.addEventListener("lagged", refresh);
  table.querySelectorAll("tbody tr").forEach(function (tr) {
    tr.dataset.status = tr.querySelector(".pill").textContent;
  });
  refresh();
  setInterval(refresh, 5000);

  // Cloud link: an offline banner while the depot works alone, and drain progress while
  // the backlog uploads after the link returns.
  var banner = document.getElementById("sync-banner"), syncText = document.getElementById("sync-text");
  var bar = document.querySelector("#sync-progress div"), peak = 0;
  function syncStatus() {
    fetch("/api/v1/sync/status").then(function (r) { return r.ok ? r.json() : null; }).then(function (s) {
      if (!s || s.link === "not_enrolled") { banner.hidden = true; return; }
      var left = s.backlog.entries;
      peak = Math.max(peak, left);
      var done = peak ? Math.round(100 * (peak - left) / peak) : 100;
      bar.style.width = done + "%";
      banner.dataset.state = s.link === "offline" ? "offline" : (left > 0 ? "draining" : "synced");
      banner.dataset.backlog = left;
      banner.dataset.progress = done;
      banner.className = banner.dataset.state;
      var what = s.backlog.changes + " change(s) and " + s.backlog.stream_rows + " telemetry sample(s)";
      if (s.link === "offline") {
        syncText.textContent = "Offline: the depot keeps working. " + what + " waiting to sync" +
          (s.last_success ? " (last sync " + s.last_success + ")" : "") + ".";
      } else if (left > 0) {
        syncText.textContent = "Back online: syncing, " + what + " left (" + done + "%" +
          (s.eta_s != null ? ", about " + Math.max(1, Math.round(s.eta_s)) + " s to go" : "") + ").";
      } else {
        syncText.textContent = "Synced with the cloud.";
        peak = 0;
      }
      banner.hidden = false;
    }).catch(function () {});
  }
  syncStatus();
  setInterval(syncStatus, 2000);
})();
