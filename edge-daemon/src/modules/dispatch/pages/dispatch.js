// Dispatcher board and driver tablet: keeps the server-rendered page live (re-fetches
// its fragment) and sends the actions to the JSON API. No build step, no framework.
"use strict";
(function () {
  const $ = (id) => document.getElementById(id);
  const page = document.body.dataset.page;

  async function api(method, url, body) {
    const r = await fetch(url, {
      method,
      credentials: "same-origin",
      // POST and PUT always declare JSON (the node refuses anything else).
      headers: body || method === "POST" || method === "PUT" ? { "content-type": "application/json" } : {},
      body: body ? JSON.stringify(body) : method === "POST" || method === "PUT" ? "{}" : undefined,
    });
    const text = await r.text();
    let json = null;
    try { json = text ? JSON.parse(text) : null; } catch (_) { /* not JSON */ }
    if (!r.ok) {
      const msg = json && json.error ? json.error.message : r.status + " " + r.statusText;
      throw new Error(msg);
    }
    return json;
  }

  function esc(s) {
    return String(s == null ? "" : s).replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c]));
  }

  // ---------------------------------------------------------------- tablet
  if (page === "tablet") {
    const card = $("card");
    async function refresh() {
      try {
        const r = await fetch("/tablet/card", { credentials: "same-origin" });
        if (r.ok && !card.querySelector("#pin-form")) card.innerHTML = await r.text();
      } catch (_) { /* offline LAN blip: keep what is shown */ }
    }
    card.addEventListener("submit", async (e) => {
      if (e.target.id !== "pin-form") return;
      e.preventDefault();
      $("pin-error").textContent = "";
      try {
        await api("POST", "/api/v1/signon", { person: $("pin-person").value.trim(), pin: $("pin-pin").value, terminal: "tablet" });
        const r = await fetch("/tablet/card", { credentials: "same-origin" });
        card.innerHTML = await r.text();
      } catch (err) {
        $("pin-error").textContent = err.message;
        $("pin-pin").value = "";
      }
    });
    $("signout").addEventListener("click", async () => {
      await api("DELETE", "/api/v1/session").catch(() => {});
      const r = await fetch("/tablet/card", { credentials: "same-origin" });
      card.innerHTML = await r.text();
    });
    setInterval(refresh, 10000);
    return;
  }

  // ---------------------------------------------------------------- board
  const date = document.body.dataset.date;
  let day = null; // last JSON day view (vehicles and drivers for the edit panel)
  let me = null;

  async function loadDay() {
    day = await api("GET", "/api/v1/dispatch/days/" + date);
  }

  async function refresh() {
    try {
      const r = await fetch("/dispatch/day?date=" + date, { credentials: "same-origin" });
      if (r.ok) {
        $("day").innerHTML = await r.text();
        $("count").textContent = document.querySelectorAll("#blocks tbody tr[data-block]").length;
      }
    } catch (_) { /* keep the last view */ }
  }

  async function whoami() {
    try {
      me = await api("GET", "/api/v1/session");
      $("who").innerHTML = esc(me.name) + ' <button id="logout">Sign out</button>';
      $("login").hidden = true;
    } catch (_) {
      me = null;
      $("who").innerHTML = '<button id="show-login">Sign in</button>';
    }
  }

  function needLogin() {
    if (me) return false;
    $("login").hidden = false;
    $("login-person").focus();
    return true;
  }

  document.addEventListener("click", async (e) => {
    const t = e.target;
    if (!(t instanceof HTMLElement)) return;
    if (t.id === "show-login") { $("login").hidden = false; return; }
    if (t.id === "logout") { await api("DELETE", "/api/v1/session").catch(() => {}); await whoami(); return; }
    if (t.classList.contains("edit")) {
      if (needLogin()) return;
      await loadDay();
      const row = t.closest("tr");
      $("edit-block").textContent = row.querySelector("b").textContent;
      $("edit").dataset.block = t.dataset.block;
      const vsel = $("edit-vehicle");
      vsel.innerHTML = '<option value="">(none)</option>' + day.vehicles.map((v) =>
        `<option value="${esc(v.id)}">${esc(v.label)}${v.soc_pct != null ? " · " + Math.round(v.soc_pct) + "%" : ""}${v.status && v.status !== "in_service" ? " · " + esc(v.status) : ""}</option>`).join("");
      vsel.value = row.dataset.vehicle || "";
      const dsel = $("edit-driver");
      dsel.innerHTML = '<option value="">(none)</option>' + day.drivers.map((p) => `<option value="${esc(p.id)}">${esc(p.name)}</option>`).join("");
      dsel.value = row.dataset.driver || "";
      $("edit-bay").value = row.dataset.bay || "";
      $("edit-error").textContent = "";
      $("edit").hidden = false;
      return;
    }
    if (t.id === "edit-cancel") { $("edit").hidden = true; return; }
    if (t.id === "auto") {
      if (needLogin()) return;
      try {
        const p = await api("POST", "/api/v1/dispatch/days/" + date + "/auto-assign", { apply: false });
        $("proposal-list").innerHTML = p.proposals.map((x) =>
          `<li class="proposal" data-block="${esc(x.block)}">${esc(x.block)} → <b>${esc(x.vehicle)}</b> (forecast ${Math.round(x.forecast_soc_pct)}%, ${x.available_kwh} kWh for ${x.need_kwh} kWh)</li>`).join("") +
          p.unassigned.map((x) => `<li class="unassigned">${esc(x.block)}: ${esc(x.reason)}</li>`).join("");
        if (!p.proposals.length && !p.unassigned.length) $("proposal-list").innerHTML = "<li>Every block already has a vehicle.</li>";
        $("proposal").hidden = false;
      } catch (err) { alert(err.message); }
      return;
    }
    if (t.id === "proposal-apply") {
      try {
        await api("POST", "/api/v1/dispatch/days/" + date + "/auto-assign", { apply: true });
        $("proposal").hidden = true;
        await refresh();
      } catch (err) { alert(err.message); }
      return;
    }
    if (t.id === "proposal-close") { $("proposal").hidden = true; return; }
    if (t.classList.contains("oos")) {
      if (needLogin()) return;
      if (!confirm("Take " + t.dataset.vehicle + " out of service?")) return;
      try {
        await api("POST", "/api/v1/dispatch/vehicles/" + encodeURIComponent(t.dataset.vehicle) + "/out-of-service", { note: "dispatcher" });
        await refresh();
      } catch (err) { alert(err.message); }
      return;
    }
    if (t.classList.contains("replace")) {
      const block = t.dataset.block;
      try {
        const r = await api("GET", "/api/v1/dispatch/days/" + date + "/blocks/" + encodeURIComponent(block) + "/replacements");
        $("replace-block").textContent = block;
        $("replace-error").textContent = "";
        $("replace-list").innerHTML = r.replacements.length
          ? r.replacements.map((x) => `<li>${esc(x.label)} · ${Math.round(x.forecast_soc_pct)}% · ${x.available_kwh} kWh for ${x.need_kwh} kWh <button class="swap" data-block="${esc(block)}" data-vehicle="${esc(x.vehicle)}">Swap</button></li>`).join("")
          : "<li>No vehicle is free with enough charge.</li>";
        $("replace").hidden = false;
      } catch (err) { alert(err.message); }
      return;
    }
    if (t.classList.contains("swap")) {
      if (needLogin()) return;
      try {
        await api("POST", "/api/v1/dispatch/days/" + date + "/blocks/" + encodeURIComponent(t.dataset.block) + "/swap", { vehicle: t.dataset.vehicle, reason: "replacement" });
        $("replace").hidden = true;
        await refresh();
      } catch (err) { $("replace-error").textContent = err.message; }
      return;
    }
    if (t.id === "replace-close") { $("replace").hidden = true; }
  });

  // A TODS run's driver, chosen on its row (signed-in staff only see the choice).
  document.addEventListener("change", async (e) => {
    const t = e.target;
    if (!t.classList || !t.classList.contains("run-driver")) return;
    try {
      await api("PUT", "/api/v1/dispatch/days/" + date + "/runs/" + encodeURIComponent(t.dataset.run) + "/assignment", { driver: t.value });
      await refresh();
    } catch (err) {
      t.insertAdjacentHTML("afterend", '<span class="error" role="alert"> ' + esc(err.message) + "</span>");
    }
  });

  $("edit").addEventListener("submit", async (e) => {
    e.preventDefault();
    const block = $("edit").dataset.block;
    try {
      await api("PUT", "/api/v1/dispatch/days/" + date + "/blocks/" + encodeURIComponent(block) + "/assignment", {
        vehicle: $("edit-vehicle").value, driver: $("edit-driver").value, bay: $("edit-bay").value,
      });
      $("edit").hidden = true;
      await refresh();
    } catch (err) { $("edit-error").textContent = err.message; }
  });

  $("login").addEventListener("submit", async (e) => {
    e.preventDefault();
    $("login-error").textContent = "";
    try {
      await api("POST", "/api/v1/session", { person: $("login-person").value.trim(), password: $("login-password").value });
      $("login-password").value = "";
      await whoami();
    } catch (err) { $("login-error").textContent = err.message; }
  });

  $("date-form").addEventListener("submit", (e) => {
    e.preventDefault();
    location.href = "/dispatch?date=" + encodeURIComponent($("date").value);
  });

  whoami();
  setInterval(refresh, 3000);
})();
