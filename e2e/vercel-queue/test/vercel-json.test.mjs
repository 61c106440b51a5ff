// The repo's vercel.json is deployable, and the check can fail.
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { checkVercelJson } from "../vercel-json-check.mjs";

const REPO = resolve(import.meta.dirname, "../../..");
const repoConfig = () => JSON.parse(readFileSync(join(REPO, "vercel.json"), "utf8"));

test("the repo's vercel.json passes Vercel's schema, trigger rules and cron rules", async () => {
  assert.deepEqual(await checkVercelJson(repoConfig(), { repo: REPO }), []);
});

test("an invalid trigger is caught", async () => {
  const cases = [
    [{ type: "queue/v2beta", topic: "probe", consumer: "mine" }, /consumer|additional/],
    [{ type: "queue/v2beta", topic: "probe", maxAttempts: 3 }, /additional|must match/],
    [{ type: "queue/v2beta", topic: "probe", retryAfterSeconds: 0 }, /must be > 0|must match/],
    [{ type: "queue/v3", topic: "probe" }, /must match|const/],
    [{ type: "queue/v2beta" }, /topic|must match/],
  ];
  for (const [trigger, want] of cases) {
    const config = repoConfig();
    config.functions["api/queue/probe.rs"].experimentalTriggers = [trigger];
    const problems = await checkVercelJson(config);
    assert.ok(problems.some((p) => want.test(p)), `${JSON.stringify(trigger)}: ${problems.join("; ")}`);
  }
  const two = repoConfig();
  two.functions["api/queue/probe.rs"].experimentalTriggers.push({ type: "queue/v2beta", topic: "other" });
  assert.match((await checkVercelJson(two)).join("\n"), /can only have one item/);
});

test("an invalid cron is caught", async () => {
  const cases = [
    [{ path: "/api/cron/x", schedule: "0 0 * * MON" }, /names are not allowed/],
    [{ path: "/api/cron/x", schedule: "*/5 * * * * *" }, /field|5/],
    [{ path: "/api/cron/x", schedule: "0 0 32 * *" }, /day of month/],
    [{ path: "api/cron/x", schedule: "0 * * * *" }, /must match pattern/],
    [{ path: "/api/cron/x", schedule: "0 * * * *", timezone: "UTC" }, /additional/],
  ];
  for (const [cron, want] of cases) {
    const config = repoConfig();
    config.crons.push(cron);
    const problems = await checkVercelJson(config);
    assert.ok(problems.some((p) => want.test(p)), `${JSON.stringify(cron)}: ${problems.join("; ")}`);
  }
});

test("a function key without its file or its [[bin]] is caught", async () => {
  const config = repoConfig();
  config.functions["api/queue/missing.rs"] = { experimentalTriggers: [{ type: "queue/v2beta", topic: "missing" }] };
  const problems = await checkVercelJson(config, { repo: REPO });
  assert.ok(problems.some((p) => /no such file/.test(p)), problems.join("; "));
  assert.ok(problems.some((p) => /no \[\[bin\]\] named missing/.test(p)), problems.join("; "));
});
