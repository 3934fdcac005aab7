#!/usr/bin/env bash
# Sidecar footprint: stripped release binary size, peak RSS during a run, and
# the time from starting `stockroom run` to the wrapped command running, over
# loopback against a real pool with stock ready. Results go to stdout as a
# Markdown table; docs/benchmarks.md ("Sidecar") records a run.
#
# Usage: bench/sidecar/footprint.sh [RUNS]   (default 200)
# Needs: cargo, curl, python3, GNU time (/usr/bin/time).
set -euo pipefail
RUNS="${1:-200}"
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$ROOT"

cargo build --release -p stockroom >&2
SIDECAR="$ROOT/target/release/stockroom"
# POOL_BIN=path uses an already built pool (the pool's speed is part of the
# start-to-command figure: the lease is one round trip).
if [ -z "${POOL_BIN:-}" ]; then cargo build --release -p stockroom-pool >&2; fi
POOL="${POOL_BIN:-$ROOT/target/release/stockroom-pool}"

WORK="$(mktemp -d)"
POOL_PID=""
cleanup() { [ -n "$POOL_PID" ] && kill "$POOL_PID" 2>/dev/null; rm -rf "$WORK"; }
trap cleanup EXIT

"$POOL" --listen 127.0.0.1:0 --store "sqlite://$WORK/pool.db" --ready-file "$WORK/ready" 2>"$WORK/pool.log" &
POOL_PID=$!
for _ in $(seq 1 3000); do [ -s "$WORK/ready" ] && break; sleep 0.01; done
ADDR="$(cat "$WORK/ready")"

# Stock: one dataset per run (each run consumes one), plus a margin.
python3 - "$ADDR" "$((RUNS + 20))" <<'PY'
import json, sys, urllib.request
addr, n = sys.argv[1], int(sys.argv[2])
body = [{"type": "customer", "state": "active", "attributes": {"country": "DE"},
         "data": {"customer_id": f"C{i}", "email": f"c{i}@x.test", "password": "s3cret"},
         "secret_fields": ["password"], "entities": [f"customer:C{i}"]} for i in range(n)]
req = urllib.request.Request(f"http://{addr}/api/v1/datasets", json.dumps(body).encode(),
                             {"Content-Type": "application/json"})
urllib.request.urlopen(req).read()
PY

cat > "$WORK/stockroom.toml" <<TOML
version = 1
pool = "http://$ADDR"
[[dataset]]
name = "buyer"
type = "customer"
state = "active"
TOML
cd "$WORK"
export STOCKROOM_LOG=warn

# The machine's load matters on a small shared box: record it around the runs.
LOAD_BEFORE="$(cat /proc/loadavg)"
echo "load before: $LOAD_BEFORE" >&2

# Start-to-command: nanoseconds between the shell's clock read just before it
# execs the sidecar and the wrapped `date`'s own clock read.
: > "$WORK/startup.txt"
for _ in $(seq 1 "$RUNS"); do
  t0=$(date +%s%N)
  t1=$("$SIDECAR" run -- date +%s%N)
  echo $(( (t1 - t0) / 1000 )) >> "$WORK/startup.txt"
done

# Peak RSS of the sidecar over whole runs (lease, command, heartbeat, release).
: > "$WORK/rss.txt"
for _ in $(seq 1 20); do
  /usr/bin/time -f %M -o "$WORK/one.txt" "$SIDECAR" run -- true
  cat "$WORK/one.txt" >> "$WORK/rss.txt"
done

LOAD_AFTER="$(cat /proc/loadavg)"
SIZE=$(stat -c %s "$SIDECAR")
python3 - "$WORK/startup.txt" "$WORK/rss.txt" "$SIZE" "$RUNS" "$LOAD_BEFORE" "$LOAD_AFTER" <<'PY'
import statistics, sys
us = sorted(int(l) for l in open(sys.argv[1]) if l.strip())
rss = [int(l) for l in open(sys.argv[2]) if l.strip()]
size, runs = int(sys.argv[3]), sys.argv[4]
print(f"/proc/loadavg before: {sys.argv[5]}; after: {sys.argv[6]}")
print()
q = lambda p: us[min(len(us) - 1, int(p * len(us)))]
print("| measure | value | budget |")
print("|---|---|---|")
print(f"| stripped release binary | {size / 1e6:.2f} MB ({size} bytes) | <= 10 MB |")
print(f"| peak RSS of `stockroom run -- true` (max of {len(rss)}) | {max(rss) / 1024:.1f} MiB | <= 15 MB |")
print(f"| start to command running, median of {runs} | {statistics.median(us) / 1000:.2f} ms | <= 20 ms |")
print(f"| start to command running, p90 / p99 / max | {q(0.9) / 1000:.2f} / {q(0.99) / 1000:.2f} / {us[-1] / 1000:.2f} ms | |")
PY
