/// The dashboard's static files (`GET /dashboard`, `/dashboard/dashboard.js`,
/// `/dashboard/dashboard.css`), compiled into the binary: no CDN, no build step, nothing to
/// install beside `plane` (a resource bundle would have to travel with the binary into the
/// Debian package and the OCI image). See docs/adr/0004-dashboard-in-the-binary.md.
///
/// The page holds no data. It reads `/dashboard/events` (Server-Sent Events, read with
/// `fetch` so it can send `Authorization: Bearer`, which `EventSource` cannot) with the token
/// given after `#token=` in its address or typed into its form, kept in the tab's
/// `sessionStorage`. Every value from the cluster goes into the page as text
/// (`textContent`), never as markup: backend ids, lock names and drone fields come from
/// peers.
enum DashboardAssets {
    static let html = #"""
<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Plane dashboard</title>
<link rel="stylesheet" href="/dashboard/dashboard.css">
<script src="/dashboard/dashboard.js" defer></script>
</head>
<body>
<header>
  <h1>Plane <span id="cluster"></span></h1>
  <span id="connection" data-connection="connecting">connecting…</span>
</header>
<form id="token-form" hidden>
  <label>This controller's HTTP API needs its token ([http] token):
    <input id="token" type="password" autocomplete="off" size="40">
  </label>
  <button type="submit">Connect</button>
</form>
<main>
  <section>
    <h2>Drones <span class="count" id="drone-count"></span></h2>
    <p id="no-scheduler" hidden>This controller runs no scheduler ([scheduler]); it does not track drones.</p>
    <table id="drones">
      <thead><tr><th>Drone</th><th>State</th><th>Runtime</th><th>Classes</th><th>Pool</th><th>Backends</th><th>Memory free</th><th>Slots free</th><th>Warm</th><th>Heartbeat</th></tr></thead>
      <tbody></tbody>
    </table>
  </section>
  <section>
    <h2>Backends <span class="count" id="backend-count"></span></h2>
    <p id="omitted" hidden></p>
    <table id="backends">
      <thead><tr><th>Backend</th><th>State</th><th>Drone</th><th>Age</th><th>In state</th><th>Idle</th><th>Lock</th></tr></thead>
      <tbody></tbody>
    </table>
  </section>
</main>
<footer>Plane <span id="version"></span> · updated live · times from the controller's clock</footer>
</body>
</html>
"""#

    static let css = #"""
:root { color-scheme: light dark; --line: #8884; --muted: #888; --ok: #1a7f37; --warn: #9a6700; --bad: #cf222e; }
body { font: 14px/1.4 system-ui, sans-serif; margin: 0 1.5rem 2rem; }
header { display: flex; align-items: baseline; gap: 1rem; }
h1 { font-size: 1.4rem; margin: 1rem 0 .5rem; }
h2 { font-size: 1.1rem; margin: 1.5rem 0 .5rem; }
.count { color: var(--muted); font-weight: normal; }
table { border-collapse: collapse; width: 100%; }
th, td { text-align: left; padding: .25rem .6rem; border-bottom: 1px solid var(--line); white-space: nowrap; }
td.id { font-family: ui-monospace, monospace; font-size: 12px; }
th { font-weight: 600; }
[data-state="Ready"] .state { color: var(--ok); }
[data-state="Loading"] .state, [data-state="Starting"] .state, [data-state="Scheduled"] .state, [data-state="Draining"] .state { color: var(--warn); }
[data-live="false"] { color: var(--muted); }
[data-alive="false"] .state { color: var(--bad); }
#connection { color: var(--muted); }
#connection[data-connection="live"] { color: var(--ok); }
#connection[data-connection="error"] { color: var(--bad); }
footer { margin-top: 2rem; color: var(--muted); font-size: 12px; }
"""#

    static let javascript = #"""
"use strict";
(function () {
  const $ = (id) => document.getElementById(id);
  let token = null;
  let snapshot = null;
  let offset = 0; // server clock minus this browser's clock, in ms
  let delay = 1000;

  const fromHash = /(?:^#|&)token=([^&]*)/.exec(location.hash);
  if (fromHash) {
    token = decodeURIComponent(fromHash[1]);
    sessionStorage.setItem("plane-token", token);
    history.replaceState(null, "", location.pathname);
  } else {
    token = sessionStorage.getItem("plane-token");
  }

  $("token-form").addEventListener("submit", (event) => {
    event.preventDefault();
    token = $("token").value;
    sessionStorage.setItem("plane-token", token);
    $("token-form").hidden = true;
    connect();
  });

  function setConnection(state, text) {
    const element = $("connection");
    element.dataset.connection = state;
    element.textContent = text;
  }

  function duration(ms) {
    if (ms === null || ms === undefined || !isFinite(ms)) return "";
    const s = Math.max(0, Math.floor(ms / 1000));
    if (s < 60) return s + " s";
    if (s < 3600) return Math.floor(s / 60) + " min " + (s % 60) + " s";
    if (s < 86400) return Math.floor(s / 3600) + " h " + Math.floor((s % 3600) / 60) + " min";
    return Math.floor(s / 86400) + " d " + Math.floor((s % 86400) / 3600) + " h";
  }

  function bytes(n) {
    if (n === undefined || n === null) return "";
    const units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let i = 0;
    while (n >= 1024 && i < units.length - 1) { n /= 1024; i += 1; }
    return (i === 0 ? n : n.toFixed(1)) + " " + units[i];
  }

  function cell(row, text, className) {
    const td = document.createElement("td");
    td.textContent = text === undefined || text === null ? "" : String(text);
    if (className) td.className = className;
    row.appendChild(td);
    return td;
  }

  function render() {
    if (!snapshot) return;
    const now = Date.now() + offset;
    $("cluster").textContent = snapshot.cluster;
    $("version").textContent = snapshot.controller_version;
    document.title = "Plane " + snapshot.cluster;

    const drones = snapshot.drones;
    $("no-scheduler").hidden = drones !== null;
    const droneBody = document.createElement("tbody");
    for (const drone of drones || []) {
      const row = document.createElement("tr");
      row.dataset.drone = drone.id;
      row.dataset.state = drone.state;
      row.dataset.alive = String(drone.alive);
      cell(row, drone.id, "id");
      cell(row, drone.alive ? drone.state : drone.state + " (silent)", "state");
      cell(row, drone.runtime);
      cell(row, (drone.runtime_classes || []).join(", "));
      cell(row, drone.pool);
      cell(row, drone.running_backends);
      const capacity = drone.capacity || {};
      cell(row, capacity.memory_free_bytes !== undefined ? bytes(capacity.memory_free_bytes) + " / " + bytes(capacity.memory_bytes) : "");
      cell(row, capacity.backend_slots_free !== undefined ? capacity.backend_slots_free + " / " + capacity.backend_slots : "");
      cell(row, Object.entries(drone.warm_pools || {}).map(([k, v]) => k + ": " + v).join(", "));
      cell(row, duration(now - drone.last_heartbeat_ms) + " ago");
      droneBody.appendChild(row);
    }
    $("drones").replaceChild(droneBody, $("drones").tBodies[0]);
    $("drone-count").textContent = drones ? String(drones.length) : "";

    const backendBody = document.createElement("tbody");
    for (const backend of snapshot.backends) {
      const row = document.createElement("tr");
      row.dataset.backend = backend.id;
      row.dataset.state = backend.state;
      row.dataset.live = String(backend.live);
      cell(row, backend.id, "id");
      cell(row, backend.state, "state");
      cell(row, backend.drone, "id");
      cell(row, backend.created_ms !== undefined ? duration(now - backend.created_ms) : "");
      cell(row, duration(now - backend.state_time_ms));
      cell(row, backend.idle_secs !== undefined ? duration(backend.idle_secs * 1000 + (now - backend.idle_at_ms)) : "");
      cell(row, backend.lock);
      backendBody.appendChild(row);
    }
    $("backends").replaceChild(backendBody, $("backends").tBodies[0]);
    const live = Object.values(snapshot.live_backends_by_state || {}).reduce((a, b) => a + b, 0);
    $("backend-count").textContent = live + " live";
    $("omitted").hidden = !snapshot.backends_omitted;
    $("omitted").textContent = snapshot.backends_omitted ? snapshot.backends_omitted + " more not listed (live ones first, newest first)." : "";
  }

  function apply(data) {
    snapshot = JSON.parse(data);
    offset = snapshot.server_time_ms - Date.now();
    render();
  }

  async function connect() {
    const headers = token ? { Authorization: "Bearer " + token } : {};
    try {
      const response = await fetch("/dashboard/events", { headers: headers, cache: "no-store" });
      if (response.status === 401) {
        setConnection("error", "needs the API token");
        $("token-form").hidden = false;
        return;
      }
      if (!response.ok || !response.body) throw new Error("HTTP " + response.status);
      setConnection("live", "live");
      delay = 1000;
      const reader = response.body.getReader();
      const decoder = new TextDecoder();
      let buffer = "";
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buffer += decoder.decode(value, { stream: true });
        let end;
        while ((end = buffer.indexOf("\n\n")) >= 0) {
          const event = buffer.slice(0, end);
          buffer = buffer.slice(end + 2);
          const data = event.split("\n").filter((line) => line.startsWith("data: ")).map((line) => line.slice(6)).join("\n");
          if (data) apply(data);
        }
      }
      setConnection("connecting", "reconnecting…");
    } catch (error) {
      setConnection("error", "disconnected (" + error.message + "), retrying…");
    }
    setTimeout(connect, delay);
    delay = Math.min(delay * 2, 15000);
  }

  setInterval(render, 1000);
  connect();
})();
"""#
}
