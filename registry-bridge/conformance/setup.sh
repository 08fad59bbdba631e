#!/usr/bin/env bash
# Installs the third-party registry clients the conformance tests drive, idempotently, under
# ${TIDEWAY_CONFORMANCE_DIR:-$HOME/.cache/tideway-conformance}:
#   venv/          a Python venv with py-eureka-client and py-consul (PyPI)
#   node_modules/  eureka-js-client and consul (npm)
# A stamp file records the pinned versions; a second run with the same pins does nothing.
# Prints the install directory on its last line.
set -euo pipefail

PY_EUREKA_CLIENT_VERSION="0.13.3"
PY_CONSUL_VERSION="1.8.0"
EUREKA_JS_CLIENT_VERSION="4.5.0"
NODE_CONSUL_VERSION="2.0.1"

dir="${TIDEWAY_CONFORMANCE_DIR:-$HOME/.cache/tideway-conformance}"
mkdir -p "$dir"
# One installer at a time (parallel test runs share the directory).
if command -v flock >/dev/null 2>&1; then
  exec 9>"$dir/.lock"
  flock 9
fi
stamp="$dir/.installed"
want="py-eureka-client==$PY_EUREKA_CLIENT_VERSION py-consul==$PY_CONSUL_VERSION eureka-js-client@$EUREKA_JS_CLIENT_VERSION consul@$NODE_CONSUL_VERSION"

if [[ -f "$stamp" && "$(cat "$stamp")" == "$want" && -x "$dir/venv/bin/python" && -d "$dir/node_modules/consul" && -d "$dir/node_modules/eureka-js-client" ]]; then
  echo "$dir"
  exit 0
fi

python="${PYTHON:-python3}"
if [[ ! -x "$dir/venv/bin/python" ]]; then
  "$python" -m venv "$dir/venv" >&2
fi
"$dir/venv/bin/python" -m pip install --quiet --disable-pip-version-check \
  "py-eureka-client==$PY_EUREKA_CLIENT_VERSION" "py-consul==$PY_CONSUL_VERSION" >&2

if [[ ! -f "$dir/package.json" ]]; then
  printf '{"name":"tideway-conformance-clients","private":true}\n' >"$dir/package.json"
fi
(cd "$dir" && npm install --silent --no-audit --no-fund --loglevel=error \
  "eureka-js-client@$EUREKA_JS_CLIENT_VERSION" "consul@$NODE_CONSUL_VERSION" >&2)

echo "$want" >"$stamp"
echo "$dir"
