#!/usr/bin/env bash
# Browser tests of the web console. Installs what they need (Debian's Chromium, the npm
# packages from the lock file), builds nothing Rust: it expects the tideway binary at
# $TIDEWAY_BIN (default $CARGO_TARGET_DIR/debug/tideway, or target/debug/tideway).
# Screenshots land in target/console-screenshots/.
set -euo pipefail
cd "$(dirname "$0")"

if [ ! -x /usr/bin/chromium ]; then
  SUDO=""
  if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq chromium
fi
if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
  echo "run.sh: node 20+ and npm are required" >&2
  exit 1
fi
npm ci --no-audit --no-fund --silent

repo="$(cd ../.. && pwd)"
export TIDEWAY_BIN="${TIDEWAY_BIN:-${CARGO_TARGET_DIR:-$repo/target}/debug/tideway}"
if [ ! -x "$TIDEWAY_BIN" ]; then
  echo "run.sh: no tideway binary at $TIDEWAY_BIN (cargo build -p tideway, or set TIDEWAY_BIN)" >&2
  exit 1
fi
exec node --test --test-concurrency=1 --test-reporter=spec console.test.mjs
