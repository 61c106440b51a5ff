// Checks the Build Output API directory `vercel build` wrote, then runs its function binaries
// the way Vercel's runtime does and drives them. Usage (run.sh calls it):
//
//   node driver.mjs <project dir with .vercel/output> <web binary>
//
// Needs PostgreSQL (VQS_TEST_POSTGRES_URL, default postgres://postgres@127.0.0.1:5432) and
// `psql`. No npm packages. Fails — never skips — when anything is missing.
//
// The platform, as far as a function binary sees it (vercel_runtime 2): it starts the
// executable with VERCEL_DEV_PORT (the HTTP port to listen on) and VERCEL_IPC_PATH (a Unix
// socket); the binary connects, sends `{"type":"server-started",…}` once it listens, then an
// `{"type":"end",…}` per request carrying the request's x-vercel-internal-invocation-id and
// x-vercel-internal-request-id; messages are JSON ended by a NUL byte.
import assert from "node:assert/strict";
import { spawn, execFileSync } from "node:child_process";
import { once } from "node:events";
import { existsSync, mkdtempSync, readdirSync, readFileSync, statSync } from "node:fs";
import { createServer as createHttpServer } from "node:http";
import { createServer as createNetServer } from "node:net";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { randomUUID } from "node:crypto";

const [project, webBin] = process.argv.slice(2).map((p) => p && resolve(p));
if (!project || !webBin) throw new Error("usage: node driver.mjs <project dir> <web binary>");
const output = join(project, ".vercel/output");
const PG = (process.env.VQS_TEST_POSTGRES_URL ?? "postgres://postgres@127.0.0.1:5432").replace(/\/$/, "");
const QUEUE_SECRET = "e2e-oidc-token"; // the local /_vqs takes it as the OIDC bearer
const ADMIN_TOKEN = "e2e-admin-token";
const CRON_SECRET = "e2e-cron-secret";
const children = [];
const step = (s) => console.log(`vercel-build: ${s}`);
let db = null;
// Whatever happens, no function binary outlives the driver, nor its database.
process.on("exit", () => {
  children.forEach((c) => c.exitCode === null && c.signalCode === null && c.kill("SIGKILL"));
  if (db) execFileSync("psql", [`${PG}/postgres`, "-XqAtc", `DROP DATABASE IF EXISTS ${db} WITH (FORCE)`]);
});

function files(dir) {
  if (!existsSync(dir)) return [];
  return readdirSync(dir, { recursive: true })
    .map((f) => String(f))
    .filter((f) => statSync(join(dir, f)).isFile());
}

function psql(db, sql) {
  return execFileSync("psql", [`${PG}/${db}`, "-XtAqc", sql], { encoding: "utf8" }).trim();
}

async function until(what, probe, ms = 60000) {
  const deadline = Date.now() + ms;
  let last;
  while (Date.now() < deadline) {
    last = await probe();
    if (last) return last;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`timed out after ${ms} ms waiting for ${what} (last: ${JSON.stringify(last)})`);
}

async function freePort() {
  const s = createHttpServer().listen(0, "127.0.0.1");
  await once(s, "listening");
  const { port } = s.address();
  s.close();
  await once(s, "close");
  return port;
}

// ---- 1. The build output ----------------------------------------------------------------

const source = (p) => join(project, p);
const vercelJson = JSON.parse(readFileSync(source("vercel.json"), "utf8"));
const config = JSON.parse(readFileSync(join(output, "config.json"), "utf8"));
assert.equal(config.version, 3, "config.json is Build Output API v3");

// One function per api/**/*.rs, each a Rust executable; queue functions carry their trigger.
const handlers = files(source("api")).filter((f) => f.endsWith(".rs")).map((f) => `api/${f}`);
assert.ok(handlers.length >= 2, `api/**/*.rs: ${handlers}`);
const funcDirs = files(join(output, "functions"))
  .filter((f) => f.endsWith(".vc-config.json"))
  .map((f) => f.replace(/\.func\/\.vc-config\.json$/, ""));
assert.deepEqual(funcDirs.sort(), handlers.map((h) => h.replace(/\.rs$/, "")).sort(), "one .func per api/**/*.rs");
const functions = {};
for (const h of handlers) {
  const dir = join(output, "functions", h.replace(/\.rs$/, ".func"));
  const vc = JSON.parse(readFileSync(join(dir, ".vc-config.json"), "utf8"));
  assert.equal(vc.runtime, "executable", `${h}: runtime`);
  assert.equal(vc.handler, "executable", `${h}: handler`);
  assert.equal(vc.runtimeLanguage, "rust", `${h}: runtimeLanguage`);
  // `vercel build` refers to files outside the output by `filePathMap` (relative to the
  // project); `vercel deploy --prebuilt` uploads them into the bundle.
  const exe = existsSync(join(dir, vc.handler)) ? join(dir, vc.handler) : resolve(project, vc.filePathMap?.[vc.handler] ?? "");
  assert.ok(existsSync(exe) && statSync(exe).isFile(), `${h}: the bundle's executable ${exe}`);
  assert.deepEqual(Object.keys(vc.filePathMap ?? {}), [vc.handler], `${h}: the bundle holds the executable only`);
  const expected = vercelJson.functions?.[h]?.experimentalTriggers;
  if (expected) {
    assert.equal(vc.experimentalTriggers?.length, 1, `${h}: one trigger`);
    assert.equal(vc.experimentalTriggers[0].type, "queue/v2beta", `${h}: trigger type`);
    assert.equal(vc.experimentalTriggers[0].topic, expected[0].topic, `${h}: trigger topic`);
  } else {
    assert.ok(!vc.experimentalTriggers?.length, `${h}: no trigger`);
  }
  functions[h] = { dir, exe, trigger: expected?.[0] };
}
step(`${handlers.length} functions, each a Rust executable with its trigger`);

// The rewrite sends every path to the app function; the crons are vercel.json's.
const rewrite = config.routes.find((r) => r.dest === "/api/main" && /\(\.\*\)/.test(r.src));
assert.ok(rewrite, `a route rewriting /(.*) to /api/main: ${JSON.stringify(config.routes)}`);
assert.deepEqual(config.crons, vercelJson.crons, "config.json crons = vercel.json crons");
assert.ok(
  vercelJson.crons.some((c) => c.path === "/api/cron/maintenance"),
  "vercel.json schedules the maintenance cron",
);
step(`rewrite /(.*) → /api/main and ${config.crons.length} crons in config.json`);

// Nothing but public/ is published: no source, config or migration is a static file.
const published = files(join(output, "static"));
const fromPublic = files(source("public"));
for (const f of published) {
  assert.ok(fromPublic.includes(f), `static file ${f} is not from public/: it would be served over HTTP`);
}
for (const f of ["Cargo.toml", "Cargo.lock", "vercel.json", "build.sh", "README.md"]) {
  assert.ok(!published.includes(f), `${f} is published`);
}
assert.ok(!published.some((f) => /\.(rs|sql|toml|lock|sh)$/.test(f)), `a source file is published: ${published}`);
step(`static files: ${JSON.stringify(published)} (public/ only)`);

// ---- 2. The functions, run as the platform runs them --------------------------------------

db = `vqs_test_vercel_${randomUUID().replaceAll("-", "")}`;
execFileSync("psql", [`${PG}/postgres`, "-XqAtc", `CREATE DATABASE ${db}`]);
const ssl = psql(db, "SHOW ssl");
assert.equal(ssl, "on", "the test server must accept TLS (ssl = on) to prove sslmode=require");
const databaseUrl = `${PG}/${db}?sslmode=require&application_name=vqs-vercel-fn`;

const work = mkdtempSync(join(tmpdir(), "vqs-vercel-build-"));

// The queue service stand-in: a normal `web serve` on SQLite whose /_vqs plays Vercel
// Queues; its dispatcher pushes each topic to the consumer function's port.
const fnPorts = {};
for (const h of handlers) fnPorts[h] = await freePort();
const remote = {};
for (const [h, f] of Object.entries(functions)) {
  if (f.trigger) remote[h] = `http://127.0.0.1:${fnPorts[h]}/${h.replace(/\.rs$/, "")}`;
}
const webPort = await freePort();
const web = spawn(webBin, ["serve"], {
  cwd: work,
  env: {
    PATH: process.env.PATH,
    DATABASE_URL: `sqlite://${join(work, "queue-service.db")}`,
    PORT: String(webPort),
    VQS_VERCEL_JSON: source("vercel.json"),
    VQS_QUEUE_SECRET: QUEUE_SECRET,
    VQS_ADMIN_TOKEN: ADMIN_TOKEN,
    VQS_FUNCTION_URLS: JSON.stringify(remote),
    RUST_LOG: process.env.RUST_LOG ?? "error", // it has no CRON_SECRET: its scheduler is off, as it says
  },
  stdio: ["ignore", "pipe", "inherit"],
});
children.push(web);
let webOut = "";
web.stdout.on("data", (d) => (webOut += d));
await until("the queue service stand-in to listen", () => webOut.includes("vqs listening"));

// The IPC side of the platform: one Unix socket per function.
async function startFunction(h) {
  const sock = join(work, `${h.replaceAll("/", "_")}.sock`);
  const messages = [];
  const server = createNetServer((c) => {
    let buf = Buffer.alloc(0);
    c.on("data", (d) => {
      buf = Buffer.concat([buf, d]);
      let i;
      while ((i = buf.indexOf(0)) >= 0) {
        messages.push(JSON.parse(buf.subarray(0, i).toString("utf8")));
        buf = buf.subarray(i + 1);
      }
    });
  });
  server.listen(sock);
  await once(server, "listening");
  const port = fnPorts[h];
  const child = spawn(functions[h].exe, [], {
    cwd: work, // no vercel.json here: the function must carry its own
    env: {
      PATH: process.env.PATH,
      VERCEL: "1",
      VERCEL_DEV_PORT: String(port),
      VERCEL_IPC_PATH: sock,
      VERCEL_REGION: "iad1",
      VERCEL_DEPLOYMENT_ID: "dpl_e2e",
      VERCEL_OIDC_TOKEN: QUEUE_SECRET,
      VQS_VERCEL_QUEUE_URL: `http://127.0.0.1:${webPort}/_vqs`,
      DATABASE_URL: databaseUrl,
      CRON_SECRET,
      VQS_ADMIN_TOKEN: ADMIN_TOKEN,
      RUST_LOG: process.env.RUST_LOG ?? "warn",
    },
    stdio: ["ignore", "inherit", "inherit"],
  });
  children.push(child);
  let exited = null;
  child.on("exit", (code) => (exited = code));
  const started = await until(`${h} to report server-started`, () => {
    if (exited !== null) throw new Error(`${h} exited with ${exited} before it started`);
    return messages.find((m) => m.type === "server-started");
  });
  assert.equal(started.payload.httpPort, port, `${h}: server-started names its port`);
  let requestId = 0;
  const call = async (path, init = {}) => {
    const invocation = randomUUID();
    const rid = ++requestId;
    const res = await fetch(`http://127.0.0.1:${port}${path}`, {
      ...init,
      headers: {
        ...init.headers,
        "x-vercel-internal-invocation-id": invocation,
        "x-vercel-internal-request-id": String(rid),
      },
    });
    const text = await res.text();
    await until(`${h}: the end message of ${path}`, () =>
      messages.find((m) => m.type === "end" && m.payload?.context?.invocationId === invocation),
    );
    return { status: res.status, text, json: () => JSON.parse(text) };
  };
  return { call, messages };
}

const fns = {};
for (const h of handlers) fns[h] = await startFunction(h);
step(`${handlers.length} function binaries started (server-started over IPC)`);

// TLS: the functions' connections to PostgreSQL are encrypted.
const tlsConnections = psql(
  db,
  "SELECT count(*) FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid) WHERE a.application_name = 'vqs-vercel-fn' AND s.ssl",
);
assert.ok(Number(tlsConnections) > 0, `TLS connections from the functions: ${tlsConnections}`);
step(`sslmode=require honoured: ${tlsConnections} TLS connections from the functions`);

const main = fns["api/main.rs"];
assert.ok(main, "api/main.rs is a function");

// /api/health: without credentials the status and its reasons only; with the admin token
// also the crons of the compiled-in vercel.json (no vercel.json in its cwd).
const publicHealth = await main.call("/api/health");
assert.equal(publicHealth.status, 200, publicHealth.text);
assert.deepEqual(Object.keys(publicHealth.json()).sort(), ["reasons", "status"], publicHealth.text);
const health = await main.call("/api/health", { headers: { authorization: `Bearer ${ADMIN_TOKEN}` } });
assert.equal(health.status, 200, health.text);
const healthCrons = health.json().crons.map((c) => c.path).sort();
assert.deepEqual(healthCrons, vercelJson.crons.map((c) => c.path).sort(), "health lists vercel.json's crons");
step("GET /api/health → 200 with the compiled-in vercel.json's crons");

// A job published through the app function reaches its consumer function through the queue
// service, runs tracked in PostgreSQL, and is acknowledged on the queue service.
const probe = Object.keys(functions).find((h) => functions[h].trigger?.topic === "probe");
assert.ok(probe, "a consumer function for topic probe");
const published_ = await main.call("/api/admin/messages", {
  method: "POST",
  headers: { authorization: `Bearer ${ADMIN_TOKEN}`, "content-type": "application/json" },
  body: JSON.stringify({ topic: "probe", payload: {} }),
});
assert.ok([200, 201, 202].includes(published_.status), published_.text);
const messageId = published_.json().message_id ?? published_.json().messageId ?? published_.json().id;
assert.ok(messageId, `a message id: ${published_.text}`);
await until("the probe job to succeed in the app's database", () =>
  psql(db, `SELECT status FROM job_executions WHERE topic = 'probe' AND message_id = '${messageId}'`) === "success",
);
const settled = await until("the queue service to see the message acknowledged", async () => {
  const r = await fetch(`http://127.0.0.1:${webPort}/api/admin/messages/${messageId}`, {
    headers: { authorization: `Bearer ${ADMIN_TOKEN}` },
  });
  const m = r.ok ? await r.json() : null;
  return m?.state === "acked" ? m.state : null;
});
// (The stand-in's push carries no x-vercel-internal-* headers — the platform's proxy adds
// them — so the consumer function sends no `end` message for it.)
step(`queue push → ${probe} → job succeeded (PostgreSQL) and acknowledged (queue service: ${settled})`);

// A cron call as Vercel Cron makes it: runs once per tick, tracked in cron_runs.
const cron = vercelJson.crons.find((c) => c.path === "/api/cron/sync-patients") ?? vercelJson.crons[0];
const cronHeaders = {
  authorization: `Bearer ${CRON_SECRET}`,
  "user-agent": "vercel-cron/1.0",
  "x-vercel-cron-schedule": cron.schedule,
};
const denied = await main.call(cron.path, { headers: { ...cronHeaders, authorization: "Bearer wrong" } });
assert.equal(denied.status, 401, denied.text);
const first = await main.call(cron.path, { headers: cronHeaders });
assert.equal(first.status, 200, first.text);
assert.equal(
  psql(db, `SELECT outcome || ' ' || status_code FROM cron_runs WHERE path = '${cron.path}'`),
  "success 200",
  "the run is recorded",
);
const again = await main.call(cron.path, { headers: cronHeaders });
assert.equal(again.status, 200, again.text);
assert.ok(again.json().skipped, `a second call of the same tick is skipped: ${again.text}`);
assert.equal(psql(db, `SELECT count(*) FROM cron_runs WHERE path = '${cron.path}'`), "1");
step(`cron ${cron.path}: 401 without the secret, run and recorded once, the repeat skipped`);

// The maintenance cron closes an attempt a killed function left running.
psql(
  db,
  `INSERT INTO job_executions (topic, message_id, consumer_group, attempt, status, started_at)
   VALUES ('probe', 'msg_killed', 'api_Squeue_Sprobe_Drs', 1, 'running', now() - interval '2 hours')`,
);
const maintenance = await main.call("/api/cron/maintenance", {
  headers: { ...cronHeaders, "x-vercel-cron-schedule": "*/5 * * * *" },
});
assert.equal(maintenance.status, 200, maintenance.text);
assert.equal(maintenance.json().outlived_attempts_closed, 1, maintenance.text);
assert.equal(psql(db, "SELECT status FROM job_executions WHERE message_id = 'msg_killed'"), "failed");
step("GET /api/cron/maintenance closed the attempt a killed function left running");

// Every request ended with an `end` message naming its invocation.
for (const h of handlers) {
  for (const m of fns[h].messages.filter((m) => m.type === "end")) {
    assert.ok(m.payload.context.invocationId && m.payload.context.requestId, JSON.stringify(m));
  }
}

step("ok");
process.exit(0); // the exit handler stops the processes and drops the database
