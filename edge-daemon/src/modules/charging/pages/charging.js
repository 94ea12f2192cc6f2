// Charging and Energy pages: sign-in, a refresh of the server-rendered view every 10 s,
// and the charts (vendored uPlot) from the JSON the view embeds in #chart-data.
(function () {
  "use strict";
  const $ = (id) => document.getElementById(id);
  const zone = document.body.dataset.zone || "Asia/Jakarta";

  const login = $("login");
  if (login) {
    login.addEventListener("submit", async (e) => {
      e.preventDefault();
      $("login-error").textContent = "";
      let r;
      try {
        r = await fetch("/api/v1/session", {
          method: "POST", credentials: "same-origin",
          headers: { "content-type": "application/json" },
          body: JSON.stringify({ person: $("login-person").value.trim(), password: $("login-password").value }),
        });
      } catch (_) { $("login-error").textContent = login.dataset.efail; return; }
      if (r.ok) { location.reload(); return; }
      // The page's own words (from the catalogue), not the API's English message.
      const d = login.dataset;
      $("login-error").textContent = r.status === 401 ? d.e401 : r.status === 429 ? d.e429 : d.efail;
    });
    return;
  }

  let chart = null;
  const kw = (w) => (w == null ? null : w / 1000);

  function dataOf(d) {
    if (d.kind === "load") {
      const cap = d.cap_w == null ? d.t.map(() => null) : d.t.map(() => d.cap_w / 1000);
      return [d.t.map((t) => t / 1000), d.actual_w.map(kw), d.planned_w.map(kw), cap];
    }
    return [d.t.map((t) => t / 1000), d.kwh];
  }

  function optsOf(d, width) {
    const base = {
      width: width, height: 260,
      tzDate: (ts) => uPlot.tzDate(new Date(ts * 1e3), zone),
      scales: { x: { time: true } },
      axes: [{}, { label: d.kind === "load" ? "kW" : "kWh" }],
    };
    if (d.kind === "load") {
      base.series = [{}, { label: d.labels.actual, stroke: "#1f6feb", width: 2, fill: "rgba(31,111,235,.08)" },
        { label: d.labels.planned, stroke: "#8250df", width: 2, dash: [6, 4] },
        { label: d.labels.cap, stroke: "#cf222e", width: 1.5 }];
    } else {
      base.series = [{}, { label: d.labels.kwh, stroke: "#1a7f37", fill: "rgba(26,127,55,.35)",
        paths: uPlot.paths.bars({ size: [0.7, 40] }) }];
    }
    return base;
  }

  function draw() {
    const el = $("chart-data");
    const box = $("chart");
    if (!el || !box || typeof uPlot === "undefined") return;
    let d;
    try { d = JSON.parse(el.textContent); } catch (_) { return; }
    const data = dataOf(d);
    if (chart) { chart.setData(data); return; }
    chart = new uPlot(optsOf(d, Math.max(320, box.clientWidth - 12)), data, box);
    box.dataset.points = String(d.t.length);
  }

  // A dispatcher typing a bus into a form: the refresh waits, or it would wipe the field.
  // A refusal stays readable for 15 s before a refresh replaces it.
  // Typing holds the refresh for a minute after the last key, not for ever.
  let binding = false, holdUntil = 0, lastKey = 0;
  const typing = () => document.activeElement && document.activeElement.matches &&
    document.activeElement.matches("form.bind input") && Date.now() - lastKey < 60000;
  const editing = () => binding || Date.now() < holdUntil || typing();
  // What was typed but not sent survives a refresh (a click elsewhere took the focus).
  const drafts = {};
  const keyOf = (f) => f.dataset.charger + "/" + f.dataset.connector + "/" + f.dataset.tx;
  document.addEventListener("input", (e) => {
    const f = e.target.closest && e.target.closest("form.bind");
    if (!f) return;
    lastKey = Date.now();
    drafts[keyOf(f)] = e.target.value;
  });
  document.addEventListener("focusin", (e) => { if (e.target.closest && e.target.closest("form.bind")) lastKey = Date.now(); });
  // Folds the dispatcher opened or closed stay so across refreshes.
  const folds = {};
  document.addEventListener("click", (e) => {
    const d = e.target.closest && e.target.closest("details.bind");
    if (d && e.target.closest("summary")) folds[d.dataset.key] = !d.open;
  });

  document.addEventListener("submit", async (e) => {
    const f = e.target;
    if (!f.matches || !f.matches("form.bind")) return;
    e.preventDefault();
    const msg = f.querySelector(".bind-error");
    const words = $("fleet-buses") ? $("fleet-buses").dataset : {};
    msg.textContent = "";
    const v = f.elements.vehicle.value.trim();
    const url = "/api/v1/charging/chargers/" + encodeURIComponent(f.dataset.charger) + "/connectors/" + f.dataset.connector + "/vehicle";
    binding = true;
    let r = null;
    // A LAN that swallows the request must not hold the page: 10 s, then "try again".
    const abort = new AbortController();
    const timer = setTimeout(() => abort.abort(), 10000);
    try {
      r = await fetch(url, {
        method: "PUT", credentials: "same-origin", headers: { "content-type": "application/json" },
        body: JSON.stringify({ transaction_id: Number(f.dataset.tx), vehicle: v === "" ? null : v }),
        signal: abort.signal,
      });
    } catch (_) { /* shown below */ }
    clearTimeout(timer);
    binding = false;
    if (r && r.status === 401) { location.reload(); return; }
    if (r && r.ok) {
      delete drafts[keyOf(f)];
      holdUntil = 0;
      if (document.activeElement) document.activeElement.blur();
      refresh();
      return;
    }
    const said = { 400: words.e400, 403: words.e403, 404: words.e404, 409: words.e409 };
    msg.textContent = (r && said[r.status]) || words.efail;
    holdUntil = Date.now() + 15000;
    if (r && r.status === 404) { holdUntil = 0; if (document.activeElement) document.activeElement.blur(); setTimeout(refresh, 2500); }
  });

  let refreshing = false;
  async function refresh() {
    // One at a time: on a slow LAN an older answer must not land after a newer one.
    if (editing() || refreshing) return;
    refreshing = true;
    try {
      const r = await fetch(location.pathname + "/view" + location.search, { credentials: "same-origin" });
      if (r.status === 401) { location.reload(); return; }
      if (!r.ok) return;
      const html = await r.text();
      // The dispatcher may have started typing while this was on its way.
      if (editing()) return;
      $("view").innerHTML = html;
      document.querySelectorAll("details.bind").forEach((x) => { if (x.dataset.key in folds) x.open = folds[x.dataset.key]; });
      document.querySelectorAll("form.bind").forEach((f) => {
        const d = drafts[keyOf(f)];
        if (d !== undefined) { f.elements.vehicle.value = d; f.closest("details").open = true; }
      });
      draw();
    } catch (_) { /* the LAN dropped: try again on the next tick */ } finally { refreshing = false; }
  }

  const out = $("signout");
  if (out) out.addEventListener("click", async () => {
    await fetch("/api/v1/session", { method: "DELETE", credentials: "same-origin" });
    location.reload();
  });
  window.addEventListener("resize", () => { if (chart && $("chart")) chart.setSize({ width: Math.max(320, $("chart").clientWidth - 12), height: 260 }); });
  draw();
  setInterval(refresh, 10000);
})();
