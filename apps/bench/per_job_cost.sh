#!/usr/bin/env bash
# What one job costs PostgreSQL, measured so that a loaded machine does not skew it much:
# two vqs-bench builds run alternately against one PostgreSQL cluster on this machine, and
# each run prints, per job, the WAL written (exact), the server's CPU (the postmaster's
# reaped children plus its live ones, from /proc) and the bench process's CPU.
#
#   apps/bench/per_job_cost.sh ROUNDS BENCH_A BENCH_B
#
# Environment: PGPORT (default 5432; a throwaway cluster in tmpfs takes the disk out of the
# figures: initdb -D /dev/shm/pg -A trust -U postgres, then pg_ctl -o '-p 5433' start),
# N (jobs per run, default 60000), PGDATA (to find the postmaster; default: asked from the
# server, which needs superuser).
set -euo pipefail
rounds=$1 a=$2 b=$3
port=${PGPORT:-5432} n=${N:-60000}
psql_() { psql -qAt -h 127.0.0.1 -p "$port" -U postgres -d postgres -c "$1"; }
data=${PGDATA:-$(psql_ "show data_directory")}
pm=$(head -1 "$data/postmaster.pid")
tick=$(getconf CLK_TCK)
server_ticks() {
  local t
  t=$(awk '{print $16 + $17}' "/proc/$pm/stat")
  for p in $(pgrep -P "$pm"); do t=$((t + $(awk '{print $14 + $15}' "/proc/$p/stat" 2>/dev/null || echo 0))); done
  echo "$t"
}
for _ in $(seq 1 "$rounds"); do
  for bin in "$a" "$b"; do
    s0=$(server_ticks) w0=$(psql_ "select pg_current_wal_lsn() - '0/0'::pg_lsn")
    out=$( { /usr/bin/time -f "APPCPU %U %S" "$bin" --postgres "postgres://postgres@127.0.0.1:$port" \
      --backends postgres --workload throughput --n "$n" --concurrency 50; } 2>&1 )
    sleep 0.5
    s1=$(server_ticks) w1=$(psql_ "select pg_current_wal_lsn() - '0/0'::pg_lsn")
    rate=$(grep -o '"process_per_s":[0-9.]*' <<<"$out" | cut -d: -f2)
    app=$(awk -v n="$n" '/APPCPU/ {printf "%.0f", ($2 + $3) * 1e6 / n}' <<<"$out")
    echo "$bin process/s=$rate server_us/job=$(( (s1 - s0) * 1000000 / tick / n )) app_us/job=$app wal_bytes/job=$(( (w1 - w0) / n ))"
  done
done
