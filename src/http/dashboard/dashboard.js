// adpulse's live dashboard: reads the public API (/v1/metrics, /v1/top) and /metrics every 2 s and
// draws the last 60 minutes with uPlot. Plain browser JavaScript, no build step. Each number's
// exact value is also in its element's data-value attribute (the dashboard test reads it).
"use strict";

const MINUTE = 60000;
const WINDOW_MINUTES = 60;
const REFRESH_MS = 2000;
const COUNTS = ["impressions", "clicks", "conversions"];
const FRAUD = ["fraud_impressions", "fraud_clicks", "fraud_conversions"];

let chart = null;
let lastAccepted = null; // {value, at} of adpulse_events_accepted_total

// With tokens configured, the data calls need one: from the page's address (#token=...), kept in
// this tab's sessionStorage, or typed into the form the page shows after a 401.
const hashToken = new URLSearchParams(location.hash.slice(1)).get("token");
if (hashToken) {
  sessionStorage.setItem("adpulse-token", hashToken);
  history.replaceState(null, "", location.pathname + location.search);
}

function authHeaders() {
  const token = sessionStorage.getItem("adpulse-token");
  return token ? { Authorization: `Bearer ${token}` } : {};
}

class Unauthorized extends Error {}

async function getJson(url) {
  const r = await fetch(url, { cache: "no-store", headers: authHeaders() });
  const body = await r.json().catch(() => ({}));
  if (r.status === 401) throw new Unauthorized(body.error || "a token is needed");
  if (!r.ok) throw new Error(`${url.split("?")[0]}: ${body.error || r.status}`);
  return body;
}

// /metrics needs scope read or admin: an advertiser's token sees the page without the ingest rate
// and lag.
async function getMetricsText() {
  const r = await fetch("/metrics", { cache: "no-store", headers: authHeaders() });
  return r.ok ? r.text() : "";
}

document.getElementById("token-form").addEventListener("submit", (ev) => {
  ev.preventDefault();
  sessionStorage.setItem("adpulse-token", document.getElementById("token-input").value.trim());
  document.getElementById("token-form").hidden = true;
});

// Prometheus text: {name: [[labels, value], ...]}.
function parseMetrics(text) {
  const out = {};
  for (const line of text.split("\n")) {
    if (!line || line[0] === "#") continue;
    const m = /^([a-zA-Z_:][\w:]*)(\{[^}]*\})? (\S+)$/.exec(line);
    if (!m) continue;
    (out[m[1]] = out[m[1]] || []).push([m[2] || "", Number(m[3])]);
  }
  return out;
}

function set(id, value, text) {
  const el = document.getElementById(id);
  el.dataset.value = String(value);
  el.textContent = text;
}

const integer = new Intl.NumberFormat("en-US");
const money = new Intl.NumberFormat("en-US", { minimumFractionDigits: 2, maximumFractionDigits: 2 });
const percent = (x) => `${(100 * x).toFixed(2)} %`;
const ratio = (a, b) => (b > 0 ? a / b : 0);

function drawChart(rows, start) {
  const xs = [], series = [[], [], [], []];
  const byTime = new Map(rows.map((r) => [r.time, r]));
  for (let i = 0; i < WINDOW_MINUTES; i++) {
    const t = start + i * MINUTE;
    const r = byTime.get(t) || {};
    xs.push(t / 1000);
    COUNTS.forEach((k, j) => series[j].push(r[k] || 0));
    series[3].push(Number(r.spend || 0));
  }
  const data = [xs, ...series];
  const width = document.getElementById("chart").clientWidth || 900;
  if (!chart) {
    chart = new uPlot({
      width, height: 280,
      series: [
        {},
        { label: "impressions", stroke: "#2e90fa", scale: "n" },
        { label: "clicks", stroke: "#12b76a", scale: "n" },
        { label: "conversions", stroke: "#f79009", scale: "n" },
        { label: "spend", stroke: "#7a5af8", scale: "$", value: (u, v) => (v == null ? "-" : money.format(v)) },
      ],
      axes: [{}, { scale: "n" }, { scale: "$", side: 1, grid: { show: false } }],
    }, data, document.getElementById("chart"));
  } else {
    chart.setData(data);
  }
}

async function refresh() {
  const now = Date.now();
  const end = Math.ceil((now + 1) / MINUTE) * MINUTE;
  const start = end - WINDOW_MINUTES * MINUTE;
  const range = `start=${start}&end=${end}`;
  const metrics = [...COUNTS, "spend", ...FRAUD].join(",");
  const [perMinute, totals, top, prom] = await Promise.all([
    getJson(`/v1/metrics?granularity=minute&metrics=${metrics}&${range}`),
    getJson(`/v1/metrics?metrics=${metrics}&${range}`),
    getJson(`/v1/top?metric=impressions&dimension=campaign_id&limit=10&${range}`),
    getMetricsText(),
  ]);

  const t = totals.rows[0] || {};
  for (const k of COUNTS) set(`total-${k}`, t[k] || 0, integer.format(t[k] || 0));
  const spend = Number(t.spend || 0);
  set("total-spend", spend.toFixed(6), money.format(spend));
  const ctr = ratio(t.clicks || 0, t.impressions || 0);
  set("total-ctr", ctr.toFixed(6), percent(ctr));
  const valid = COUNTS.reduce((s, k) => s + (t[k] || 0), 0);
  const invalid = FRAUD.reduce((s, k) => s + (t[k] || 0), 0);
  const share = ratio(invalid, valid + invalid);
  set("invalid-rate", share.toFixed(6), percent(share));
  set("invalid-count", invalid, `${integer.format(invalid)} events not billed`);
  // Rates over the last 5 whole minutes.
  const recent = perMinute.rows.filter((r) => r.time >= end - 6 * MINUTE && r.time < end - MINUTE);
  for (const k of COUNTS) {
    const perMin = recent.reduce((s, r) => s + (r[k] || 0), 0) / 5;
    document.getElementById(`rate-${k}`).textContent = `${perMin.toFixed(1)} / min (last 5 min)`;
  }
  drawChart(perMinute.rows, start);

  const body = document.getElementById("top-campaigns");
  body.textContent = "";
  if (top.rows.length === 0) {
    body.innerHTML = '<tr><td class="empty" colspan="6">no events yet</td></tr>';
  }
  for (const r of top.rows) {
    const tr = document.createElement("tr");
    tr.dataset.campaign = r.campaign_id;
    const cells = [
      [r.campaign_id, r.campaign_id],
      [r.impressions, integer.format(r.impressions)],
      [r.clicks, integer.format(r.clicks)],
      [ratio(r.clicks, r.impressions).toFixed(6), percent(ratio(r.clicks, r.impressions))],
      [r.conversions, integer.format(r.conversions)],
      [Number(r.spend).toFixed(6), money.format(Number(r.spend))],
    ];
    for (const [value, text] of cells) {
      const td = document.createElement("td");
      td.dataset.value = String(value);
      td.textContent = text;
      tr.appendChild(td);
    }
    body.appendChild(tr);
  }

  const m = parseMetrics(prom);
  const accepted = (m.adpulse_events_accepted_total || []).reduce((s, [, v]) => s + v, 0);
  if (lastAccepted) {
    const rate = (accepted - lastAccepted.value) / ((now - lastAccepted.at) / 1000);
    set("ingest-rate", rate.toFixed(1), integer.format(Math.round(rate)));
  }
  lastAccepted = { value: accepted, at: now };
  const lags = (m.adpulse_aggregation_lag_seconds || []).map(([, v]) => v).filter((v) => v > 0);
  if (lags.length) {
    const freshest = Math.min(...lags), slowest = Math.max(...lags);
    set("lag", freshest.toFixed(1), `${freshest.toFixed(1)} s`);
    document.getElementById("lag-sub").textContent = `newest event's age (slowest shard ${slowest.toFixed(1)} s)`;
  }
  const status = document.getElementById("status");
  status.className = "status";
  status.textContent = `updated ${new Date(now).toLocaleTimeString()}`;
  document.body.dataset.updated = String(now);
}

async function loop() {
  try {
    await refresh();
  } catch (e) {
    const status = document.getElementById("status");
    status.className = "status error";
    status.textContent = `cannot read adpulse: ${e.message}`;
    if (e instanceof Unauthorized) document.getElementById("token-form").hidden = false;
  }
  setTimeout(loop, REFRESH_MS);
}

window.addEventListener("resize", () => {
  if (chart) chart.setSize({ width: document.getElementById("chart").clientWidth, height: 280 });
});

loop();
