// The official @vercel/queue 0.6.0 client against the local queue service (/_vqs) of the
// real web binary: send (idempotency key, delay), PollingQueueClient receive + ack, and a
// handleCallback consumer function the local dispatcher pushes to.
import { test } from "node:test";
import assert from "node:assert/strict";
import { PollingQueueClient } from "@vercel/queue";
import { sanitizeConsumerName } from "@vercel/build-utils";
import { QUEUE_SECRET, queueClient, startNodeFunction, startWeb, until } from "../harness.mjs";
import { freePort } from "../harness.mjs";

const PROBE = { "api/queue/probe.rs": { experimentalTriggers: [{ type: "queue/v2beta", topic: "probe" }] } };

test("QueueClient.send publishes and the Rust job runs", async (t) => {
  const web = await startWeb({ functions: PROBE });
  t.after(() => web.stop());
  const { messageId } = await queueClient(web).send("probe", { sleep_ms: 1 });
  assert.match(messageId, /^msg_/);
  const runs = await until("the probe job to succeed", async () => {
    const e = await web.executions(messageId);
    return e.some((x) => x.status === "success") && e;
  });
  assert.deepEqual(runs.map((e) => [e.attempt, e.status]), [[1, "success"]]);
});

test("a send with an idempotency key already pending is dropped: the job runs once", async (t) => {
  const web = await startWeb({ functions: PROBE });
  t.after(() => web.stop());
  const client = queueClient(web);
  // The first message is delayed, so it is still pending when the duplicate arrives.
  const first = await client.send("probe", { sleep_ms: 1 }, { idempotencyKey: "order-42", delaySeconds: 1 });
  const second = await client.send("probe", { sleep_ms: 1 }, { idempotencyKey: "order-42", delaySeconds: 1 });
  assert.ok(first.messageId && second.messageId, "both sends succeed, as on Vercel");
  // Wait for the delivery to be acknowledged, not just for its run to start: a message in
  // flight still counts as "running" in the queue's figures below.
  await until("the first message to run", async () => (await web.message(first.messageId)).deliveries[0].state === "acked");
  const { body: queues } = await web.admin("/api/admin/queues");
  const probe = queues.find((q) => q.topic === "probe");
  assert.equal(probe.waiting + probe.delayed + probe.running, 0, "nothing else queued");
  assert.equal(probe.succeeded, 1, "one message delivered");
  assert.equal((await web.executions(null, "probe")).length, 1, "one execution in all");
});

test("a send with delaySeconds is not delivered before its delay", async (t) => {
  const web = await startWeb({ functions: PROBE });
  t.after(() => web.stop());
  const { messageId } = await queueClient(web).send("probe", {}, { delaySeconds: 2 });
  const message = await web.message(messageId);
  const due = Date.parse(message.deliveries[0].visible_at);
  assert.ok(due - Date.parse(message.created_at) >= 2000, `due ${message.deliveries[0].visible_at}`);
  const [run] = await until("the delayed job to run", async () => {
    const e = await web.executions(messageId);
    return e.length > 0 && e[0].status === "success" && e;
  });
  assert.ok(Date.parse(run.started_at) >= due, `started ${run.started_at}, due ${message.deliveries[0].visible_at}`);
});

test("PollingQueueClient receives on a consumer group and acknowledges", async (t) => {
  const web = await startWeb({ functions: PROBE });
  t.after(() => web.stop());
  const { messageId } = await queueClient(web).send("orders", { order: 7 });
  const poller = new PollingQueueClient({
    region: "dev1",
    resolveBaseUrl: () => new URL(web.queueBaseUrl),
    token: QUEUE_SECRET,
    deploymentId: null,
  });
  const seen = [];
  const result = await poller.receive("orders", "billing", async (payload, meta) => {
    seen.push({ payload, meta });
  });
  assert.deepEqual(result, { ok: true });
  assert.equal(seen.length, 1);
  assert.deepEqual(seen[0].payload, { order: 7 });
  assert.equal(seen[0].meta.messageId, messageId);
  assert.equal(seen[0].meta.deliveryCount, 1);
  assert.equal(seen[0].meta.consumerGroup, "billing");
  const message = await web.message(messageId);
  assert.equal(message.deliveries.find((d) => d.consumer_group === "billing").state, "acked");
  assert.deepEqual(await poller.receive("orders", "billing", async () => assert.fail("empty")), {
    ok: false,
    reason: "empty",
  });
  // Receive by id of the acknowledged message: the server says 410, the SDK "already_processed".
  const again = await poller.receive("orders", "billing", async () => assert.fail("acked"), { messageId });
  assert.deepEqual(again, { ok: false, reason: "already_processed", messageId });
});

test("a Node handleCallback consumer gets our pushes, renews its lease, retries and acknowledges", async (t) => {
  const key = "api/queue/orders.js";
  let web;
  const handled = [];
  const port = await freePort();
  const client = new (await import("@vercel/queue")).QueueClient({
    region: "dev1",
    resolveBaseUrl: () => new URL(`http://127.0.0.1:${port}/_vqs`),
    token: QUEUE_SECRET,
    deploymentId: null,
  });
  const fn = await startNodeFunction(
    client,
    async (payload, meta) => {
      handled.push({ payload, meta });
      if (payload.fail && meta.deliveryCount === 1) throw new Error("first attempt fails");
      if (payload.hold) {
        // Hold the message until the SDK has renewed its lease past the dispatcher's.
        const first = Date.parse((await web.message(meta.messageId)).deliveries[0].visible_at);
        await until(
          "the SDK to renew the lease",
          async () => Date.parse((await web.message(meta.messageId)).deliveries[0].visible_at) > first + 5000,
          20000,
        );
      }
    },
    { visibilityTimeoutSeconds: 30, retry: () => ({ afterSeconds: 1 }) },
  );
  t.after(() => fn.stop());
  web = await startWeb({
    functions: { [key]: { experimentalTriggers: [{ type: "queue/v2beta", topic: "orders" }] } },
    remote: { [key]: fn.url("/api/queue/orders") },
    // Short enough that the SDK's first renewal (10 s) comes before the message is handed
    // out again; the SDK then extends it to its own 30 s.
    leaseSeconds: 12,
    port,
  });
  t.after(() => web.stop());
  const group = sanitizeConsumerName(key);
  const producer = queueClient(web);

  // 1. Parsed and acknowledged.
  const ok = await producer.send("orders", { order: 1 });
  await until("the push to be acknowledged", async () => {
    const m = await web.message(ok.messageId);
    return m.deliveries[0].state === "acked";
  });
  const push = fn.requests[0];
  assert.equal(push.path, "/api/queue/orders");
  assert.equal(push.headers["ce-type"], "com.vercel.queue.v2beta");
  assert.equal(push.headers["ce-vqsconsumergroup"], group, "the consumer group Vercel derives");
  assert.deepEqual(handled[0].payload, { order: 1 });
  assert.equal(handled[0].meta.consumerGroup, group);
  assert.equal(handled[0].meta.region, "dev1");

  // 2. A failure with retry({ afterSeconds }) comes back as delivery 2, then succeeds.
  const failing = await producer.send("orders", { fail: true });
  await until("the retried push to be acknowledged", async () => {
    const m = await web.message(failing.messageId);
    return m.deliveries[0].state === "acked" && m.deliveries[0].delivery_count === 2;
  });
  const attempts = handled.filter((h) => h.meta.messageId === failing.messageId).map((h) => h.meta.deliveryCount);
  assert.deepEqual(attempts, [1, 2]);

  // 3. A long handler: the SDK renews the lease (PATCH), then acknowledges.
  const held = await producer.send("orders", { hold: true });
  await until(
    "the held message to be acknowledged",
    async () => (await web.message(held.messageId)).deliveries[0].state === "acked",
    40000,
  );
  assert.equal(handled.filter((h) => h.meta.messageId === held.messageId).length, 1, "delivered once");
});
