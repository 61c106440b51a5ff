#!/usr/bin/env bash
# The example run as a user runs it: start the binary on a fresh SQLite file and on a fresh
# PostgreSQL database, sign up, wait for the welcome email's job to succeed (read through the
# mounted admin API), then stop it with SIGTERM and expect a clean exit. Fails loudly.
set -euo pipefail
cd "$(dirname "$0")/../.."
cargo build -q -p example-signup
bin=target/debug/example-signup
pg=${VQS_TEST_POSTGRES_URL:-postgres://postgres@127.0.0.1:5432}
dir=$(mktemp -d)
db=vqs_test_example_$$
trap 'rm -rf "$dir"; psql "$pg" -qc "drop database if exists $db" >/dev/null 2>&1 || true' EXIT
psql "$pg" -qc "create database $db"

run() {
  local url=$1 port=$2
  DATABASE_URL=$url ADDR=127.0.0.1:$port ADMIN_TOKEN=smoke RUST_LOG=warn "$bin" > "$dir/out.$port" 2>&1 &
  local pid=$!
  for _ in $(seq 1 100); do curl -sf "http://127.0.0.1:$port/api/health/live" >/dev/null && break; sleep 0.1; done
  curl -sf -XPOST "http://127.0.0.1:$port/signup" -H 'content-type: application/json' -d '{"email":"ada@example.com"}' >/dev/null
  local ok=""
  for _ in $(seq 1 100); do
    if curl -sf "http://127.0.0.1:$port/api/admin/queues" -H 'authorization: Bearer smoke' | grep -q '"succeeded":1'; then ok=1; break; fi
    sleep 0.1
  done
  kill -TERM "$pid"
  wait "$pid" || { echo "example-signup ($url) exited non-zero:" >&2; cat "$dir/out.$port" >&2; exit 1; }
  [ -n "$ok" ] || { echo "example-signup ($url): the welcome email's job did not succeed" >&2; cat "$dir/out.$port" >&2; exit 1; }
  echo "example-signup on ${url%%:*}: signup → job succeeded → clean shutdown"
}

run "sqlite://$dir/signup.db?mode=rwc" 3101
run "${pg%/}/$db" 3102
