#!/usr/bin/env bash
# Run every fuzz target for a bounded time: `fuzz/run.sh [seconds-per-target] [target…]`.
# Installs cargo-fuzz when it is missing, builds the targets (AddressSanitizer unless
# FUZZ_SANITIZER says otherwise, e.g. `none`), runs each from the committed corpus and prints
# its executions and executions per second. Exits non-zero when a target crashes, panics,
# leaks or hangs (an input over 10 s); the input that did it is left in fuzz/artifacts/<target>/.
#
# New inputs the fuzzer finds go to fuzz/target/new-corpus/<target>/ and are not kept; with
# KEEP_CORPUS=1 they go into fuzz/corpus/<target>/ (then minimize: `cargo fuzz cmin <target>`).
# The toolchain is stable: RUSTC_BOOTSTRAP=1 lets cargo fuzz pass its -Z flags.
set -euo pipefail
cd "$(dirname "$0")"

seconds=${1:-60}
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(delivery receive_codec receive_ndjson cron_expr vercel_json)
sanitizer=${FUZZ_SANITIZER:-address}
export RUSTC_BOOTSTRAP=1

if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "installing cargo-fuzz"
  cargo install cargo-fuzz --locked
fi

echo "building ${targets[*]} (sanitizer: $sanitizer)"
for t in "${targets[@]}"; do
  cargo fuzz build --sanitizer "$sanitizer" "$t"
done

failed=()
printf '%-16s %12s %10s %8s %8s  %s\n' target execs exec/s corpus new result
for t in "${targets[@]}"; do
  if [ "${KEEP_CORPUS:-0}" = 1 ]; then out=corpus/$t; else out=target/new-corpus/$t; rm -rf "$out"; fi
  mkdir -p "$out" "artifacts/$t"
  log=target/fuzz-$t.log
  if cargo fuzz run --sanitizer "$sanitizer" "$t" "$out" corpus/"$t" -- \
      -max_total_time="$seconds" -timeout=10 -print_final_stats=1 >"$log" 2>&1; then
    result=ok
  else
    result="FAILED (see $log and fuzz/artifacts/$t/)"
    failed+=("$t")
  fi
  stat() { sed -n "s/^stat::$1: *//p" "$log" | tail -n 1; }
  corpus=$(sed -n 's/.*DONE *cov: [0-9]* ft: [0-9]* corp: \([0-9]*\).*/\1/p' "$log" | tail -n 1)
  printf '%-16s %12s %10s %8s %8s  %s\n' "$t" "$(stat number_of_executed_units)" "$(stat average_exec_per_sec)" \
    "${corpus:-?}" "$(stat new_units_added)" "$result"
done

if [ ${#failed[@]} -gt 0 ]; then
  echo "fuzzing failed: ${failed[*]}" >&2
  for t in "${failed[@]}"; do grep -E -m 5 "panicked|ERROR|SUMMARY|Test unit written" "target/fuzz-$t.log" >&2 || true; done
  exit 1
fi
