#!/bin/sh
# Run by Vercel's Rust builder (@vercel/rust) in the project root before it builds each
# function with `cargo build --bin <file stem> --release`. The function binaries
# (api/main.rs, api/queue/*.rs) need the web crate's `vercel` cargo feature, and the builder
# passes no feature flags: switch the feature on by default, in the build's own checkout.
# Elsewhere this does nothing (a developer's tree is never edited).
set -eu
if [ "${VERCEL:-}" != "1" ] || [ -z "${CI:-}${VQS_BUILD_FOR_VERCEL:-}" ]; then
  echo "build.sh: not a Vercel build (VERCEL=1 with CI set, or VQS_BUILD_FOR_VERCEL=1): nothing to do" >&2
  exit 0
fi
manifest=apps/web/Cargo.toml
if ! grep -q '^default = \["vercel"\]$' "$manifest"; then
  sed -i.bak 's/^default = \[\]$/default = ["vercel"]/' "$manifest" && rm -f "$manifest.bak"
fi
if ! grep -q '^default = \["vercel"\]$' "$manifest"; then
  echo "build.sh: could not switch on the vercel feature: $manifest has no 'default = []' line" >&2
  exit 1
fi
echo "build.sh: the web crate's vercel feature is on for this build"
