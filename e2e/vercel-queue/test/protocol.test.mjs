// The official @vercel/queue 0.6.0 client against /_vqs for the parts of the protocol beyond
// send/receive/ack: batch publish, NDJSON receive, peek, max concurrency, and idempotency
// keys that hold after the original was acknowledged (docs/vercel-protocol.md, "Protocol").
import { test } from "node:test";
import assert from "node:assert/strict";
import { PollingQueueClient, TooManyRequestsError } from "@vercel/queue";
import { QUEUE_SECRET, queueClient, startWeb } from "../harness.mjs";

const PROBE = { "api/queue/probe.rs": { experimentalTriggers: [{ type: "queue/v2beta", topic: "probe" }] } };

function poller(web) {
  return new PollingQueueClient({
    region: "dev1",
    resolveBaseUrl: () => new URL(web.queueBaseUrl),
    token: QUEUE_SECRET,
    deploymentId: null,
  });
}

/** A raw v3 receive, for the headers the SDK's receive does not set. */
async function rawReceive(web, topic, group, headers) {
  return fetch(`${web.queueBaseUrl}/api/v3/topic/${topic}/consumer/${group}`, {
    method: "POST",
    headers: { authorization: `Bearer ${QUEUE_SECRET}`, ...headers },
  });
}

test("experimental_sendBatch publishes each message and answers per message", async (t) => {
  const web = await startWeb({ functions: PROBE });
  t.after(() => web.stop());
  const client = queueClient(web);
  const results = await client.experimental_sendBatch("orders", [
    { payload: { n: 1 } },
    { payload: { n: 2 }, idempotencyKey: "batch-2", headers: { "x-tenant": "acme" } },
    { payload: { n: 3 }, idempotencyKey: "batch-2" },
    { payload: { n: 4 }, retentionSeconds: 10 },
  ]);
  assert.equal(results.length, 4);
  assert.deepEqual(results.map((r) => r.status), ["sent", "sent", "sent", "failed"]);
  assert.notEqual(results[2].messageId, results[1].messageId, "a duplicate gets an id of its own");
  assert.equal(results[3].statusCode, 400);
  assert.equal(results[3].retryable, false);
  const seen = [];
  const p = poller(web);
  while ((await p.receive("orders", "billing", async (payload) => seen.push(payload.n), { limit: 10 })).ok);
  assert.deepEqual(seen.sort(), [1, 2], "the duplicate and the refused message queued nothing");
});

test("a receive in NDJSON carries each message with its base64 body", async (t) => {
  const web = await startWeb({ functions: PROBE });
  t.after(() => web.stop());
  const { messageId } = await queueClient(web).send("orders", { order: 9 });
  const r = await rawReceive(web, "orders", "ndjson", { accept: "application/x-ndjson", "vqs-max-messages": "10" });
  assert.equal(r.status, 200);
  assert.match(r.headers.get("content-type"), /^application\/x-ndjson/);
  const lines = (await r.text()).trim().split("\n").map((l) => JSON.parse(l));
  assert.equal(lines.length, 1);
  assert.equal(lines[0].messageId, messageId);
  assert.equal(lines[0].deliveryCount, 1);
  assert.equal(lines[0].contentType, "application/json");
  assert.deepEqual(JSON.parse(Buffer.from(lines[0].body, "base64").toString()), { order: 9 });
  assert.ok(lines[0].receiptHandle && lines[0].timestamp && lines[0].expiresAt);
  const empty = await rawReceive(web, "orders", "ndjson", { accept: "application/x-ndjson" });
  assert.equal(empty.status, 204, "leased: nothing more");
});

test("visibility 0 peeks: the message stays for the real receive", async (t) => {
  const web = await startWeb({ functions: PROBE });
  t.after(() => web.stop());
  const { messageId } = await queueClient(web).send("orders", { order: 1 });
  for (let i = 0; i < 2; i++) {
    const r = await rawReceive(web, "orders", "peek", {
      accept: "application/x-ndjson",
      "vqs-visibility-timeout-seconds": "0",
    });
    assert.equal(r.status, 200);
    const [line] = (await r.text()).trim().split("\n").map((l) => JSON.parse(l));
    assert.equal(line.messageId, messageId);
  }
  const seen = [];
  const result = await poller(web).receive("orders", "peek", async (payload, meta) => seen.push(meta.deliveryCount));
  assert.deepEqual(result, { ok: true });
  assert.deepEqual(seen, [1], "the first real delivery");
});

test("Vqs-Max-Concurrency: a receive over the group's limit is 429, which the SDK reads", async (t) => {
  const web = await startWeb({ functions: PROBE });
  t.after(() => web.stop());
  const client = queueClient(web);
  await client.send("orders", { n: 1 });
  await client.send("orders", { n: 2 });
  const headers = { accept: "multipart/mixed", "vqs-max-concurrency": "1" };
  assert.equal((await rawReceive(web, "orders", "limited", headers)).status, 200);
  const over = await rawReceive(web, "orders", "limited", headers);
  assert.equal(over.status, 429);
  assert.equal(over.headers.get("retry-after"), "1");
  // The SDK's own client, with the header as a client header: TooManyRequestsError (its
  // receive does not read Retry-After).
  const limited = new PollingQueueClient({
    region: "dev1",
    resolveBaseUrl: () => new URL(web.queueBaseUrl),
    token: QUEUE_SECRET,
    deploymentId: null,
    headers: { "Vqs-Max-Concurrency": "1" },
  });
  await assert.rejects(
    limited.receive("orders", "limited", async () => assert.fail("over the limit")),
    (e) => e instanceof TooManyRequestsError,
  );
});

test("an idempotency key holds after the original was acknowledged", async (t) => {
  const web = await startWeb({ functions: PROBE });
  t.after(() => web.stop());
  const client = queueClient(web);
  const first = await client.send("orders", { n: 1 }, { idempotencyKey: "order-7" });
  const p = poller(web);
  assert.deepEqual(await p.receive("orders", "billing", async () => {}), { ok: true });
  assert.equal((await web.message(first.messageId)).deliveries[0].state, "acked");
  const again = await client.send("orders", { n: 2 }, { idempotencyKey: "order-7" });
  assert.ok(again.messageId && again.messageId !== first.messageId, "201 with a fresh id, as Vercel");
  assert.deepEqual(await p.receive("orders", "billing", async () => assert.fail("dropped")), {
    ok: false,
    reason: "empty",
  });
  // Receive by the duplicate's id: 409 naming the original, which the SDK reports as not available.
  const byId = await p.receive("orders", "billing", async () => assert.fail("dropped"), { messageId: again.messageId });
  assert.deepEqual(byId, { ok: false, reason: "not_available", messageId: again.messageId });
});
