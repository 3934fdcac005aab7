#!/usr/bin/env bash
# schemathesis (PyPI) against a real stockroom-pool (issue 13): the pool's
# OpenAPI document (GET /api/v1/openapi.json) is the contract, and every
# answer must keep it. A pool with a `ci` and an `admin` token and a small
# static dataset set listens on 127.0.0.1:0; schemathesis runs every
# operation once with each token, checking for server errors, schema
# conformance, documented status codes and content types. A bounded number
# of examples per operation keeps it to a few minutes. Any failure fails CI.
#
# Env: STOCKROOM_SCHEMATHESIS_EXAMPLES (per operation, default 100),
#      STOCKROOM_SCHEMATHESIS_POOL_BIN (a built stockroom-pool instead of building one),
#      STOCKROOM_SCHEMATHESIS_VENV (reuse a venv with schemathesis in it).
set -euo pipefail
cd "$(dirname "$0")/.."

examples="${STOCKROOM_SCHEMATHESIS_EXAMPLES:-100}"
work="$(mktemp -d "${TMPDIR:-/tmp}/stockroom-schemathesis.XXXXXX")"
pool_pid=""
cleanup() {
  if [ -n "$pool_pid" ]; then kill "$pool_pid" 2>/dev/null || true; wait "$pool_pid" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

venv="${STOCKROOM_SCHEMATHESIS_VENV:-$PWD/target/schemathesis-venv}"
if [ ! -x "$venv/bin/schemathesis" ]; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check "schemathesis>=4,<5"
fi
"$venv/bin/schemathesis" --version

pool_bin="${STOCKROOM_SCHEMATHESIS_POOL_BIN:-}"
if [ -z "$pool_bin" ]; then
  cargo build --locked -p stockroom-pool --quiet
  pool_bin="$PWD/target/debug/stockroom-pool"
fi

ci_token="ci-$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')"
admin_token="admin-$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')"
sha() { printf '%s' "$1" | sha256sum | cut -d' ' -f1; }
cat > "$work/stockroom-pool.toml" <<EOF
[[tokens]]
name = "ci"
role = "ci"
sha256 = "$(sha "$ci_token")"

[[tokens]]
name = "admin"
role = "admin"
sha256 = "$(sha "$admin_token")"
EOF

STOCKROOM_LOG=warn "$pool_bin" --config "$work/stockroom-pool.toml" --listen 127.0.0.1:0 \
  --store "sqlite://$work/pool.db" --ready-file "$work/ready" 2> "$work/pool.log" &
pool_pid=$!
for _ in $(seq 1 300); do
  [ -s "$work/ready" ] && break
  kill -0 "$pool_pid" 2>/dev/null || { cat "$work/pool.log" >&2; echo "schemathesis: the pool did not start" >&2; exit 1; }
  sleep 0.1
done
[ -s "$work/ready" ] || { cat "$work/pool.log" >&2; echo "schemathesis: the pool did not say where it listens" >&2; exit 1; }
base="http://$(cat "$work/ready")"

# A static dataset set, registered by hand as an admin would.
seed='['
for i in $(seq 1 30); do
  seed+="{\"type\": \"customer\", \"state\": \"active\", \"attributes\": {\"country\": \"DE\"},"
  seed+=" \"data\": {\"customer_id\": \"C$i\", \"password\": \"pw-$i\"}, \"secret_fields\": [\"password\"],"
  seed+=" \"entities\": [\"customer:C$i\"]},"
done
seed="${seed%,}]"
status=$(curl -sS -o "$work/seed.json" -w '%{http_code}' -X POST "$base/api/v1/datasets" \
  -H "Authorization: Bearer $admin_token" -H 'Content-Type: application/json' --data "$seed")
[ "$status" = 201 ] || { cat "$work/seed.json" >&2; echo "schemathesis: seeding answered $status" >&2; exit 1; }

failed=0
for who in ci admin; do
  token="$ci_token"; [ "$who" = admin ] && token="$admin_token"
  echo "==> schemathesis with the $who token ($examples examples per operation)"
  started=$(date +%s)
  # Run from the temp dir: schemathesis keeps a cache in the working directory.
  if ! (cd "$work" && "$venv/bin/schemathesis" run "$base/api/v1/openapi.json" \
      --header "Authorization: Bearer $token" \
      --checks not_a_server_error,response_schema_conformance,status_code_conformance,content_type_conformance \
      --max-examples "$examples" --seed 13 --no-shrink \
      --phases examples,coverage,fuzzing \
      --request-timeout 20 --suppress-health-check all \
      --report junit --report-dir "$work/report-$who"); then
    failed=1
  fi
  echo "schemathesis ($who): $(( $(date +%s) - started ))s"
done

if ! kill -0 "$pool_pid" 2>/dev/null; then
  echo "schemathesis: the pool died during the run" >&2
  cat "$work/pool.log" >&2
  exit 1
fi
if grep -q "panicked" "$work/pool.log"; then
  echo "schemathesis: the pool panicked:" >&2
  grep -A5 "panicked" "$work/pool.log" >&2
  exit 1
fi
exit "$failed"
