// The dashboard in a real browser: Debian's headless Chromium, driven by playwright-core.
//
// Starts the real `web` binary on a fresh database (and a small upstream API on localhost
// for the sync job to call), signs in through the form, sees a failed job's error, replays
// the dead letter after fixing its cause, and watches it succeed; then, on delayed
// messages, runs one now, cancels another, and purges a topic after its dry-run count;
// runtime schedules made through the admin API: shown with their zone and next fire
// times, fired with "Fire now", and paged through when there are more than a page; and
// pauses a topic (a new message is held), resumes it and watches the message run; charts
// per topic drawn from the per-minute rollup after jobs ran, a bulk retry of the dead
// letters grouped by error, and the executions paged with "Older".
//
//   cargo build -p web && (cd e2e/dashboard && npm ci && npm test)
//
// Environment: VQS_WEB_BIN (default ../../target/debug/web), CHROMIUM (default
// /usr/bin/chromium), VQS_SCREENSHOTS (a folder for dashboard.png, dashboard-message.png,
// dashboard-charts.png and search.png; default a temporary one — the README's images in
// `docs/` are made this way: `VQS_SCREENSHOTS=../../docs npm test`), VQS_TEST_BACKEND=postgres (a fresh
// `vqs_test_*` database on VQS_TEST_POSTGRES_URL, default postgres://postgres@127.0.0.1:5432,
// made with psql; default: a SQLite file). Fails, never skips, when the binary or the
// browser is missing.

import { after, test } from "node:test";
import assert from "node:assert/strict";
import { execFileSync, spawn } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync } from "node:fs";
import { createServer } from "node:http";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";

const here = dirname(fileURLToPath(import.meta.url));
const WEB = resolve(process.env.VQS_WEB_BIN ?? join(here, "../../target/debug/web"));
const CHROMIUM = process.env.CHROMIUM ?? "/usr/bin/chromium";
const TOKEN = "e2e-admin-token-" + Math.random().toString(36).slice(2);
const WAIT = 30_000; // the most any one condition may take to appear
const SHOTS = resolve(process.env.VQS_SCREENSHOTS ?? mkdtempSync(join(tmpdir(), "vqs-shots-")));

// The upstream the sync job calls: "ghost" is unknown (404) until the test creates it.
function startUpstream() {
  const accounts = new Map([["acme", [1, 2, 3]]]);
  const server = createServer((req, res) => {
    const url = new URL(req.url, "http://localhost");
    const m = url.pathname.match(/^\/accounts\/([^/]+)\/changes$/);
    const feed = m && accounts.get(decodeURIComponent(m[1]));
    if (!feed) {
      res.writeHead(404, { "content-type": "text/plain" }).end("no such account");
      return;
    }
    const from = Number((url.searchParams.get("cursor") ?? "pos-0").slice(4));
    const items = feed.slice(from);
    res.writeHead(200, { "content-type": "application/json" });
    res.end(JSON.stringify({ items, next_cursor: `pos-${from + items.length}`, has_more: false }));
  });
  return new Promise((ok) =>
    server.listen(0, "127.0.0.1", () => ok({ server, accounts, base: `http://127.0.0.1:${server.address().port}` })),
  );
}

// PostgreSQL databases this run made, dropped when every test has ended.
const madeDatabases = [];
after(() => {
  const base = (process.env.VQS_TEST_POSTGRES_URL ?? "postgres://postgres@127.0.0.1:5432").replace(/\/$/, "");
  for (const name of madeDatabases) {
    execFileSync("psql", [`${base}/postgres`, "-qc", `DROP DATABASE IF EXISTS ${name} WITH (FORCE)`], { stdio: "inherit" });
  }
});

// A new, empty database of the backend under test (as apps/web/tests/common does).
function freshDatabaseUrl(dir) {
  const backend = process.env.VQS_TEST_BACKEND ?? "sqlite";
  if (backend === "sqlite") return `sqlite://${join(dir, "vqs.db")}`;
  assert.equal(backend, "postgres", `VQS_TEST_BACKEND=${backend}: use sqlite or postgres`);
  const base = (process.env.VQS_TEST_POSTGRES_URL ?? "postgres://postgres@127.0.0.1:5432").replace(/\/$/, "");
  const name = `vqs_test_e2e_${Date.now()}_${Math.random().toString(36).slice(2, 8)}`;
  execFileSync("psql", [`${base}/postgres`, "-qc", `CREATE DATABASE ${name}`], { stdio: "inherit" });
  madeDatabases.push(name);
  return `${base}/${name}`;
}

// The real app: `web serve` on a fresh database (with `env` added); resolves with its base URL.
function startWeb(env = {}) {
  assert.ok(existsSync(WEB), `no web binary at ${WEB}: run cargo build -p web first (or set VQS_WEB_BIN)`);
  const dir = mkdtempSync(join(tmpdir(), "vqs-e2e-"));
  const child = spawn(WEB, ["serve"], {
    cwd: resolve(here, "../.."),
    env: {
      ...process.env,
      DATABASE_URL: freshDatabaseUrl(dir),
      VQS_VERCEL_JSON: resolve(here, "../../vercel.json"),
      VQS_ADMIN_TOKEN: TOKEN,
      CRON_SECRET: "e2e-cron-secret",
      PORT: "0",
      RUST_LOG: "warn",
      ...env,
    },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let log = "";
  child.stderr.on("data", (d) => (log += d));
  const url = new Promise((ok, fail) => {
    let out = "";
    child.stdout.on("data", (d) => {
      out += d;
      const m = out.match(/vqs listening on (http:\/\/\S+)/);
      if (m) ok(m[1]);
    });
    child.on("exit", (code) => fail(new Error(`web exited (${code}) before listening:\n${log}`)));
  });
  return { child, url, log: () => log };
}

async function api(base, path, body, method = body ? "POST" : "GET") {
  const resp = await fetch(base + path, {
    method,
    headers: { authorization: `Bearer ${TOKEN}`, "content-type": "application/json" },
    body: body && JSON.stringify(body),
  });
  assert.ok(resp.ok, `${path}: ${resp.status} ${await resp.clone().text()}`);
  return resp.json();
}

async function until(what, check) {
  const deadline = Date.now() + WAIT;
  for (;;) {
    const value = await check();
    if (value) return value;
    assert.ok(Date.now() < deadline, `timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

// Headless Chromium with one page that records script errors, CSP refusals and failed
// responses in `problems`, and accepts every confirm() (the test clicks on purpose).
async function openBrowser(t) {
  const browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: [
      "--no-sandbox",
      "--disable-gpu",
      "--disable-quic",
      "--no-first-run",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
    ],
  });
  t.after(() => browser.close());
  const context = await browser.newContext({ viewport: { width: 1400, height: 1000 } });
  const page = await context.newPage();
  const problems = [];
  // Script errors and CSP refusals; failed loads are judged by their responses below.
  page.on("console", (m) => m.type() === "error" && !m.text().startsWith("Failed to load resource") && problems.push(m.text()));
  page.on("response", (r) => {
    const expected = r.status() === 401 && r.url().endsWith("/admin/login"); // the wrong token, on purpose
    if (r.status() >= 400 && !expected) problems.push(`${r.status()} ${r.url()}`);
  });
  page.on("pageerror", (e) => problems.push(String(e)));
  page.on("dialog", (d) => d.accept());
  return { context, page, problems };
}

test("sign in, see a failed job's error, replay its dead letter and watch it succeed", async (t) => {
  assert.ok(existsSync(CHROMIUM), `no browser at ${CHROMIUM}: apt-get install chromium (or set CHROMIUM)`);
  const upstream = await startUpstream();
  const web = startWeb();
  t.after(() => {
    web.child.kill("SIGTERM");
    upstream.server.close();
  });
  const base = await web.url;

  // A sync whose account the upstream does not know: a permanent failure, dead-lettered.
  const sent = await api(base, "/api/admin/messages", {
    topic: "sync-accounts",
    payload: { api_base: upstream.base, accounts: ["ghost", "acme"] },
  });
  await until("the dead letter", async () => (await api(base, "/api/admin/dead-letters")).length === 1);

  const { context, page, problems } = await openBrowser(t);

  // Sign in through the form; the token goes in the body, never the URL.
  await page.goto(base + "/admin");
  await page.fill("#token", "not-the-token");
  await page.click("button[type=submit]");
  await page.locator("#login-error").waitFor({ timeout: WAIT });
  await page.fill("#token", TOKEN);
  await page.click("button[type=submit]");
  await page.locator("#live").waitFor({ timeout: WAIT });
  assert.equal(new URL(page.url()).pathname, "/admin");
  assert.ok(!page.url().includes(TOKEN), "the token is not in the URL");
  const [cookie] = (await context.cookies()).filter((c) => c.name === "vqs_admin");
  assert.ok(cookie && cookie.httpOnly && cookie.sameSite === "Strict", JSON.stringify(cookie));
  assert.ok(!cookie.value.includes(TOKEN), "the cookie is not the token");

  // The failed job's error, in the dead letters and in the executions.
  const row = page.locator(`tr[data-dead-letter]`, { hasText: sent.messageId.slice(0, 16) });
  await row.waitFor({ timeout: WAIT });
  assert.match(await row.locator("td.error").innerText(), /1 of 2 accounts failed: ghost: upstream answered 404/);
  const failed = page.locator("#executions tr", { hasText: "failed" });
  assert.match(await failed.first().innerText(), /ghost: upstream answered 404/);
  // The sync log shows the other account synced all the same.
  await page.locator("section", { hasText: "Sync log" }).locator("tr", { hasText: "acme" }).waitFor({ timeout: WAIT });
  mkdirSync(SHOTS, { recursive: true });
  await page.screenshot({ path: join(SHOTS, "dashboard.png"), fullPage: true });

  // Fix the cause upstream, then replay from the dashboard: the new message's page
  // refreshes by itself until the run succeeds.
  upstream.accounts.set("ghost", [1, 2]);
  await row.getByRole("button", { name: "Replay" }).click();
  await page.waitForURL(/\/admin\/messages\/msg_[0-9a-f]+\?flash=replayed$/, { timeout: WAIT });
  await page.locator("#message-state", { hasText: "succeeded" }).waitFor({ timeout: WAIT });
  assert.match(await page.locator("table.executions").innerText(), /success/);
  await page.screenshot({ path: join(SHOTS, "dashboard-message.png"), fullPage: true });

  // Back on the dashboard the dead letter is gone, and the page refreshes on its own (the
  // stamp is written only by a poll).
  await page.goto(base + "/admin");
  await page.locator("#dead-letters", { hasText: "No dead letters." }).waitFor({ timeout: WAIT });
  await page.locator("#refreshed", { hasText: /updated/ }).waitFor({ timeout: WAIT });
  console.log(`screenshots in ${SHOTS}`);

  // Sign out: back to the form.
  await page.getByRole("button", { name: "Sign out" }).click();
  await page.locator("#token").waitFor({ timeout: WAIT });
  assert.deepEqual(problems, [], "no script errors or CSP violations in the page");
  assert.ok(!web.log().includes(TOKEN), "the token never reaches the server log");
});

test("run a delayed message now, cancel another, purge a topic after its dry-run count", async (t) => {
  assert.ok(existsSync(CHROMIUM), `no browser at ${CHROMIUM}: apt-get install chromium (or set CHROMIUM)`);
  const web = startWeb();
  t.after(() => web.child.kill("SIGTERM"));
  const base = await web.url;
  const delayed = async () =>
    (await api(base, "/api/admin/messages", { topic: "probe", payload: {}, delay_seconds: 3600 })).messageId;
  const [soon, never] = [await delayed(), await delayed()];

  const { page, problems } = await openBrowser(t);
  await page.goto(base + "/admin");
  await page.fill("#token", TOKEN);
  await page.click("button[type=submit]");
  await page.locator("#live").waitFor({ timeout: WAIT });

  // Run now: the delayed probe runs at once and its page, refreshing itself, shows it.
  await page.goto(`${base}/admin/messages/${soon}`);
  await page.locator("#message-state", { hasText: "waiting" }).waitFor({ timeout: WAIT });
  await page.getByRole("button", { name: "Run now" }).click();
  await page.waitForURL(/\?flash=made-due$/, { timeout: WAIT });
  assert.match(await page.locator("#flash").innerText(), /Due now/);
  await page.locator("#message-state", { hasText: "succeeded" }).waitFor({ timeout: WAIT });
  assert.match(await page.locator("table.executions").innerText(), /success/);

  // Cancel (after the confirm): it says so, shows the message cancelled, and offers nothing more.
  await page.goto(`${base}/admin/messages/${never}`);
  await page.getByRole("button", { name: "Cancel" }).click();
  await page.waitForURL(/\?flash=cancelled$/, { timeout: WAIT });
  assert.match(await page.locator("#flash").innerText(), /Cancelled: it will not run/);
  await page.locator("#message-state", { hasText: "cancelled" }).waitFor({ timeout: WAIT });
  assert.equal(await page.locator("#message-actions").count(), 0, "no Run now or Cancel on a cancelled message");
  const m = await api(base, `/api/admin/messages/${never}`);
  assert.equal(m.state, "cancelled");

  // Purge: the topic's link opens a page with the dry run's count; its button cancels them.
  const purged = [await delayed(), await delayed()];
  await page.goto(base + "/admin");
  await page.locator('tr[data-topic="probe"] a.purge').click();
  await page.waitForURL(/\/admin\/queues\/probe\/purge$/, { timeout: WAIT });
  assert.match(await page.locator("#purge-count").innerText(), /^2 pending messages of this topic/);
  await page.getByRole("button", { name: "Cancel 2 pending messages" }).click();
  await page.waitForURL(/\/admin\?flash=purged&count=2$/, { timeout: WAIT });
  assert.match(await page.locator("#flash").innerText(), /Purged: 2 pending messages cancelled/);
  for (const id of purged) assert.equal((await api(base, `/api/admin/messages/${id}`)).state, "cancelled");
  assert.equal(await page.locator('tr[data-topic="probe"] a.purge').count(), 0, "nothing left to purge");

  assert.deepEqual(problems, [], "no script errors or CSP violations in the page");
});

test("runtime schedules: their zone and next fire times, Fire now, and the next page", async (t) => {
  assert.ok(existsSync(CHROMIUM), `no browser at ${CHROMIUM}: apt-get install chromium (or set CHROMIUM)`);
  const web = startWeb();
  t.after(() => web.child.kill("SIGTERM"));
  const base = await web.url;

  // One schedule in Tokyo, made through the admin API, and enough others for a second page
  // (the dashboard shows 50 a page).
  const digest = await api(
    base,
    "/api/admin/schedules/digest",
    { cron: "30 8 * * *", timezone: "Asia/Tokyo", topic: "probe", payload: { sleep_ms: 1 } },
    "PUT",
  );
  assert.equal(digest.next.length, 5);
  for (let i = 0; i < 55; i++) {
    const name = `tenant-${String(i).padStart(2, "0")}`;
    await api(base, `/api/admin/schedules/${name}`, { cron: "0 9 * * *", timezone: "Europe/Berlin", topic: "probe" }, "PUT");
  }
  const listed = await api(base, "/api/admin/schedules?limit=10");
  assert.equal(listed.total, 56);
  assert.equal(listed.next_after, "tenant-08");

  const { page, problems } = await openBrowser(t);
  await page.goto(base + "/admin");
  await page.fill("#token", TOKEN);
  await page.click("button[type=submit]");
  await page.locator("#live").waitFor({ timeout: WAIT });

  // The schedule with its zone and next fire times, in UTC and in Tokyo (08:30 JST is 23:30 UTC).
  const row = page.locator('#schedules tr[data-schedule="digest"]');
  await row.waitFor({ timeout: WAIT });
  assert.equal(await row.locator("td.timezone").innerText(), "Asia/Tokyo");
  const first = digest.next[0].replace("T", " ").replace("Z", " UTC");
  assert.match(await row.locator("td.next-utc").innerText(), new RegExp(first.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")));
  assert.match(await row.locator("td.next-utc").innerText(), /23:30:00 UTC/);
  assert.match(await row.locator("td.next-local").innerText(), /08:30:00 JST/);
  assert.equal(await row.locator("td.last-fire").innerText(), "never");
  assert.match(await page.locator("#schedule-counts").innerText(), /^56 ok · 0 late · 0 failing/);

  // Fire now (after the confirm): the message the fire published opens, runs, and the
  // schedule's row shows the fire with a link to it.
  await row.getByRole("button", { name: "Fire now" }).click();
  await page.waitForURL(/\/admin\/messages\/msg_[0-9a-f]+\?flash=schedule-fired$/, { timeout: WAIT });
  const messageId = new URL(page.url()).pathname.split("/").pop();
  assert.match(await page.locator("#flash").innerText(), /Fired: this is the message the schedule published/);
  await page.locator("#message-state", { hasText: "succeeded" }).waitFor({ timeout: WAIT });
  assert.match(await page.locator("pre.payload").innerText(), /"sleep_ms": 1/);
  const fired = await api(base, "/api/admin/schedules/digest");
  assert.equal(fired.last_message_id, messageId);
  await page.goto(base + "/admin");
  const lastFire = page.locator('#schedules tr[data-schedule="digest"] td.last-fire');
  await lastFire.locator("a.last-message").waitFor({ timeout: WAIT });
  assert.match(await lastFire.innerText(), /ago \(tick .* UTC\) message/);
  assert.equal(await lastFire.locator("a.last-message").getAttribute("href"), `/admin/messages/${messageId}`);

  // More than a page: the first 50 by name, and a link to the rest.
  assert.equal(await page.locator("#schedules tr[data-schedule]").count(), 50);
  assert.equal(await page.locator('#schedules tr[data-schedule="tenant-49"]').count(), 0, "digest comes first");
  await page.locator("#schedules-next").click();
  await page.waitForURL(/\/admin\?schedules_after=tenant-48#schedules$/, { timeout: WAIT });
  await page.locator('#schedules tr[data-schedule="tenant-54"]').waitFor({ timeout: WAIT });
  assert.equal(await page.locator("#schedules tr[data-schedule]").count(), 6);
  assert.equal(await page.locator("#schedules-next").count(), 0, "the last page");
  // The page's polling keeps the page it is on.
  await page.locator("#refreshed", { hasText: /updated/ }).waitFor({ timeout: WAIT });
  assert.equal(await page.locator('#schedules tr[data-schedule="tenant-54"]').count(), 1);
  await page.locator("#schedules-first").click();
  await page.locator('#schedules tr[data-schedule="digest"]').waitFor({ timeout: WAIT });

  assert.deepEqual(problems, [], "no script errors or CSP violations in the page");
});

test("pause a topic, see a new message held, resume it and watch it run", async (t) => {
  assert.ok(existsSync(CHROMIUM), `no browser at ${CHROMIUM}: apt-get install chromium (or set CHROMIUM)`);
  const web = startWeb();
  t.after(() => web.child.kill("SIGTERM"));
  const base = await web.url;

  const { page, problems } = await openBrowser(t);
  await page.goto(base + "/admin");
  await page.fill("#token", TOKEN);
  await page.click("button[type=submit]");
  await page.locator("#live").waitFor({ timeout: WAIT });

  // Pause: the overview says so and marks the topic; the admin API agrees.
  await page.locator('tr[data-topic="probe"] button.pause').click();
  await page.waitForURL(/\/admin\?flash=paused$/, { timeout: WAIT });
  assert.match(await page.locator("#flash").innerText(), /Topic paused: nothing new starts/);
  await page.locator('tr[data-topic="probe"] .badge.paused').waitFor({ timeout: WAIT });
  const queues = await api(base, "/api/admin/queues");
  assert.equal(queues.find((q) => q.topic === "probe")?.paused, true);

  // Publishing still works; the message waits and says why.
  const { messageId } = await api(base, "/api/admin/messages", { topic: "probe", payload: {} });
  await page.goto(`${base}/admin/messages/${messageId}`);
  await page.locator("#message-state", { hasText: "held: paused" }).waitFor({ timeout: WAIT });
  const held = await api(base, `/api/admin/messages/${messageId}`);
  assert.equal(held.held, "paused");
  assert.equal(held.attempts, 0, "waiting spends no attempt");

  // Resume: the topic drains and the message's page, refreshing itself, shows it ran.
  await page.goto(base + "/admin");
  await page.locator('tr[data-topic="probe"] button.resume').click();
  await page.waitForURL(/\/admin\?flash=resumed$/, { timeout: WAIT });
  assert.match(await page.locator("#flash").innerText(), /Topic resumed/);
  assert.equal(await page.locator('tr[data-topic="probe"] .badge.paused').count(), 0);
  await page.goto(`${base}/admin/messages/${messageId}`);
  await page.locator("#message-state", { hasText: "succeeded" }).waitFor({ timeout: WAIT });
  const ran = await api(base, `/api/admin/messages/${messageId}`);
  assert.equal(ran.attempts, 1, "one attempt: the pause spent none");

  assert.deepEqual(problems, [], "no script errors or CSP violations in the page");
});

test("search a message by its id or its idempotency key from the header", async (t) => {
  assert.ok(existsSync(CHROMIUM), `no browser at ${CHROMIUM}: apt-get install chromium (or set CHROMIUM)`);
  const web = startWeb();
  t.after(() => web.child.kill("SIGTERM"));
  const base = await web.url;
  const send = (topic, key) =>
    api(base, "/api/admin/messages", { topic, payload: {}, idempotency_key: key, delay_seconds: 600 });
  const first = await send("probe", "invoice-77");
  const second = await send("sync-patient", "invoice-77");
  const only = await send("probe", "invoice-78");

  const { page, problems } = await openBrowser(t);
  await page.goto(base + "/admin");
  await page.fill("#token", TOKEN);
  await page.click("button[type=submit]");
  await page.locator("#live").waitFor({ timeout: WAIT });

  // A key two messages hold: both listed, newest first, each linking to its page.
  await page.fill('header input[name="q"]', "invoice-77");
  await page.press('header input[name="q"]', "Enter");
  await page.waitForURL(/\/admin\/search\?q=invoice-77$/, { timeout: WAIT });
  const rows = page.locator("table.search-results tbody tr");
  assert.equal(await rows.count(), 2);
  assert.match(await rows.nth(0).innerText(), new RegExp(`${second.messageId}\\s+sync-patient`));
  assert.match(await rows.nth(1).innerText(), new RegExp(`${first.messageId}\\s+probe`));
  await page.screenshot({ path: join(SHOTS, "search.png"), fullPage: true });
  await rows.nth(1).locator("a").click();
  await page.waitForURL(new RegExp(`/admin/messages/${first.messageId}$`), { timeout: WAIT });

  // One match (by key, or by id) opens the message itself.
  await page.fill('header input[name="q"]', "invoice-78");
  await page.press('header input[name="q"]', "Enter");
  await page.waitForURL(new RegExp(`/admin/messages/${only.messageId}$`), { timeout: WAIT });
  await page.fill('header input[name="q"]', second.messageId);
  await page.press('header input[name="q"]', "Enter");
  await page.waitForURL(new RegExp(`/admin/messages/${second.messageId}$`), { timeout: WAIT });

  // Nothing found says what can be searched.
  await page.fill('header input[name="q"]', "no-such-key");
  await page.press('header input[name="q"]', "Enter");
  await page.locator(".flash", { hasText: "Nothing found for" }).waitFor({ timeout: WAIT });

  assert.deepEqual(problems, [], "no script errors or CSP violations in the page");
});

test("charts after jobs ran, a bulk retry of a dead-letter group, and older executions", async (t) => {
  assert.ok(existsSync(CHROMIUM), `no browser at ${CHROMIUM}: apt-get install chromium (or set CHROMIUM)`);
  // A rollup every second, so the charts have their points within the test.
  const web = startWeb({ VQS_STATS_ROLLUP_SECONDS: "1" });
  t.after(() => web.child.kill("SIGTERM"));
  const base = await web.url;
  const send = (payload) => api(base, "/api/admin/messages", { topic: "probe", payload });
  for (let i = 0; i < 55; i++) await send({ sleep_ms: 5 + (i % 8) * 10 });
  for (let i = 0; i < 4; i++) await send({ fatal: true });
  for (let i = 0; i < 2; i++) await send({ sleep_ms: "soon" }); // params of the wrong type
  await until("the dead letters", async () => (await api(base, "/api/admin/dead-letters")).length === 6);
  const groups = await api(base, "/api/admin/dead-letters/groups");
  assert.deepEqual(groups.map((g) => g.count), [4, 2]);
  // The rollup has counted every attempt (on PostgreSQL after its grace for late commits).
  await until("the rolled-up figures", async () => {
    const [series] = await api(base, "/api/admin/stats/timeseries?topic=probe&minutes=5");
    return series && series.points.reduce((n, p) => n + p.finished, 0) === 61;
  });

  const { page, problems } = await openBrowser(t);
  await page.goto(base + "/admin");
  await page.fill("#token", TOKEN);
  await page.click("button[type=submit]");
  await page.locator("#live").waitFor({ timeout: WAIT });

  // The charts: drawn with real points for the topic that ran.
  for (const kind of ["throughput", "latency"]) {
    const chart = page.locator(`figure[data-chart="${kind}"][data-topic="probe"]`);
    await chart.waitFor({ timeout: WAIT });
    assert.ok(Number(await chart.getAttribute("data-points")) > 0, `${kind} has points`);
    const line = await chart.locator("polyline").first().getAttribute("points");
    assert.ok(line && line.split(" ").length >= 1, `${kind} is drawn: ${line}`);
  }
  assert.match(await page.locator('figure[data-chart="throughput"][data-topic="probe"] .scale').innerText(), /max \d+/);

  // The dead letters by error, then a bulk retry of the larger group.
  const byError = page.locator("#dead-letter-groups tr[data-dead-letter-group]");
  await until("two groups", async () => (await byError.count()) === 2);
  await page.locator("#charts").scrollIntoViewIfNeeded();
  mkdirSync(SHOTS, { recursive: true });
  await page.screenshot({ path: join(SHOTS, "dashboard-charts.png"), fullPage: true });
  const fatal = byError.filter({ hasText: "fatal" });
  assert.match(await fatal.locator("td.num").innerText(), /^4$/);
  await fatal.getByRole("button", { name: "Retry all" }).click();
  await page.waitForURL(/\/admin\?flash=group-replayed&count=4#dead-letters$/, { timeout: WAIT });
  await page.locator("#flash", { hasText: "4 dead letters replayed." }).waitFor({ timeout: WAIT });
  // The replays ran again (and, being fatal, died again): 4 + 2 dead letters, 4 more attempts.
  await until("the replays to run", async () => {
    const runs = await api(base, "/api/admin/executions?topic=probe&limit=1000");
    return runs.length === 65 && (await api(base, "/api/admin/dead-letters")).length === 6;
  });

  // The history a page at a time: 65 attempts, 50 on the first page, the rest after "Older".
  await page.goto(base + "/admin?topic=probe");
  const rows = page.locator("#executions tr[data-execution]");
  await until("a full page", async () => (await rows.count()) === 50);
  await page.locator("#older").click();
  await page.waitForURL(/\/admin\?before=\d+&topic=probe#executions$/, { timeout: WAIT });
  await until("the older page", async () => (await rows.count()) === 15);
  assert.equal(await page.locator("#older").count(), 0, "the oldest page has no Older link");
  await page.getByRole("link", { name: "← Newest" }).waitFor({ timeout: WAIT });

  assert.deepEqual(problems, [], "no script errors or CSP violations in the page");
});
