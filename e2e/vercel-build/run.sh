#!/usr/bin/env bash
# The Vercel deployment artifact, built and run here: `vercel build` (Vercel's own CLI and
# Rust builder, pinned) on a scratch copy of the repository, offline and without an account;
# then driver.mjs checks the output (functions, triggers, rewrite, crons, static files) and
# runs the function binaries as the platform does (port + IPC socket) against PostgreSQL
# over TLS and a local queue service.
#
# Installs what it needs under $VQS_VERCEL_BUILD_CACHE (default target/vercel-build; kept
# between runs, so only the first run downloads and compiles everything):
#   - the `vercel` CLI from npm, its `sandbox` dependency overridden to a version the
#     registry has;
#   - zig from PyPI (`ziglang`) and cargo-zigbuild from crates.io: the builder cross-builds
#     every function with `cargo zigbuild --target x86_64-unknown-linux-gnu --release`;
#   - its cargo target directory (CARGO_TARGET_DIR), so rebuilds are incremental.
# Needs node/npm, python3 with pip, cargo, psql and PostgreSQL with ssl = on.
set -euo pipefail
cd "$(dirname "$0")/../.."
repo=$(pwd)

VERCEL_CLI_VERSION=64.0.2
SANDBOX_VERSION=4.5.0 # the CLI asks for sandbox 4.4.0, which the npm registry does not have
ZIGLANG_VERSION=0.17.1
CARGO_ZIGBUILD_VERSION=0.24.1

cache=${VQS_VERCEL_BUILD_CACHE:-$repo/target/vercel-build}
tools=$cache/tools
mkdir -p "$tools/cli" "$tools/bin"
started=$(date +%s)

# --- tools ---------------------------------------------------------------------------------
cat > "$tools/cli/package.json.new" <<EOF
{ "name": "vqs-vercel-build-tools", "private": true,
  "dependencies": { "vercel": "$VERCEL_CLI_VERSION" },
  "overrides": { "sandbox": "$SANDBOX_VERSION" } }
EOF
if ! cmp -s "$tools/cli/package.json.new" "$tools/cli/package.json" || [ ! -x "$tools/cli/node_modules/.bin/vercel" ]; then
  mv "$tools/cli/package.json.new" "$tools/cli/package.json"
  (cd "$tools/cli" && npm install --no-audit --no-fund --loglevel=error)
else
  rm -f "$tools/cli/package.json.new"
fi
if [ ! -x "$tools/zig-$ZIGLANG_VERSION/ziglang/zig" ]; then
  python3 -m pip install --quiet --disable-pip-version-check --root-user-action=ignore --target "$tools/zig-$ZIGLANG_VERSION" "ziglang==$ZIGLANG_VERSION"
fi
ln -sf "$tools/zig-$ZIGLANG_VERSION/ziglang/zig" "$tools/bin/zig"
if [ "$("$tools/cargo/bin/cargo-zigbuild" --version 2>/dev/null)" != "cargo-zigbuild $CARGO_ZIGBUILD_VERSION" ]; then
  CARGO_TARGET_DIR=$cache/zigbuild-target cargo install --quiet --locked --root "$tools/cargo" \
    --version "$CARGO_ZIGBUILD_VERSION" cargo-zigbuild
fi
echo "vercel-build: tools ready ($(( $(date +%s) - started )) s): vercel $VERCEL_CLI_VERSION, zig $("$tools/bin/zig" version), $("$tools/cargo/bin/cargo-zigbuild" --version)"

# --- a scratch copy: tracked and untracked files, as a fresh clone plus work in progress -----
src=$cache/src
rm -rf "$src" && mkdir -p "$src"
git ls-files -z --cached --others --exclude-standard \
  | while IFS= read -r -d '' f; do [ -e "$f" ] && printf '%s\0' "$f"; done \
  | tar --null -T - -cf - | tar -xf - -C "$src"
# What `vercel link` would write; with it `vercel build` needs no account and no network.
mkdir -p "$src/.vercel"
echo '{"projectId":"prj_vqs_e2e","orgId":"team_vqs_e2e","settings":{"framework":null}}' > "$src/.vercel/project.json"

# --- vercel build -----------------------------------------------------------------------------
build_started=$(date +%s)
(
  cd "$src"
  PATH="$tools/bin:$tools/cargo/bin:$PATH" VERCEL=1 CI=1 VERCEL_TELEMETRY_DISABLED=1 \
    CARGO_TARGET_DIR="$cache/target" "$tools/cli/node_modules/.bin/vercel" build --yes
)
echo "vercel-build: vercel build took $(( $(date +%s) - build_started )) s"

# --- check and drive the output ----------------------------------------------------------------
cargo build -q -p web
node e2e/vercel-build/driver.mjs "$src" "$repo/target/debug/web"
echo "vercel-build: done in $(( $(date +%s) - started )) s"
