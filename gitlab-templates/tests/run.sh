#!/usr/bin/env bash
# Real GitLab pipelines under gitlab-ci-local (shell executor) against a real
# stockroom-pool and the real `stockroom` sidecar:
#   1. include: local   — parallel: 3, shard 2 fails → three distinct datasets,
#                          the failing shard's quarantined, the others released
#   2. include: component (templates/stockroom/template.yml, pool as an input) — the same
#   3. the cancel path: gitlab-ci-local cannot cancel a job, so before_script and
#      after_script are run as the runner would, with CI_JOB_STATUS=canceled;
#      this run also installs stockroom from a loopback "release" (checksum-verified)
#   4. the install paths under gitlab-ci-local, with stockroom on no PATH and no
#      STOCKROOM_BINARY: the 3-shard pipeline installing by SHA256SUMS, a
#      pipeline installing the tarball pinned by STOCKROOM_SHA256 (its release
#      has no SHA256SUMS), and two mismatches (a wrong STOCKROOM_SHA256, a
#      tampered SHA256SUMS) that fail the job in before_script, its script never run
#   5. the two files' scripts are identical
# Needs: gitlab-ci-local (Node >= 22), rsync, git, curl, python3 (PyYAML),
# and STOCKROOM_BIN_DIR holding `stockroom` and `stockroom-pool`.
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
templates="$(dirname "$here")"
repo_root="$(cd "$templates/.." && pwd)"
bin_dir="${STOCKROOM_BIN_DIR:-$repo_root/target/debug}"

fail() { echo "gitlab-templates tests: $*" >&2; exit 1; }
# shellcheck source=../../.ci/lib.sh
. "$repo_root/.ci/lib.sh"
need() { command -v "$1" >/dev/null 2>&1 || fail "required tool '$1' is missing: $2"; }
need gitlab-ci-local "npm install gitlab-ci-local (see .ci/integrations.sh)"
need node "gitlab-ci-local needs Node >= 22"
need rsync "apt-get install rsync"
need git "git"
need curl "apt-get install curl"
need python3 "python3 with PyYAML"
node_major="$(node -p 'process.versions.node.split(".")[0]')"
[ "$node_major" -ge 22 ] || fail "gitlab-ci-local needs Node >= 22, found $(node --version)"
python3 -c 'import yaml' 2>/dev/null || fail "python3 lacks PyYAML (pip install pyyaml)"
for b in stockroom stockroom-pool; do
  [ -x "$bin_dir/$b" ] || fail "$bin_dir/$b is missing: cargo build -p stockroom -p stockroom-pool"
done

work="$(mktemp -d "${TMPDIR:-/tmp}/stockroom-gitlab-test.XXXXXX")"
pool_pid=""
cleanup() {
  if [ -n "$pool_pid" ]; then kill "$pool_pid" 2>/dev/null || true; wait "$pool_pid" 2>/dev/null || true; fi
  if [ -z "${KEEP_TEST_DIR:-}" ]; then rm -rf "$work"; else echo "kept $work"; fi
}
trap cleanup EXIT

passed=0
failed=0
ok() { passed=$((passed + 1)); echo "ok - $*"; }
not_ok() { failed=$((failed + 1)); echo "not ok - $*"; }
check() { # check "description" command...
  local what="$1"; shift
  if "$@"; then ok "$what"; else not_ok "$what"; fi
}

# --- the pool -----------------------------------------------------------------
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
         "data": {"customer_id": f"G{i}", "email": f"g{i}@shop.test", "password": f"pw-G{i}"},
         "secret_fields": ["password"], "entities": [f"customer:G{i}"]} for i in range(12)]
req = urllib.request.Request(sys.argv[1] + "/api/v1/datasets", data=json.dumps(body).encode(),
                             headers={"content-type": "application/json"}, method="POST")
urllib.request.urlopen(req).read()
EOF

status_of() { # status_of DATASET_ID → the dataset's status
  curl -fsS "$pool_url/api/v1/datasets/$1" | python3 -c 'import json,sys; print(json.load(sys.stdin)["status"])'
}

# --- a project that includes the templates ------------------------------------
# $1: name; $2: the include block. Creates $work/$1 as a git repository with a
# remote (gitlab-ci-local derives the project path from it) and the templates.
make_project() {
  local dir="$work/$1"
  mkdir -p "$dir"
  rsync -a --exclude tests "$templates/" "$dir/"
  cat >"$dir/stockroom.toml" <<'EOF'
version = 1
lease_ttl = "60s"
acquire_timeout = "20s"

[[dataset]]
name = "buyer"
type = "customer"
state = "active"
EOF
  git -C "$dir" init -q
  git -C "$dir" remote add origin git@gitlab.example.com:acme/stockroom-ci.git
  git -C "$dir" add -A
  git -C "$dir" -c user.email=ci@example.com -c user.name=ci commit -qm "templates"
  echo "$dir"
}

write_pipeline() { # write_pipeline DIR JOB INCLUDE_YAML
  cat >"$1/.gitlab-ci.yml" <<EOF
$3

$2:
  extends: .stockroom
  parallel: 3
  script:
    - echo "\$CI_NODE_INDEX \$STOCKROOM_BUYER_ID \$STOCKROOM_LEASE_ID \$STOCKROOM_SHARD_INDEX \$STOCKROOM_SHARD_TOTAL" > "\$RESULTS/$2-\$CI_NODE_INDEX"
    - test -n "\$STOCKROOM_BUYER_EMAIL"
    - test -f "\$STOCKROOM_DATASETS_FILE"
    - if [ "\$CI_NODE_INDEX" = 2 ]; then echo "shard 2 fails on purpose"; exit 1; fi
EOF
}

# Runs the pipeline and checks: three shards, distinct datasets, the failing
# one quarantined, the others released (consumed).
run_and_check() { # run_and_check NAME DIR JOB [gitlab-ci-local args...]
  local name="$1" dir="$2" job="$3"; shift 3
  local results="$work/results-$name"
  mkdir -p "$results"
  local rc=0
  # gitlab-ci-local sets GITLAB_CI=false on purpose; GitLab sets true, and the
  # sidecar reads the GitLab variables (CI_NODE_INDEX, CI_JOB_STATUS) only then.
  (cd "$dir" && PATH="${PIPELINE_PATH:-$bin_dir:$PATH}" gitlab-ci-local --variable GITLAB_CI=true --variable "RESULTS=$results" "$@") >"$work/$name.log" 2>&1 || rc=$?
  sed "s/^/  [$name] /" "$work/$name.log" | tail -n 60
  check "$name: gitlab-ci-local ran the pipeline (exit $rc)" grep -q "pipeline finished" "$work/$name.log"
  check "$name: shard 2 failed, shards 1 and 3 passed" \
    bash -c "grep -q 'FAIL  $job: \[2/3\]' '$work/$name.log' && grep -q 'PASS  $job: \[1/3\]' '$work/$name.log' && grep -q 'PASS  $job: \[3/3\]' '$work/$name.log'"
  local ids=()
  for i in 1 2 3; do
    if [ -s "$results/$job-$i" ]; then
      read -r node id lease index total <"$results/$job-$i"
      ids+=("$id")
      check "$name: shard $i saw STOCKROOM_SHARD_INDEX=$((i - 1)) of 3" test "$index/$total" = "$((i - 1))/3"
    else
      not_ok "$name: shard $i recorded no dataset"
      ids+=("missing-$i")
    fi
  done
  check "$name: three distinct datasets" test "$(printf '%s\n' "${ids[@]}" | sort -u | grep -vc '^missing')" = 3
  check "$name: the failing shard's dataset is quarantined" test "$(status_of "${ids[1]}")" = quarantined
  check "$name: shard 1's dataset is released" test "$(status_of "${ids[0]}")" = consumed
  check "$name: shard 3's dataset is released" test "$(status_of "${ids[2]}")" = consumed
}

# 1. include: local
local_dir="$(make_project local)"
write_pipeline "$local_dir" e2e-local "include:
  - local: stockroom.gitlab-ci.yml"
run_and_check include-local "$local_dir" e2e-local --variable "STOCKROOM_POOL=$pool_url"

# 2. include: component, pool given as an input (no STOCKROOM_POOL variable)
component_dir="$(make_project component)"
sha="$(git -C "$component_dir" rev-parse HEAD)"
write_pipeline "$component_dir" e2e-component "include:
  - component: gitlab.example.com/acme/stockroom-ci/stockroom@$sha
    inputs:
      pool: $pool_url"
run_and_check include-component "$component_dir" e2e-component

# 3. the cancel path, run as the runner runs a job: before_script and script in
# one shell, after_script in a fresh one with CI_JOB_STATUS. stockroom is not on
# PATH here, so before_script installs it from a loopback release.
python3 - "$templates/stockroom.gitlab-ci.yml" "$work/cancel" <<'EOF'
import os, sys, yaml
job = yaml.safe_load(open(sys.argv[1]))[".stockroom"]
os.makedirs(sys.argv[2], exist_ok=True)
for part in ("before_script", "after_script"):
    with open(os.path.join(sys.argv[2], part + ".sh"), "w") as f:
        f.write("set -eo pipefail\n" + "\n".join(job[part]) + "\n")
EOF
release_fixture "$work/release" "$bin_dir"
version="$FIXTURE_VERSION"
asset="$FIXTURE_ASSET"
serve_dir "$work/release" "$work/http.log"
http_pid="$SERVE_PID"
http_port="$SERVE_PORT"

project="$work/cancel/project"
mkdir -p "$project"
cp "$local_dir/stockroom.toml" "$project/"
job_env=(
  env -i HOME="$HOME" PATH="/usr/local/bin:/usr/bin:/bin" GITLAB_CI=true CI=true
  CI_PROJECT_DIR="$project" CI_PROJECT_PATH=acme/shop CI_PIPELINE_ID=77 CI_JOB_ID=7701 CI_JOB_NAME=e2e-cancel
  CI_NODE_INDEX=1 CI_NODE_TOTAL=1 STOCKROOM_POOL="$pool_url"
  STOCKROOM_VERSION="$version" STOCKROOM_DOWNLOAD_URL="http://127.0.0.1:$http_port"
)
rc=0
(cd "$project" && "${job_env[@]}" bash -c "$(cat "$work/cancel/before_script.sh")"'
  echo "$STOCKROOM_BUYER_ID" > "'"$work"'/cancel/leased"
  echo "the job is cancelled here"') >"$work/cancel.log" 2>&1 || rc=$?
cat "$work/cancel.log" | sed 's/^/  [cancel] /'
check "cancel: before_script installed stockroom from the loopback release and leased (exit $rc)" \
  bash -c "[ $rc = 0 ] && grep -q 'using $project/.stockroom/download-$version\.' '$work/cancel.log' && [ -s '$work/cancel/leased' ]"
leased_id="$(cat "$work/cancel/leased" 2>/dev/null || echo none)"
check "cancel: the dataset is leased while the job runs" test "$(status_of "$leased_id")" = leased
rc=0
(cd "$project" && "${job_env[@]}" CI_JOB_STATUS=canceled bash "$work/cancel/after_script.sh") >"$work/cancel-after.log" 2>&1 || rc=$?
sed 's/^/  [cancel after_script] /' "$work/cancel-after.log"
check "cancel: after_script with CI_JOB_STATUS=canceled exits 0" test "$rc" = 0
check "cancel: the dataset is quarantined" test "$(status_of "$leased_id")" = quarantined
check "cancel: after_script left nothing of the job in .stockroom/ ($(ls -A "$project/.stockroom" | tr '\n' ' '))" \
  test -z "$(ls -A "$project/.stockroom")"
# 4. the install paths under gitlab-ci-local. Nothing provides stockroom but
# the loopback release: not PATH, not STOCKROOM_BINARY.
! command -v stockroom >/dev/null 2>&1 || fail "stockroom is on PATH ($(command -v stockroom)); the install test needs it absent"
unset STOCKROOM_BINARY
target="${asset#stockroom-"$version"-}"; target="${target%.tar.gz}"
asset_sha256="$(sha256sum "$work/release/v$version/$asset" | cut -d' ' -f1)"
# Beside the release with SHA256SUMS: one with the tarball alone (a pin needs
# nothing else) and one whose SHA256SUMS lies about it.
mkdir -p "$work/release/pinned/v$version" "$work/release/tampered/v$version"
cp "$work/release/v$version/$asset" "$work/release/pinned/v$version/"
cp "$work/release/v$version/$asset" "$work/release/tampered/v$version/"
echo "0000000000000000000000000000000000000000000000000000000000000000  $asset" >"$work/release/tampered/v$version/SHA256SUMS"

# 4a. The 3-shard pipeline installs from SHA256SUMS in every shard.
install_dir="$(make_project install)"
write_pipeline "$install_dir" e2e-install "include:
  - local: stockroom.gitlab-ci.yml"
PIPELINE_PATH="$PATH" run_and_check install-release "$install_dir" e2e-install --variable "STOCKROOM_POOL=$pool_url" \
  --variable "STOCKROOM_VERSION=$version" --variable "STOCKROOM_DOWNLOAD_URL=http://127.0.0.1:$http_port"
check "install-release: every shard installed $asset from the loopback release" \
  test "$(grep -c "stockroom: using .*/.stockroom/download-$version\." "$work/install-release.log")" -ge 3

# A pipeline whose job passes: two shards, each writes a marker file and
# prints a line that is not in its own source (script-42), so the log shows
# whether the script ran.
write_passing_pipeline() { # write_passing_pipeline DIR JOB
  cat >"$1/.gitlab-ci.yml" <<EOF
include:
  - local: stockroom.gitlab-ci.yml

$2:
  extends: .stockroom
  parallel: 2
  script:
    - echo "script-\$((6 * 7)) \$STOCKROOM_BUYER_ID"
    - echo "\$STOCKROOM_BUYER_ID" > "\$RESULTS/$2-\$CI_NODE_INDEX"
EOF
}
# pipeline NAME DIR ARGS...: gitlab-ci-local with PATH as it is (no
# stockroom), its log in $work/NAME.log; sets rc and results.
pipeline() {
  local name="$1" dir="$2"; shift 2
  results="$work/results-$name"
  mkdir -p "$results"
  rc=0
  (cd "$dir" && gitlab-ci-local --variable GITLAB_CI=true --variable "RESULTS=$results" \
    --variable "STOCKROOM_POOL=$pool_url" --variable "STOCKROOM_VERSION=$version" "$@") >"$work/$name.log" 2>&1 || rc=$?
  sed "s/^/  [$name] /" "$work/$name.log" | tail -n 40
}
# leased_count: how many datasets the pool has leased now.
leased_count() {
  curl -fsS "$pool_url/api/v1/datasets?status=leased" |
    python3 -c 'import json,sys; d=json.load(sys.stdin); print(len(d["datasets"] if isinstance(d, dict) else d))'
}

# 4b. Pinned by STOCKROOM_SHA256 (with STOCKROOM_TARGET: a pin is for one
# tarball, and without it the template takes the musl one): installed,
# leased, passed, released, from a release with no SHA256SUMS to fall back on.
pinned_dir="$(make_project pinned)"
write_passing_pipeline "$pinned_dir" e2e-pinned
pipeline install-pinned "$pinned_dir" --variable "STOCKROOM_DOWNLOAD_URL=http://127.0.0.1:$http_port/pinned" \
  --variable "STOCKROOM_SHA256=$asset_sha256" --variable "STOCKROOM_TARGET=$target"
check "install-pinned: the pipeline passed (gitlab-ci-local exit $rc)" \
  bash -c "[ $rc = 0 ] && grep -q 'PASS  e2e-pinned: \[1/2\]' '$work/install-pinned.log' && grep -q 'PASS  e2e-pinned: \[2/2\]' '$work/install-pinned.log'"
check "install-pinned: both shards installed the pinned $asset" \
  test "$(grep -c "stockroom: using .*/.stockroom/download-$version\..*/stockroom$" "$work/install-pinned.log")" -ge 2
check "install-pinned: the pinned install never asked for SHA256SUMS" \
  bash -c "! grep -q 'GET /pinned/v$version/SHA256SUMS' '$work/http.log'"
for i in 1 2; do
  pinned_id="$(cat "$results/e2e-pinned-$i" 2>/dev/null || echo none)"
  check "install-pinned: shard $i ran its script and released its dataset ($pinned_id)" \
    bash -c "grep -q 'script-42 $pinned_id' '$work/install-pinned.log' && [ \"\$1\" = consumed ]" _ "$(status_of "$pinned_id" 2>/dev/null || echo unknown)"
done
check "install-pinned: after_script left nothing in .stockroom/ ($(ls -A "$pinned_dir/.stockroom" 2>/dev/null | tr '\n' ' '))" \
  test -z "$(ls -A "$pinned_dir/.stockroom" 2>/dev/null)"

# 4c. Mismatches: the job fails in before_script with the template's message,
# its script never runs (no marker file, no script-42), nothing is leased and
# nothing downloaded is left.
leased_before="$(leased_count)"
mismatch() { # mismatch NAME WHAT GITLAB-CI-LOCAL-ARGS...
  local name="$1" what="$2"; shift 2
  local dir
  dir="$(make_project "$name")"
  write_passing_pipeline "$dir" "e2e-$name"
  pipeline "$name" "$dir" "$@"
  check "$name ($what): the pipeline failed (gitlab-ci-local exit $rc)" \
    bash -c "[ $rc != 0 ] && grep -q 'FAIL  e2e-$name: \[1/2\]' '$work/$name.log' && grep -q 'FAIL  e2e-$name: \[2/2\]' '$work/$name.log'"
  check "$name ($what): before_script says checksum mismatch for $asset" \
    grep -q "stockroom: checksum mismatch for $asset: expected" "$work/$name.log"
  check "$name ($what): the script never ran (no marker file, no script-42 in the log)" \
    bash -c "[ -z \"\$(ls -A '$results')\" ] && ! grep -q 'script-42' '$work/$name.log'"
  check "$name ($what): before_script leased nothing" \
    bash -c "grep -q 'before_script leased nothing; nothing to release' '$work/$name.log' && ! grep -q 'stockroom: leased' '$work/$name.log'"
  check "$name ($what): nothing downloaded is left ($(ls -A "$dir/.stockroom" 2>/dev/null | tr '\n' ' '))" \
    test -z "$(ls -A "$dir/.stockroom" 2>/dev/null)"
}
mismatch wrong-pin "a wrong STOCKROOM_SHA256" --variable "STOCKROOM_DOWNLOAD_URL=http://127.0.0.1:$http_port/pinned" \
  --variable "STOCKROOM_SHA256=$(printf '%s' "$asset_sha256" | tr '0-9a-f' '1-9a-f0')" --variable "STOCKROOM_TARGET=$target"
mismatch tampered-sums "a tampered SHA256SUMS" --variable "STOCKROOM_DOWNLOAD_URL=http://127.0.0.1:$http_port/tampered"
leased_after="$(leased_count)"
check "mismatches: they leased nothing ($leased_before datasets leased before, $leased_after after)" \
  test "$leased_after" = "$leased_before"
kill "$http_pid" 2>/dev/null || true

# 5. one script, two packagings
check "the component's scripts equal the include template's" python3 - "$templates" <<'EOF'
import sys, yaml
root = sys.argv[1]
plain = yaml.safe_load(open(f"{root}/stockroom.gitlab-ci.yml"))[".stockroom"]
spec, job = yaml.safe_load_all(open(f"{root}/templates/stockroom/template.yml"))
job = job[".stockroom"]
assert set(spec["spec"]["inputs"]) >= {"pool", "manifest", "version"}, spec
for part in ("before_script", "after_script"):
    assert plain[part] == job[part], part
EOF

echo "gitlab-templates: $passed passed, $failed failed"
[ "$failed" = 0 ]
