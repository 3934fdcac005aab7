#!/usr/bin/env bash
# deploy/ checked as far as this machine allows (containers cannot run here):
#   - deploy/Containerfile built with buildah (Debian's package; vfs storage
#     and chroot isolation in a private root); the image's user, volume and
#     entrypoint checked, its stockroom-pool copied back out, compared with the
#     release tarball's, and run;
#   - the systemd unit verified by systemd-analyze and its ExecStart started;
#   - the compose file validated against the Compose Specification's JSON
#     schema (PyPI check-jsonschema, which vendors it), a broken copy
#     refused, and its two replica commands started on the machine's
#     PostgreSQL (a database of their own), both ready, sharing one store;
#   - the Kubernetes manifests validated (PyPI kubernetes-validate, strict),
#     a broken copy refused, and the Deployment's args started.
# Needs dist/ from .ci/release-tests.sh and STOCKROOM_TEST_POSTGRES.
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
cd "$repo"
die() { echo "deploy-tests: $*" >&2; exit 1; }
. "$repo/.ci/lib.sh"
pg="${STOCKROOM_TEST_POSTGRES:?set STOCKROOM_TEST_POSTGRES (e.g. postgres://postgres@127.0.0.1:5432/test)}"
CI_TOKEN=ci-token-change-me       # deploy/stockroom-pool.toml pins their digests
ADMIN_TOKEN=admin-token-change-me

step "tools"
command -v buildah >/dev/null 2>&1 || apt_install buildah
command -v systemd-analyze >/dev/null 2>&1 || apt_install systemd
command -v psql >/dev/null 2>&1 || apt_install postgresql-client
command -v curl >/dev/null 2>&1 || apt_install curl
pip_venv deploy-venv "kubernetes-validate==1.37.0" "check-jsonschema==0.39.0" "pyyaml==6.0.3"
venv="$CI_TOOLS/deploy-venv"
echo "$(buildah --version), $(systemd-analyze --version | head -n 1), kubernetes-validate $("$venv/bin/kubernetes-validate" --version), $("$venv/bin/check-jsonschema" --version)"

version="$(sed -n '/^\[workspace.package\]/,/^\[/s/^version = "\(.*\)"/\1/p' Cargo.toml)"
tarball="$(ls dist/stockroom-"$version"-x86_64-unknown-linux-*.tar.gz 2>/dev/null | head -n 1)"
[ -n "$tarball" ] || die "no dist/stockroom-$version-x86_64-unknown-linux-*.tar.gz: run .ci/release-tests.sh (scripts/dist.sh) first"
target="$(basename "$tarball" .tar.gz)"; target="${target#stockroom-"$version"-}"

work="$(mktemp -d)"
pids=()
db=""
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; done
  if [ -n "$db" ]; then psql -q "$pg" -c "DROP DATABASE IF EXISTS $db" >/dev/null 2>&1 || true; fi
  if [ -n "${B:-}" ]; then $B rm --all >/dev/null 2>&1 || true; $B rmi --all --force >/dev/null 2>&1 || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

step "deploy/Containerfile with buildah, no build arguments ($target)"
# The default build takes dist/image/stockroom-VERSION.tar.gz, the Linux
# tarball dist.sh linked there, musl or static glibc.
[ "$(stat -c %i "dist/image/stockroom-$version.tar.gz" 2>/dev/null)" = "$(stat -c %i "$tarball")" ] ||
  cmp -s "dist/image/stockroom-$version.tar.gz" "$tarball" ||
  die "dist/image/stockroom-$version.tar.gz is not $tarball: run scripts/dist.sh $version again"
B="buildah --root $work/storage --runroot $work/run --storage-driver vfs"
$B bud --isolation chroot -f deploy/Containerfile -t localhost/stockroom-pool:ci . >"$work/build.log" 2>&1 ||
  { cat "$work/build.log"; die "buildah bud failed"; }
config="$($B inspect --format '{{.OCIv1.Config.User}}|{{.OCIv1.Config.Volumes}}|{{.OCIv1.Config.Entrypoint}}|{{.OCIv1.Config.Cmd}}' localhost/stockroom-pool:ci)"
echo "image config: $config"
[ "$config" = "65532:65532|map[/data:{}]|[/usr/local/bin/stockroom-pool]|[--config /etc/stockroom/stockroom-pool.toml]" ] ||
  die "the image's user, volume, entrypoint or command is not the expected one"
ctr="$($B from localhost/stockroom-pool:ci)"
mnt="$($B mount "$ctr")"
[ "$(stat -c %u:%g "$mnt/data")" = 65532:65532 ] || die "/data in the image is not owned by the pool's user"
[ -z "$(ls -A "$mnt" | grep -vx -e data -e usr)" ] || die "the image holds more than /data and /usr: $(ls -A "$mnt")"
mkdir -p "$work/bin" "$work/tar"
cp "$mnt/usr/local/bin/stockroom-pool" "$work/bin/stockroom-pool"
$B umount "$ctr" >/dev/null
tar -xzf "$tarball" -C "$work/tar"
cmp "$work/bin/stockroom-pool" "$work/tar/stockroom-$version-$target/stockroom-pool" ||
  die "the image's stockroom-pool differs from the release tarball's"
# The same image from the tarball named by TARBALL (a release asset's way).
$B bud --isolation chroot --build-arg "VERSION=$version" --build-arg "TARBALL=$(basename "$tarball")" \
  -f deploy/Containerfile -t localhost/stockroom-pool:tarball . >"$work/build-tarball.log" 2>&1 ||
  { cat "$work/build-tarball.log"; die "buildah bud --build-arg TARBALL=$(basename "$tarball") failed"; }
ctr2="$($B from localhost/stockroom-pool:tarball)"
mnt2="$($B mount "$ctr2")"
cmp "$mnt2/usr/local/bin/stockroom-pool" "$work/bin/stockroom-pool" ||
  die "the image built with TARBALL=$(basename "$tarball") holds another stockroom-pool"
$B umount "$ctr2" >/dev/null
pool="$work/bin/stockroom-pool"
"$pool" --version
echo "deploy-tests: the image holds the release's stockroom-pool ($(stat -c %s "$pool") bytes), user 65532, volume /data"

# start NAME ARGS...: runs the pool with a ready file; waits until it listens.
start() {
  local name="$1"; shift
  "$@" --listen 127.0.0.1:0 --ready-file "$work/$name.addr" >"$work/$name.log" 2>&1 &
  pids+=("$!")
  local pid=$!
  for _ in $(seq 1 300); do
    [ -s "$work/$name.addr" ] && return 0
    kill -0 "$pid" 2>/dev/null || { cat "$work/$name.log"; die "$name exited before it was ready"; }
    sleep 0.1
  done
  cat "$work/$name.log"; die "$name was not ready within 30 s"
}
url() { echo "http://$(tr -d '[:space:]' <"$work/$1.addr")"; }
code() { curl -s -o /dev/null -w '%{http_code}' "$@"; }
stop() { # stop NAME: SIGTERM, which must end it with 0
  local pid="${pids[-1]}"
  kill -TERM "$pid"
  local rc=0; wait "$pid" || rc=$?
  unset 'pids[-1]'
  [ "$rc" = 0 ] || { cat "$work/$1.log"; die "$1 exited $rc on SIGTERM, expected 0"; }
}
config_copy="$work/stockroom-pool.toml"
cp deploy/stockroom-pool.toml "$config_copy"

step "the systemd unit: systemd-analyze verify, then its ExecStart"
unit="$work/units/stockroom-pool.service"
mkdir -p "$work/units" "$work/state"
# verify resolves ExecStart's binary: point it at the one from the image.
sed "s#/usr/local/bin/stockroom-pool#$pool#" deploy/stockroom-pool.service >"$unit"
SYSTEMD_LOG_LEVEL=warning systemd-analyze verify "$unit" 2>&1 | tee "$work/verify.log"
grep -qi 'stockroom-pool.service' "$work/verify.log" && die "systemd-analyze verify reported problems in the unit"
exec_start="$(sed -n 's/^ExecStart=//p' deploy/stockroom-pool.service)"
[ -n "$exec_start" ] || die "the unit has no ExecStart"
read -r -a argv <<<"$exec_start"
for i in "${!argv[@]}"; do
  argv[i]="${argv[i]//\/usr\/local\/bin\/stockroom-pool/$pool}"
  argv[i]="${argv[i]//\/etc\/stockroom\/stockroom-pool.toml/$config_copy}"
  argv[i]="${argv[i]//\/var\/lib\/stockroom-pool/$work/state}"
done
echo "ExecStart here: ${argv[*]}"
start systemd "${argv[@]}"
[ "$(code "$(url systemd)/readyz")" = 200 ] || die "the unit's pool is not ready"
[ "$(code "$(url systemd)/api/v1/catalog")" = 401 ] || die "the unit's pool answers without a token"
[ "$(code -H "authorization: Bearer $CI_TOKEN" "$(url systemd)/api/v1/catalog")" = 200 ] || die "the unit's pool refuses the ci token"
[ -f "$work/state/stockroom.db" ] || die "the unit's store is not in its state directory"
stop systemd
echo "deploy-tests: the unit's ExecStart serves with tokens, its store in the state directory, and stops cleanly on SIGTERM"

step "the compose file: the Compose Specification's schema"
# The schema check-jsonschema vendors (no network): what `docker compose` and
# `podman compose` accept, field by field.
"$venv/bin/check-jsonschema" --builtin-schema vendor.compose-spec deploy/compose.yaml ||
  die "deploy/compose.yaml does not follow the Compose Specification's schema"
sed 's/^    ports: \["127.0.0.1:7878:7878"\]$/    ports: 5/' deploy/compose.yaml >"$work/broken-compose.yaml"
! cmp -s deploy/compose.yaml "$work/broken-compose.yaml" || die "the broken copy of deploy/compose.yaml is not broken"
if "$venv/bin/check-jsonschema" --builtin-schema vendor.compose-spec "$work/broken-compose.yaml" >"$work/broken-compose.log" 2>&1; then
  die "check-jsonschema accepted a compose file whose pool-a ports is 5: this check could not fail"
fi
grep -q "ports: 5 is not of type 'array'" "$work/broken-compose.log" || { cat "$work/broken-compose.log"; die "the broken compose file was refused, but not for its ports"; }
echo "deploy-tests: deploy/compose.yaml follows the Compose Specification; a copy with 'ports: 5' is refused"

step "the compose file's replicas on one PostgreSQL"
db="stockroom_deploy_$$"
psql -q "$pg" -c "CREATE DATABASE $db" >/dev/null || die "cannot create database $db at $pg"
store="${pg%/*}/$db"
"$venv/bin/python3" - deploy/compose.yaml >"$work/compose.cmds" <<'EOF'
import sys, yaml
compose = yaml.safe_load(open(sys.argv[1]))
for name in ("pool-a", "pool-b"):
    service = compose["services"][name]
    assert service["build"]["dockerfile"] == "deploy/Containerfile", name
    print(name, "\t".join(service["command"]))
EOF
while IFS=' ' read -r name cmd; do
  IFS=$'\t' read -r -a argv <<<"$cmd"
  for i in "${!argv[@]}"; do
    argv[i]="${argv[i]//\/etc\/stockroom\/stockroom-pool.toml/$config_copy}"
    argv[i]="${argv[i]//postgres:\/\/stockroom@postgres:5432\/stockroom/$store}"
  done
  echo "$name here: stockroom-pool ${argv[*]}"
  start "$name" "$pool" "${argv[@]}"
done <"$work/compose.cmds"
for name in pool-a pool-b; do
  [ "$(code "$(url "$name")/readyz")" = 200 ] || die "$name is not ready"
done
# A dataset registered through replica a is in stock at replica b.
curl -fsS -H "authorization: Bearer $ADMIN_TOKEN" -H 'content-type: application/json' \
  -d '{"type": "customer", "state": "active", "data": {"customer_id": "K1"}, "entities": ["customer:K1"]}' \
  "$(url pool-a)/api/v1/datasets" >/dev/null || die "registering a dataset through pool-a failed"
curl -fsS -H "authorization: Bearer $CI_TOKEN" "$(url pool-b)/api/v1/datasets?type=customer" | grep -q '"K1"' ||
  die "pool-b does not see the dataset registered through pool-a"
stop pool-b; stop pool-a
echo "deploy-tests: both compose replicas served one PostgreSQL store"

step "the Kubernetes manifests"
manifests=deploy/kubernetes/stockroom-pool.yaml
"$venv/bin/kubernetes-validate" --strict --quiet "$manifests" || die "kubernetes-validate rejected $manifests"
sed 's/containerPort: 7878/containerPort: "seventy"/' "$manifests" >"$work/broken.yaml"
if "$venv/bin/kubernetes-validate" --strict --quiet "$work/broken.yaml" >/dev/null 2>&1; then
  die "kubernetes-validate accepted a broken copy: this check could not fail"
fi
"$venv/bin/python3" - "$manifests" "$work/k8s" <<'EOF'
import os, sys, yaml
docs = {d["kind"]: d for d in yaml.safe_load_all(open(sys.argv[1])) if d}
out = sys.argv[2]
os.makedirs(out, exist_ok=True)
open(f"{out}/stockroom-pool.toml", "w").write(docs["ConfigMap"]["data"]["stockroom-pool.toml"])
args = docs["Deployment"]["spec"]["template"]["spec"]["containers"][0]["args"]
open(f"{out}/args", "w").write("\t".join(args) + "\n")
EOF
IFS=$'\t' read -r -a argv <"$work/k8s/args"
for i in "${!argv[@]}"; do
  argv[i]="${argv[i]//\/etc\/stockroom\/stockroom-pool.toml/$work/k8s/stockroom-pool.toml}"
  argv[i]="${argv[i]//\$(STOCKROOM_STORE)/sqlite://$work/k8s/stockroom.db}"
done
start k8s "$pool" "${argv[@]}"
[ "$(code "$(url k8s)/readyz")" = 200 ] && [ "$(code "$(url k8s)/healthz")" = 200 ] || die "the Deployment's probes would fail"
[ "$(code -H "authorization: Bearer $CI_TOKEN" "$(url k8s)/api/v1/catalog")" = 200 ] || die "the ConfigMap's ci token is refused"
stop k8s
echo "deploy-tests: manifests valid, the Deployment's args and ConfigMap serve and pass its probes"

step "deploy tests passed"
