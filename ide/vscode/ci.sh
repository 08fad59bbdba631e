#!/usr/bin/env bash
# CI of the VS Code extension: install (from package-lock.json), build, test against a real
# `tideway server`, package the .vsix and check it. Needs only node/npm and a built
# `tideway` binary (TIDEWAY_BIN, default ~/.cache/tideway-target/debug/tideway).
set -euo pipefail
cd "$(dirname "$0")"

export TIDEWAY_BIN="${TIDEWAY_BIN:-$HOME/.cache/tideway-target/debug/tideway}"
if [[ ! -x "$TIDEWAY_BIN" ]]; then
  echo "ci.sh: no tideway binary at $TIDEWAY_BIN" >&2
  echo "ci.sh: build it with 'CARGO_TARGET_DIR=~/.cache/tideway-target cargo build -p tideway --bin tideway' or set TIDEWAY_BIN" >&2
  exit 1
fi

section() { printf '\n== %s\n' "$*"; }

section "toolchain"
echo "node $(node --version), npm $(npm --version), tideway at $TIDEWAY_BIN"

section "npm ci"
# No install scripts are needed to build, test or package.
npm ci --ignore-scripts --no-audit --no-fund

section "build"
rm -rf out
npm run build

section "test"
npm test

section "package"
version="$(node -p 'require("./package.json").version')"
vsix="tideway-vscode-${version}.vsix"
rm -f "$vsix"
npm run package
node scripts/check-vsix.mjs "$vsix"
