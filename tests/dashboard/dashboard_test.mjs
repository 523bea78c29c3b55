// The live dashboard (GET /) in a real browser: Debian's chromium, headless, driven by playwright-core
// (both installed by scripts/setup.sh). Starts the real binary on a free loopback port with a fresh
// data dir, sends events whose totals the test knows, and checks that the page shows them; sends more,
// and checks that the page changes to the new totals within 10 s of the acknowledgement; the top
// campaigns table, the invalid-traffic share after a burst of bot traffic, the ingest rate and lag.
// The page must load nothing from outside the daemon. Then, on a daemon with tokens: the page asks
// for one, and with an advertiser's token (typed in, or in the address as #token=) shows that
// advertiser's totals only.
//
//   node tests/dashboard/dashboard_test.mjs --binary build/adpulse [--deps deps] [--screenshot docs/dashboard.png]
//
// The last line printed is `N passed, M failed`; the exit code is 0 only if M == 0.
import { spawn, spawnSync } from "node:child_process";
import fs from "node:fs";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import { createRequire } from "node:module";
import { fileURLToPath } from "node:url";

const here = path.dirname(fileURLToPath(import.meta.url));
const arg = (name, fallback) => {
  const i = process.argv.indexOf(name);
  return i >= 0 ? process.argv[i + 1] : fallback;
};
const binary = path.resolve(arg("--binary", process.env.ADPULSE_BINARY || "build/adpulse"));
const deps = path.resolve(arg("--deps", path.join(here, "..", "..", "deps")));
const screenshot = arg("--screenshot", null);
const chromiumPath = arg("--chromium", "/usr/bin/chromium");

let passed = 0, failed = 0;
function check(ok, what) {
  if (ok) passed++;
  else { failed++; console.log(`FAIL ${what}`); }
  return ok;
}
function finish() {
  console.log(`${passed} passed, ${failed} failed`);
  process.exit(failed === 0 ? 0 : 1);
}

const MINUTE = 60000;
const AGENT = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) " +
  "Chrome/120.0.0.0 Safari/537.36";
const CAMPAIGNS = ["dash-a", "dash-b", "dash-c", "dash-d"];

// Deterministic events: impressions, and clicks each after its own user's impression of the ad
// (so no signal fires on valid traffic); prices in whole micro-units, summed exactly as BigInt.
function makeEvents(prefix, n, now, seed) {
  let x = seed;
  const rand = (k) => { x = (x * 1103515245 + 12345) % 2147483648; return (x >> 8) % k; };
  const weights = [0, 0, 0, 0, 1, 1, 1, 2, 2, 3];  // campaigns of different sizes
  const events = [];
  for (let i = 0; i < n; i++) {
    const campaign = CAMPAIGNS[weights[rand(weights.length)]];
    const t = now - MINUTE - rand(40 * MINUTE);
    const user = `${prefix}-u${i}`;
    const common = { campaign_id: campaign, ad_id: `${campaign}-ad`, user_id: user, user_agent: AGENT,
      ip: `10.${rand(250)}.${rand(250)}.${1 + rand(250)}`, country: "US", device_type: "desktop" };
    const micros = 1000 * rand(5000);
    events.push({ event_id: `${prefix}-i${i}`, event_type: "impression", timestamp: t, bid_micros: micros, ...common });
    if (i % 5 === 0) {
      events.push({ event_id: `${prefix}-c${i}`, event_type: "click", timestamp: t + 5000, bid_micros: 250000, ...common });
      if (i % 15 === 0) {
        events.push({ event_id: `${prefix}-v${i}`, event_type: "conversion", timestamp: t + 30000, bid_micros: 0,
          click_id: `${prefix}-c${i}`, ...common });
      }
    }
  }
  return events;
}
function bots(prefix, n, now) {
  const events = [];
  for (let i = 0; i < n; i++) {
    events.push({ event_id: `${prefix}-b${i}`, event_type: "impression", timestamp: now - 2 * MINUTE,
      campaign_id: "dash-a", user_id: `${prefix}-bot${i}`, ip: "10.250.0.1", bid_micros: 100000 });
  }
  return events;
}
function ndjson(events) {
  return events.map(({ bid_micros, ...e }) => {
    const price = `${bid_micros / 1e6 | 0}.${String(bid_micros % 1e6).padStart(6, "0")}`;
    return JSON.stringify(e).slice(0, -1) + `,"bid_price":${price}}`;
  }).join("\n") + "\n";
}
function truth(events) {
  const t = { impressions: 0, clicks: 0, conversions: 0, invalid: 0, spend: 0n, campaigns: {} };
  for (const e of events) {
    if (!e.user_agent) { t.invalid++; continue; }
    const c = t.campaigns[e.campaign_id] ||= { impressions: 0, clicks: 0, conversions: 0, spend: 0n };
    t[e.event_type + "s"]++;
    c[e.event_type + "s"]++;
    t.spend += BigInt(e.bid_micros);
    c.spend += BigInt(e.bid_micros);
  }
  return t;
}
const money = (micros) => `${micros / 1000000n}.${String(micros % 1000000n).padStart(6, "0")}`;

async function freePort() {
  return new Promise((resolve) => {
    const s = net.createServer();
    s.listen(0, "127.0.0.1", () => { const p = s.address().port; s.close(() => resolve(p)); });
  });
}

async function main() {
  const require = createRequire(path.join(deps, "package.json"));
  let chromium;
  try {
    ({ chromium } = require("playwright-core"));
  } catch (e) {
    check(false, `playwright-core is not in ${deps}: run scripts/setup.sh (${e.message})`);
    return;
  }
  if (!check(fs.existsSync(chromiumPath), `chromium at ${chromiumPath} (Debian package chromium, scripts/setup.sh)`)) return;

  const root = fs.mkdtempSync(path.join(os.tmpdir(), "adpulse-dashboard-"));
  const port = await freePort();
  const log = fs.openSync(path.join(root, "daemon.log"), "a");
  const daemon = spawn(binary, ["serve", "--listen", `127.0.0.1:${port}`, "--data-dir", path.join(root, "data")],
    { stdio: ["ignore", log, log] });
  const base = `http://127.0.0.1:${port}`;
  let browser = null;
  try {
    const deadline = Date.now() + 30000;
    while (true) {
      const r = await fetch(`${base}/readyz`).catch(() => null);
      if (r && r.status === 200) break;
      if (Date.now() > deadline || daemon.exitCode !== null) throw new Error("daemon not ready; see its log");
      await new Promise((r) => setTimeout(r, 50));
    }
    const logText = fs.readFileSync(path.join(root, "daemon.log"), "utf8");
    check(logText.includes(`dashboard at http://127.0.0.1:${port}/`), "the startup log prints the dashboard's address");

    const page0 = await fetch(`${base}/`);
    const html = await page0.text();
    check(page0.status === 200 && page0.headers.get("content-type").startsWith("text/html"), "GET / is an HTML page");
    const external = [...html.matchAll(/(?:src|href)="([^"]*)"/g)].map((m) => m[1]).filter((u) => !u.startsWith("/") && !u.startsWith("data:"));
    check(external.length === 0, `the page loads nothing from outside the daemon: ${external}`);
    for (const asset of ["/dashboard/uPlot.iife.min.js", "/dashboard/uPlot.min.css", "/dashboard/dashboard.js"]) {
      const r = await fetch(base + asset);
      check(r.status === 200 && (await r.text()).length > 100, `${asset} is served`);
    }

    const post = async (events) => {
      const r = await fetch(`${base}/v1/events`, { method: "POST", headers: { "Content-Type": "application/x-ndjson" }, body: ndjson(events) });
      const body = await r.json();
      check(r.status === 200 && body.accepted === events.length, `ingest ${events.length}: ${r.status} ${JSON.stringify(body).slice(0, 200)}`);
      return Date.now();
    };
    const now = Date.now();
    const first = makeEvents("a", 400, now, 7);
    await post(first);

    browser = await chromium.launch({ executablePath: chromiumPath, args: ["--no-sandbox"] });
    const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
    const outside = [];
    page.on("request", (req) => { if (!req.url().startsWith(base)) outside.push(req.url()); });
    const errors = [];
    page.on("pageerror", (e) => errors.push(e.message));
    await page.goto(`${base}/`);
    const value = (sel) => page.getAttribute(sel, "data-value");
    // Waits until the page shows `want` for every selector; the time it took, or null.
    const waitFor = async (want, timeoutMs) => {
      const start = Date.now();
      while (Date.now() - start < timeoutMs) {
        let all = true;
        for (const [sel, v] of Object.entries(want)) if ((await value(sel).catch(() => null)) !== String(v)) all = false;
        if (all) return Date.now() - start;
        await page.waitForTimeout(100);
      }
      return null;
    };
    const shows = async (t, label, since) => {
      const want = { "#total-impressions": t.impressions, "#total-clicks": t.clicks,
        "#total-conversions": t.conversions, "#total-spend": money(t.spend) };
      const took = await waitFor(want, 10000);
      const got = {};
      for (const sel of Object.keys(want)) got[sel] = await value(sel);
      check(took !== null, `${label}: the page shows ${JSON.stringify(want)}; it shows ${JSON.stringify(got)}`);
      if (since !== undefined && took !== null) {
        const afterAck = Date.now() - since;
        check(afterAck <= 10000, `${label}: shown ${afterAck} ms after the acknowledgement (limit 10 s)`);
      }
    };
    const t1 = truth(first);
    await shows(t1, "first batch");
    check(await value("#total-ctr") === (t1.clicks / t1.impressions).toFixed(6), "CTR is clicks / impressions");

    // More events while the page is open: it must catch up on its own.
    const second = makeEvents("b", 300, now, 11);
    let sawRate = false;
    const acked = await post(second);
    const t2 = truth([...first, ...second]);
    const rateWatch = (async () => {
      const start = Date.now();
      while (Date.now() - start < 8000 && !sawRate) {
        if (Number(await value("#ingest-rate").catch(() => "0")) > 0) sawRate = true;
        await page.waitForTimeout(100);
      }
    })();
    await shows(t2, "after a second batch", acked);
    await rateWatch;
    check(sawRate, "the ingest rate shows the second batch (> 0 events/s)");
    const lag = Number(await value("#lag"));
    check(lag >= 25 && lag < 41 * 60, `the lag is the newest event's age: ${lag} s`);

    // Top campaigns: every row equals the ground truth.
    const rows = await page.$$eval("#top-campaigns tr", (trs) => trs.map((tr) => [...tr.children].map((td) => td.dataset.value)));
    const expectedRows = Object.entries(t2.campaigns).sort((a, b) => b[1].impressions - a[1].impressions || (a[0] < b[0] ? -1 : 1))
      .map(([c, v]) => [c, String(v.impressions), String(v.clicks), (v.clicks / v.impressions).toFixed(6),
        String(v.conversions), money(v.spend)]);
    check(JSON.stringify(rows) === JSON.stringify(expectedRows), `top campaigns ${JSON.stringify(rows)} vs ${JSON.stringify(expectedRows)}`);

    // Bot traffic (no user agent: invalid on its own) moves the invalid share, not the billed totals.
    const third = bots("c", 100, now);
    const acked3 = await post(third);
    const t3 = truth([...first, ...second, ...third]);
    const share = (t3.invalid / (t3.impressions + t3.clicks + t3.conversions + t3.invalid)).toFixed(6);
    const took = await waitFor({ "#invalid-rate": share, "#total-impressions": t3.impressions }, 10000);
    check(took !== null && Date.now() - acked3 <= 10000,
      `invalid share ${share} shown within 10 s (shows ${await value("#invalid-rate")})`);
    check(errors.length === 0, `no script errors: ${errors}`);
    check(outside.length === 0, `no request left the daemon: ${outside}`);
    check(!(await page.textContent("#status")).startsWith("cannot"), "the status line shows no error");
    if (screenshot) {
      await page.waitForTimeout(2500);
      await page.screenshot({ path: screenshot, fullPage: true });
      console.log(`screenshot in ${screenshot}`);
    }
  } catch (e) {
    check(false, `test aborted: ${e.stack || e}`);
  } finally {
    if (browser) await browser.close();
    daemon.kill("SIGTERM");
    await new Promise((r) => daemon.exitCode !== null ? r() : daemon.on("exit", r));
    check(daemon.exitCode === 0, `clean shutdown (exit code ${daemon.exitCode})`);
    fs.rmSync(root, { recursive: true, force: true });
  }
}

// A daemon with tokens: an ingest token for the events, an advertiser's token for the page.
async function tokenScenario() {
  const require = createRequire(path.join(deps, "package.json"));
  const { chromium } = require("playwright-core");
  const make = (name, scope) => {
    const out = spawnSync(binary, ["token", "--name", name, "--scope", scope], { encoding: "utf8" }).stdout;
    return { token: out.split("\n")[0].trim(), toml: out.slice(out.indexOf("[[auth.tokens]]")) };
  };
  const ingest = make("collector", "ingest");
  const portal = make("portal-a", "advertiser:adv-a");
  const root = fs.mkdtempSync(path.join(os.tmpdir(), "adpulse-dashboard-auth-"));
  fs.writeFileSync(path.join(root, "adpulse.toml"), ingest.toml + "\n" + portal.toml);
  const port = await freePort();
  const log = fs.openSync(path.join(root, "daemon.log"), "a");
  const daemon = spawn(binary, ["serve", "--config", path.join(root, "adpulse.toml"), "--listen", `127.0.0.1:${port}`,
    "--data-dir", path.join(root, "data")], { stdio: ["ignore", log, log] });
  const base = `http://127.0.0.1:${port}`;
  let browser = null;
  try {
    const deadline = Date.now() + 30000;
    while (true) {
      const r = await fetch(`${base}/readyz`).catch(() => null);
      if (r && r.status === 200) break;
      if (Date.now() > deadline || daemon.exitCode !== null) throw new Error("daemon not ready; see its log");
      await new Promise((r) => setTimeout(r, 50));
    }
    const now = Date.now();
    const a = makeEvents("ta", 200, now, 5).map((e) => ({ ...e, advertiser_id: "adv-a" }));
    const b = makeEvents("tb", 300, now, 9).map((e) => ({ ...e, advertiser_id: "adv-b", campaign_id: `b-${e.campaign_id}` }));
    const r = await fetch(`${base}/v1/events`, { method: "POST", body: ndjson([...a, ...b]),
      headers: { "Content-Type": "application/x-ndjson", Authorization: `Bearer ${ingest.token}` } });
    check(r.status === 200, `ingest with the collector's token: ${r.status}`);
    browser = await chromium.launch({ executablePath: chromiumPath, args: ["--no-sandbox"] });
    const page = await browser.newPage();
    const errors = [];
    page.on("pageerror", (e) => errors.push(e.message));
    await page.goto(`${base}/`);
    await page.waitForSelector("#token-form:not([hidden])", { timeout: 10000 }).catch(() => null);
    check(await page.isVisible("#token-form"), "without a token the page asks for one");
    check((await page.textContent("#status")).includes("needs a token"), `and says why: ${await page.textContent("#status")}`);
    await page.fill("#token-input", portal.token);
    await page.click("#token-form button");
    const ta = truth(a);
    const want = String(ta.impressions);
    const seen = async (p) => {
      const start = Date.now();
      while (Date.now() - start < 10000) {
        if ((await p.getAttribute("#total-impressions", "data-value").catch(() => null)) === want) return true;
        await p.waitForTimeout(100);
      }
      return false;
    };
    check(await seen(page), `with adv-a's token the page shows adv-a's ${want} impressions (of ${ta.impressions + truth(b).impressions}); ` +
      `it shows ${await page.getAttribute("#total-impressions", "data-value")}`);
    const campaigns = await page.$$eval("#top-campaigns tr", (trs) => trs.map((tr) => tr.dataset.campaign));
    check(campaigns.length > 0 && campaigns.every((c) => !c.startsWith("b-")), `top campaigns are adv-a's only: ${campaigns}`);
    check(!(await page.textContent("#status")).startsWith("cannot"), `no error once the token is given: ${await page.textContent("#status")}`);
    const page2 = await browser.newPage();
    await page2.goto(`${base}/#token=${portal.token}`);
    check(await seen(page2), "a token in the address (#token=) works too");
    check(!page2.url().includes("token="), `and is taken out of the address: ${page2.url()}`);
    check(errors.length === 0, `no script errors: ${errors}`);
  } catch (e) {
    check(false, `token scenario aborted: ${e.stack || e}`);
  } finally {
    if (browser) await browser.close();
    daemon.kill("SIGTERM");
    await new Promise((r) => daemon.exitCode !== null ? r() : daemon.on("exit", r));
    fs.rmSync(root, { recursive: true, force: true });
  }
}

await main();
await tokenScenario();
finish();
