#!/usr/bin/env bash
# Browser tests of the pool's web page (issue 8): Debian's chromium driven by
# playwright-core (pinned in pool/ui-tests/package-lock.json) against the real
# `stockroom-pool` (the demo shop, and a pool with ci and admin tokens).
# Installs chromium (apt) and playwright-core (npm ci) when missing; fails
# loudly when a tool cannot be found. Screenshots land in docs/ui/.
set -euo pipefail
cd "$(dirname "$0")/.."

fail() { echo "ui-tests: $*" >&2; exit 1; }
need() { command -v "$1" >/dev/null 2>&1 || fail "required tool '$1' is missing: $2"; }

need cargo "the machine's Rust toolchain is expected on PATH"
need node "Node.js (18 or newer) runs the tests: apt-get install -y nodejs"
need npm "npm installs playwright-core: apt-get install -y npm"

if [ ! -x /usr/bin/chromium ]; then
  need apt-get "chromium is missing and there is no apt-get to install it"
  echo "ui-tests: installing Debian's chromium"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq || fail "apt-get update failed"
  apt-get install -y -qq chromium >/dev/null || fail "apt-get install chromium failed"
fi
[ -x /usr/bin/chromium ] || fail "/usr/bin/chromium is still missing"

if [ ! -d pool/ui-tests/node_modules/playwright-core ]; then
  echo "ui-tests: npm ci in pool/ui-tests"
  (cd pool/ui-tests && npm ci --no-audit --no-fund) || fail "npm ci failed in pool/ui-tests"
fi

cargo build -p stockroom-pool --locked || fail "cargo build -p stockroom-pool failed"
(cd pool/ui-tests && node --test --test-concurrency=1 ui.test.mjs) || fail "browser tests failed (screenshots so far in docs/ui/)"
echo "ui-tests: all browser tests passed; screenshots in docs/ui/"
