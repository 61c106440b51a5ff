// Checks a vercel.json as Vercel's build does, with Vercel's own code where it is published:
// the functions schema and the trigger processing of @vercel/build-utils, the crons shape of
// the CLI's config validation, and the cron dialect as the web app enforces it (the same
// validator the scheduler uses). Returns the problems found; none means deployable.
import { spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, basename } from "node:path";
import Ajv from "ajv";
import { functionsSchema, getLambdaOptionsFromFunction, sanitizeConsumerName } from "@vercel/build-utils";
import { webBinary } from "./harness.mjs";

// `crons` as the Vercel CLI validates it (packages/cli validate-config: cronsSchema).
const cronsSchema = {
  type: "array",
  items: {
    type: "object",
    additionalProperties: false,
    required: ["path", "schedule"],
    properties: {
      path: { type: "string", minLength: 1, maxLength: 512, pattern: "^/.*" },
      schedule: { type: "string", minLength: 9, maxLength: 256 },
    },
  },
};

const ajv = new Ajv({ allErrors: true, strict: false });
const validateFunctions = ajv.compile(functionsSchema);
const validateCrons = ajv.compile(cronsSchema);

/** Problems with `config` (a parsed vercel.json); `repo` (optional) checks files and bins too. */
export async function checkVercelJson(config, { repo } = {}) {
  const problems = [];
  const functions = config.functions ?? {};
  if (config.functions !== undefined && !validateFunctions(functions)) {
    for (const e of validateFunctions.errors) problems.push(`functions${e.instancePath}: ${e.message}`);
  }
  if (config.crons !== undefined && !validateCrons(config.crons)) {
    for (const e of validateCrons.errors) problems.push(`crons${e.instancePath}: ${e.message}`);
  }
  for (const [key, fn] of Object.entries(functions)) {
    try {
      // What the build does with a function's config: one queue/v2beta trigger at most,
      // consumer group derived from the key.
      const options = await getLambdaOptionsFromFunction({ sourceFile: key, config: { functions } });
      for (const t of options.experimentalTriggers ?? []) {
        if (t.type === "queue/v2beta" && t.consumer !== sanitizeConsumerName(key)) {
          problems.push(`functions["${key}"]: consumer ${t.consumer}, expected ${sanitizeConsumerName(key)}`);
        }
      }
    } catch (e) {
      problems.push(`functions["${key}"]: ${e.message}`);
    }
    if (repo) {
      if (!existsSync(join(repo, key))) problems.push(`functions["${key}"]: no such file (Vercel fails the deploy)`);
      if (key.endsWith(".rs")) {
        // @vercel/rust builds `cargo build --bin <file stem>` for a virtual workspace.
        const manifest = readFileSync(join(repo, "apps/web/Cargo.toml"), "utf8");
        const name = basename(key, ".rs");
        const bin = new RegExp(`\\[\\[bin\\]\\]\\s*name = "${name}"\\s*path = "../../${key}"`);
        if (!bin.test(manifest)) problems.push(`functions["${key}"]: no [[bin]] named ${name} with that path`);
      }
    }
  }
  if (config.crons !== undefined) {
    const dir = mkdtempSync(join(tmpdir(), "vqs-crons-"));
    writeFileSync(join(dir, "vercel.json"), JSON.stringify({ crons: config.crons }));
    const env = { PATH: process.env.PATH, VQS_VERCEL_JSON: join(dir, "vercel.json"), DATABASE_URL: `sqlite://${join(dir, "v.db")}` };
    // `crons` reads each cron's last run, so it needs a database (a read-only command never
    // creates one): `migrate` makes it first.
    const m = spawnSync(webBinary(), ["migrate"], { env, encoding: "utf8" });
    if (m.status !== 0) problems.push(`migrate: ${m.stderr.trim()}`);
    const r = spawnSync(webBinary(), ["crons", "--json"], { env, encoding: "utf8" });
    if (r.status !== 0) problems.push(`crons: ${r.stderr.trim()}`);
  }
  return problems;
}
