#!/usr/bin/env bash
# The test-runner plugins (issue 15; docs/plugins/): pytest-stockroom's and
# @stockroom/test's own suites, then the example shop suites of
# examples/shop-tests, with Stockroom (must pass) and without it (must collide:
# the check that the example shows what it claims). Everything runs against the
# real `stockroom` and `stockroom-pool` built in target/debug.
# Installs what a fresh machine lacks: pytest, pytest-xdist and the plugin in a
# throwaway venv (PyPI); @playwright/test, jest, vitest (npm); Debian's chromium.
set -euo pipefail
cd "$(dirname "$0")/.."

fail() { echo "plugins-tests: $*" >&2; exit 1; }
need() { command -v "$1" >/dev/null 2>&1 || fail "required tool '$1' is missing: $2"; }
step() { printf '\n--> %s (%s)\n' "$*" "$(date -u +%H:%M:%S)"; }

need cargo "the machine's Rust toolchain is expected on PATH"
need python3 "Python 3.9 or newer runs pytest-stockroom's suite"
need node "Node.js 20 or newer runs @stockroom/test's suite: apt-get install -y nodejs"
need npm "npm installs the Node runners: apt-get install -y npm"

if [ ! -x /usr/bin/chromium ]; then
  need apt-get "chromium is missing and there is no apt-get to install it"
  step "installing Debian's chromium (the Playwright page tests)"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq || fail "apt-get update failed"
  apt-get install -y -qq chromium >/dev/null || fail "apt-get install chromium failed"
fi

step "cargo build -p stockroom -p stockroom-pool"
cargo build -p stockroom -p stockroom-pool --locked || fail "cargo build failed"
export STOCKROOM_BIN_DIR="$PWD/target/debug"

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

step "pip install pytest pytest-xdist ./clients/python (venv)"
python3 -m venv "$work/venv" || fail "python3 -m venv failed (Debian: apt-get install -y python3-venv)"
"$work/venv/bin/pip" install -q pytest pytest-xdist ./clients/python || fail "pip install failed"
py="$work/venv/bin/python"
# The installed distribution carries both packages' PEP 561 markers (package-data in pyproject.toml).
(cd "$work" && "$py" -c 'import importlib.resources as r, pytest_stockroom, stockroom_generator as g
missing = [m.__name__ for m in (pytest_stockroom, g) if not (r.files(m) / "py.typed").is_file()]
assert not missing, f"py.typed is not installed with {missing}"') || fail "an installed package lacks py.typed"

step "pyflakes and node --check on the plugins, their suites and the examples"
"$work/venv/bin/pip" install -q pyflakes || fail "pip install pyflakes failed"
"$py" -m pyflakes clients/python examples/shop-tests/python scripts/plugin-doc-examples.py || fail "pyflakes found problems"
for f in $(git ls-files 'clients/node/test/*.js' 'clients/node/test/*.mjs' 'examples/shop-tests/playwright/*.mjs'); do
  node --check "$f" || fail "node --check $f failed"
done

step "pytest-stockroom's suite (clients/python/tests)"
(cd clients/python && "$py" -m pytest -p no:cacheprovider -q tests) || fail "pytest-stockroom's suite failed"

step "npm ci in clients/node/test (@playwright/test, jest, vitest)"
(cd clients/node/test && npm ci --no-audit --no-fund) || fail "npm ci failed in clients/node/test"

step "@stockroom/test's suite (node:test, Jest, Vitest, Playwright)"
(cd clients/node/test && npm test) || fail "@stockroom/test's suite failed"

step "npm ci in examples/shop-tests/playwright"
(cd examples/shop-tests/playwright && npm ci --no-audit --no-fund) || fail "npm ci failed in examples/shop-tests/playwright"

step "example shop suites, 4 workers: shared data (must collide), then per-test Stockroom (must pass)"
PYTHON="$py" bash examples/shop-tests/run.sh --check || fail "the example shop suites did not behave as documented"

step "docs/plugins: the complete examples, as written (scripts/plugin-doc-examples.py)"
PATH="$work/venv/bin:$PATH" "$py" scripts/plugin-doc-examples.py . || fail "an example of docs/plugins/ failed"

echo "plugins-tests: all passed"
