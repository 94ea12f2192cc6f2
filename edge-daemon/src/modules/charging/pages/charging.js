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

  async function refresh() {
    try {
      const r = await fetch(location.pathname + "/view" + location.search, { credentials: "same-origin" });
      if (r.status === 401) { location.reload(); return; }
      if (!r.ok) return;
      $("view").innerHTML = await r.text();
      draw();
    } catch (_) { /* the LAN dropped: try again on the next tick */ }
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
