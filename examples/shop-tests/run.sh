#!/usr/bin/env bash
# The demo shop's API tests, 4 workers in parallel, twice each (README.md here):
#   shared     — without the plugins: every test uses the job's one customer and
#                one order (`stockroom run --manifest shared.toml`, read from
#                STOCKROOM_BUYER_* / STOCKROOM_ORDER_*): the tests collide;
#   per test   — with pytest-stockroom / @stockroom/test: each test takes its own
#                data (the plugin starts `stockroom agent` from STOCKROOM_POOL).
# Prints tests, failures (collisions) and wall time per run.
#
# Usage: examples/shop-tests/run.sh [--check] [python|playwright ...]
#   --check  exit 1 unless every shared run collides and no per-test run fails
# Needs: target/debug/stockroom{,-pool} (cargo build -p stockroom -p stockroom-pool);
# for python, $PYTHON (default python3) with pytest, pytest-xdist and
# ./clients/python installed; for playwright, `npm install` in playwright/ and
# /usr/bin/chromium (or $CHROMIUM).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
bin="${STOCKROOM_BIN_DIR:-$repo/target/debug}"
python="${PYTHON:-python3}"
check=0
suites=()
for arg in "$@"; do
  case "$arg" in
    --check) check=1 ;;
    python|playwright) suites+=("$arg") ;;
    *) echo "usage: $0 [--check] [python|playwright ...]" >&2; exit 64 ;;
  esac
done
[ ${#suites[@]} -gt 0 ] || suites=(python playwright)
for b in stockroom stockroom-pool; do
  [ -x "$bin/$b" ] || { echo "$bin/$b is missing: cargo build -p stockroom -p stockroom-pool" >&2; exit 1; }
done

work="$(mktemp -d)"
pool_pid=""
cleanup() {
  if [ -n "$pool_pid" ]; then kill "$pool_pid" 2>/dev/null || true; wait "$pool_pid" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

"$bin/stockroom-pool" demo --listen 127.0.0.1:0 --ready-file "$work/addr" \
  --shop-listen 127.0.0.1:0 --shop-url-file "$work/shop" >"$work/pool.out" 2>"$work/pool.log" &
pool_pid=$!

# Waits (bounded) for the pool, the shop API and warm stock.
python3 - "$work" <<'PY'
import json, os, sys, time, urllib.request
work = sys.argv[1]
deadline = time.time() + 90
def wait(name):
    path = os.path.join(work, name)
    while not (os.path.exists(path) and open(path).read().strip()):
        if time.time() > deadline:
            sys.exit(f"the demo pool did not write {name}; its log:\n" + open(os.path.join(work, "pool.log")).read())
        time.sleep(0.05)
    return open(path).read().strip()
addr = wait("addr"); wait("shop")
need = {("customer", "active-with-payment"): 5, ("order", "placed"): 5}
while True:
    try:
        catalog = json.load(urllib.request.urlopen(f"http://{addr}/api/v1/catalog", timeout=5))
        ready = {(t["type"], s["state"]): s["stock"]["ready"] for t in catalog["types"] for s in t["states"]}
        if all(ready.get(k, 0) >= n for k, n in need.items()):
            break
    except OSError:
        pass
    if time.time() > deadline:
        sys.exit("stock did not warm up in time; the pool's log:\n" + open(os.path.join(work, "pool.log")).read())
    time.sleep(0.1)
PY
export STOCKROOM_POOL="http://$(cat "$work/addr")"
export SHOP_URL="$(cat "$work/shop")"
export PATH="$bin:$PATH"
echo "demo pool $STOCKROOM_POOL, shop API $SHOP_URL"

# run LABEL MODE JUNIT -- COMMAND...: times COMMAND and appends a result line.
run() {
  local label="$1" mode="$2" junit="$3"; shift 4
  local t0 t1 rc
  t0=$(date +%s%N)
  set +e
  SHOP_TESTS_MODE="$mode" JUNIT="$junit" "$@" >"$work/$label.log" 2>&1
  rc=$?
  set -e
  t1=$(date +%s%N)
  python3 - "$label" "$mode" "$junit" "$rc" "$(( (t1 - t0) / 1000000 ))" "$work/$label.log" >>"$work/results" <<'PY'
import sys, xml.etree.ElementTree as ET
label, mode, junit, rc, ms, log = sys.argv[1:]
try:
    root = ET.parse(junit).getroot()
except (OSError, ET.ParseError):
    sys.stderr.write(f"{label}: no JUnit report ({junit}); exit {rc}; its output:\n{open(log).read()}\n")
    print(f"{label}\t{mode}\t0\t-1\t{ms}\t{rc}\t0\tno report")
    sys.exit(0)
cases = list(root.iter("testcase"))
failed = [c for c in cases if c.find("failure") is not None or c.find("error") is not None]
datasets = sum(1 for c in cases for p in c.iter("property") if p.get("name") == "stockroom.dataset")
kinds = {}
for c in failed:
    text = " ".join((e.get("message") or "") + (e.text or "") for e in c if e.tag in ("failure", "error"))
    kind = ("open order of another test" if "open-order" in text
            else "password changed by another test" if "password logs in" in text or "401" in text
            else "order paid/cancelled by another test" if "409" in text
            else "other")
    kinds[kind] = kinds.get(kind, 0) + 1
why = ", ".join(f"{n} {k}" for k, n in sorted(kinds.items(), key=lambda kv: -kv[1])) or "-"
print(f"{label}\t{mode}\t{len(cases)}\t{len(failed)}\t{ms}\t{rc}\t{datasets}\t{why}")
PY
}

for suite in "${suites[@]}"; do
  case "$suite" in
    python)
      run pytest-shared shared "$work/pytest-shared.xml" -- \
        stockroom run --manifest "$here/shared.toml" -- \
        "$python" -m pytest -p no:cacheprovider -p no:stockroom -n 4 -q "$here/python" --junitxml="$work/pytest-shared.xml"
      run pytest-per-test per-test "$work/pytest-per-test.xml" -- \
        "$python" -m pytest -p no:cacheprovider -n 4 -q "$here/python" --junitxml="$work/pytest-per-test.xml"
      ;;
    playwright)
      [ -d "$here/playwright/node_modules/@stockroom/test" ] || { echo "run npm install in $here/playwright first" >&2; exit 1; }
      run playwright-shared shared "$work/playwright-shared.xml" -- \
        stockroom run --manifest "$here/shared.toml" -- \
        "$here/playwright/node_modules/.bin/playwright" test --config "$here/playwright/playwright.config.mjs" --workers 4
      run playwright-per-test per-test "$work/playwright-per-test.xml" -- \
        "$here/playwright/node_modules/.bin/playwright" test --config "$here/playwright/playwright.config.mjs" --workers 4
      ;;
  esac
done

echo
printf '%-22s %-9s %6s %22s %10s %9s   %s\n' run mode tests "failed (collisions)" "wall time" datasets "what collided"
status=0
while IFS=$'\t' read -r label mode tests failed ms rc datasets why; do
  printf '%-22s %-9s %6s %22s %8s s %9s   %s\n' "$label" "$mode" "$tests" "$failed" "$(awk -v ms="$ms" 'BEGIN { printf "%.1f", ms / 1000 }')" "$datasets" "$why"
  if [ "$mode" = shared ] && [ "$failed" -lt 1 ]; then
    echo "  $label: no collision: the example does not show what it should" >&2; status=1
  fi
  if [ "$mode" = per-test ] && { [ "$failed" != 0 ] || [ "$rc" != 0 ] || [ "$tests" = 0 ]; }; then
    echo "  $label: failed with Stockroom (exit $rc); its output:" >&2; cat "$work/$label.log" >&2; status=1
  fi
done <"$work/results"
if [ "$check" = 1 ]; then exit "$status"; fi
