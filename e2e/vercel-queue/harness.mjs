// Starts the real `web` binary (built by cargo) on a fresh SQLite file with a test
// vercel.json, and a Node consumer function served by `@vercel/queue`'s handleCallback.
import { spawn } from "node:child_process";
import { mkdtempSync, writeFileSync, existsSync } from "node:fs";
import { createServer } from "node:http";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { once } from "node:events";
import { QueueClient } from "@vercel/queue";

export const QUEUE_SECRET = "e2e-queue-secret";
export const ADMIN_TOKEN = "e2e-admin-token";
const REPO = resolve(import.meta.dirname, "../..");

/** The web binary: $VQS_WEB_BIN, else target/debug/web (`cargo build -p web`). */
export function webBinary() {
  const bin = process.env.VQS_WEB_BIN ?? join(REPO, "target/debug/web");
  if (!existsSync(bin)) {
    throw new Error(`no web binary at ${bin}: run \`cargo build -p web\` first (or set VQS_WEB_BIN)`);
  }
  return bin;
}

export async function freePort() {
  const s = createServer();
  s.listen(0, "127.0.0.1");
  await once(s, "listening");
  const { port } = s.address();
  s.close();
  await once(s, "close");
  return port;
}

/** Wait until `probe()` returns a truthy value; fail after `ms` with `what`. */
export async function until(what, probe, ms = 30000) {
  const deadline = Date.now() + ms;
  let last;
  while (Date.now() < deadline) {
    last = await probe();
    if (last) return last;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`timed out after ${ms} ms waiting for ${what} (last: ${JSON.stringify(last)})`);
}

/**
 * A web process. `functions`: the vercel.json functions; `remote`: function key → URL of
 * consumer functions served elsewhere (VQS_FUNCTION_URLS).
 */
export async function startWeb({ functions, remote = {}, leaseSeconds = 60, crons = [], port }) {
  const dir = mkdtempSync(join(tmpdir(), "vqs-e2e-"));
  const vercelJson = join(dir, "vercel.json");
  writeFileSync(vercelJson, JSON.stringify({ crons, functions }, null, 2));
  port ??= await freePort();
  const child = spawn(webBinary(), ["serve"], {
    env: {
      PATH: process.env.PATH,
      DATABASE_URL: `sqlite://${join(dir, "vqs.db")}`,
      PORT: String(port),
      VQS_VERCEL_JSON: vercelJson,
      VQS_QUEUE_SECRET: QUEUE_SECRET,
      VQS_ADMIN_TOKEN: ADMIN_TOKEN,
      VQS_LEASE_SECONDS: String(leaseSeconds),
      VQS_FUNCTION_URLS: JSON.stringify(remote),
      RUST_LOG: process.env.RUST_LOG ?? "warn",
    },
    stdio: ["ignore", "pipe", "inherit"],
  });
  let out = "";
  child.stdout.setEncoding("utf8");
  child.stdout.on("data", (d) => (out += d));
  const exited = once(child, "exit");
  await Promise.race([
    until("the web app to listen", () => out.includes("vqs listening"), 30000),
    exited.then(([code]) => {
      throw new Error(`web exited with ${code} before listening`);
    }),
  ]);
  const base = `http://127.0.0.1:${port}`;
  const admin = async (path, init = {}) => {
    const r = await fetch(base + path, {
      ...init,
      headers: { authorization: `Bearer ${ADMIN_TOKEN}`, "content-type": "application/json", ...(init.headers ?? {}) },
    });
    const text = await r.text();
    return { status: r.status, body: text ? JSON.parse(text) : null };
  };
  return {
    base,
    queueBaseUrl: `${base}/_vqs`,
    admin,
    /** Executions of a message, oldest first. */
    async executions(messageId, topic) {
      const { body } = await admin(`/api/admin/executions?limit=1000${topic ? `&topic=${topic}` : ""}`);
      return body.filter((e) => !messageId || e.message_id === messageId).reverse();
    },
    async message(id) {
      return (await admin(`/api/admin/messages/${id}`)).body;
    },
    async stop() {
      child.kill("SIGTERM");
      await exited;
    },
  };
}

/** The producer every test uses: the official client pointed at the local service. */
export function queueClient(web, extra = {}) {
  return new QueueClient({
    region: "dev1",
    resolveBaseUrl: () => new URL(web.queueBaseUrl),
    token: QUEUE_SECRET,
    deploymentId: null,
    ...extra,
  });
}

/** A Node consumer function: `handleCallback(handler, options)` behind a plain HTTP server. */
export async function startNodeFunction(client, handler, options) {
  const route = client.handleCallback(handler, options);
  const requests = [];
  const server = createServer(async (req, res) => {
    const chunks = [];
    for await (const c of req) chunks.push(c);
    const headers = new Headers();
    for (const [k, v] of Object.entries(req.headers)) headers.set(k, Array.isArray(v) ? v[0] : v);
    requests.push({ path: req.url, headers: Object.fromEntries(headers) });
    const request = new Request(`http://127.0.0.1${req.url}`, {
      method: req.method,
      headers,
      body: req.method === "POST" ? Buffer.concat(chunks) : undefined,
    });
    const response = await route(request);
    res.writeHead(response.status, Object.fromEntries(response.headers));
    res.end(Buffer.from(await response.arrayBuffer()));
  });
  server.listen(0, "127.0.0.1");
  await once(server, "listening");
  return {
    url: (path) => `http://127.0.0.1:${server.address().port}${path}`,
    requests,
    async stop() {
      server.close();
      await once(server, "close");
    },
  };
}
