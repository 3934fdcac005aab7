#!/usr/bin/env bash
# The generator SDKs (docs/generators.md): the Python SDK's suite, the
# TypeScript SDK's node --test suite and type check, lints, and
# `stockroom-pool generator-check` on the SDK examples (as commands and over
# HTTP) and on a broken generator (which must fail). Uses the stockroom-pool
# that `cargo test --workspace` built in target/debug; compiles no Rust.
# Installs what a fresh machine lacks: pyflakes (PyPI), the Node package's
# dev dependencies (typescript, @types/node; npm registry).
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
cd "$repo"
die() { echo "sdk-tests: $*" >&2; exit 1; }
step() { printf -- '--> %s\n' "$*"; }

command -v python3 >/dev/null 2>&1 || die "python3 is missing"
command -v node >/dev/null 2>&1 || die "node (>= 20) is missing"
command -v npm >/dev/null 2>&1 || die "npm is missing"
node_major="$(node -p 'process.versions.node.split(".")[0]')"
[ "$node_major" -ge 20 ] || die "node >= 20 is needed, found $(node --version)"
pool="$repo/target/debug/stockroom-pool"
[ -x "$pool" ] || die "$pool is missing: run cargo test --workspace (or cargo build -p stockroom-pool) first"

work="$(mktemp -d)"
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT

step "Python SDK: lint and test suite"
# Into a directory of its own: nothing is installed into the machine's Python.
python3 -m pip install -q --target "$work/pylib" pyflakes 2>/dev/null ||
  python3 -m pip install -q --break-system-packages --target "$work/pylib" pyflakes ||
  die "pip install pyflakes failed"
PYTHONPATH="$work/pylib" python3 -m pyflakes clients/python examples/generators/customers.py \
  pool/tests/fixtures/broken_generator.py
timeout 600 python3 -m unittest discover -s clients/python/tests_generator -v

step "TypeScript SDK: syntax, test suite, type check"
for f in clients/node/generator/index.js clients/node/generator/fixtures/*.mjs \
         clients/node/generator/test/*.js examples/generators/orders.mjs; do
  node --check "$f"
done
(cd clients/node/generator && timeout 600 node --test test/)
(cd clients/node/generator && timeout 600 npm ci --no-audit --no-fund --loglevel=error && npx --no-install tsc -p tsconfig.json)

# Waits for `listening on URL` on the first line of a server's stdout file.
url_of() {
  local file="$1" deadline=$((SECONDS + 30))
  until grep -q '^listening on ' "$file" 2>/dev/null; do
    [ "$SECONDS" -lt "$deadline" ] || die "no 'listening on' line in $file after 30s"
    sleep 0.1
  done
  sed -n 's/^listening on //p' "$file" | head -n 1
}

examples=(--command "python3 examples/generators/customers.py" --command "node examples/generators/orders.mjs")

step "generator-check: the SDK examples as commands"
timeout 300 "$pool" generator-check "${examples[@]}"

step "generator-check: the SDK examples over HTTP"
python3 examples/generators/customers.py serve --port 0 >"$work/customers.out" 2>"$work/customers.err" &
pids+=($!)
node examples/generators/orders.mjs serve --port 0 >"$work/orders.out" 2>"$work/orders.err" &
pids+=($!)
timeout 300 "$pool" generator-check --url "$(url_of "$work/customers.out")" --url "$(url_of "$work/orders.out")"

step "generator-check: a broken generator fails with its violations"
set +e
timeout 300 "$pool" generator-check --command "python3 pool/tests/fixtures/broken_generator.py" \
  --timeout 3s --slow 2s >"$work/broken.out"
code=$?
set -e
cat "$work/broken.out"
[ "$code" -eq 1 ] || die "generator-check exited $code for the broken generator, expected 1"
grep -q 'violation: promised field `email` is missing from data' "$work/broken.out" ||
  die "the broken generator's missing field was not reported"
grep -q 'log output on stdout' "$work/broken.out" || die "the broken generator's stdout logging was not reported"

echo "sdk-tests: ok"
