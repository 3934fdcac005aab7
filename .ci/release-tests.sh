#!/usr/bin/env bash
# The release path end to end: scripts/dist.sh builds the assets once (a
# release build: minutes on two cores), python3's http.server serves them on
# loopback in the layout of docs/operations.md, install.sh installs from there
# into a fresh directory (and from the same layout as a file:// directory,
# without curl or wget), and the installed binaries run (--version, a demo
# pool and a lease from it). A SHA256SUMS that does not match the tarball must
# fail the install with nothing installed.
# Reuses dist/ when $STOCKROOM_DIST_REUSE=1 and the tarball is there.
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
cd "$repo"
die() { echo "release-tests: $*" >&2; exit 1; }
. "$repo/.ci/lib.sh"
for tool in python3 curl readelf sha256sum tar; do
  command -v "$tool" >/dev/null 2>&1 || die "required tool '$tool' is missing"
done

version="$(sed -n '/^\[workspace.package\]/,/^\[/s/^version = "\(.*\)"/\1/p' Cargo.toml)"
commit="$(git rev-parse --short=12 HEAD)"
if [ "${STOCKROOM_DIST_REUSE:-}" = 1 ] && ls dist/stockroom-"$version"-*.tar.gz >/dev/null 2>&1; then
  step "reusing dist/ for $version"
  commit='[0-9a-f]\{12\}' # built from some earlier commit
else
  step "scripts/dist.sh $version"
  bash scripts/dist.sh "$version"
fi
tarball="$(ls dist/stockroom-"$version"-*.tar.gz | head -n 1)"
asset="$(basename "$tarball")"
echo "release-tests: $asset is $(stat -c %s "$tarball") bytes"

work="$(mktemp -d)"
server_pid=""; pool_pid=""
cleanup() {
  for pid in $pool_pid $server_pid; do kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT

# BASE/vV/{asset,SHA256SUMS}, and a second BASE whose SHA256SUMS lies.
srv="$work/srv"
mkdir -p "$srv/good/v$version" "$srv/bad/v$version"
cp "$tarball" dist/SHA256SUMS "$srv/good/v$version/"
cp install.sh "$srv/"
cp "$tarball" "$srv/bad/v$version/"
# One hex digit changed: the tarball no longer matches.
awk '{ d = substr($1, 1, 1); s = (d == "0") ? "1" : "0"; print s substr($1, 2) "  " $2 }' dist/SHA256SUMS >"$srv/bad/v$version/SHA256SUMS"
! cmp -s dist/SHA256SUMS "$srv/bad/v$version/SHA256SUMS" || die "the bad SHA256SUMS is the same as the good one"

step "serving the assets on loopback"
serve_dir "$srv" "$work/server.log"
server_pid="$SERVE_PID"
port="$SERVE_PORT"
base="http://127.0.0.1:$port"
echo "release-tests: assets at $base"

step "install.sh from the served assets"
curl -fsSL "$base/install.sh" |
  STOCKROOM_INSTALL_DIR="$work/bin" sh -s -- --version "$version" --base-url "$base/good"
for bin in stockroom stockroom-pool; do
  [ -x "$work/bin/$bin" ] || die "install.sh did not install $bin"
  out="$("$work/bin/$bin" --version)"
  printf '%s\n' "$out" | grep -qx "$bin $version (commit $commit)" ||
    die "$bin --version printed '$out', expected '$bin $version (commit $commit)'"
  echo "release-tests: $out"
  if LC_ALL=C readelf -l "$work/bin/$bin" | grep -q 'Requesting program interpreter'; then
    die "installed $bin is dynamically linked"
  fi
done

# Without STOCKROOM_INSTALL_DIR it goes to ~/.local/bin.
HOME="$work/home" sh "$srv/install.sh" --version "v$version" --base-url "$base/good"
[ -x "$work/home/.local/bin/stockroom" ] || die "install.sh without STOCKROOM_INSTALL_DIR did not install into ~/.local/bin"

step "install.sh from a file:// base: a mirror directory, no web server"
# The layout of docs/operations.md in a plain directory; with PATH holding no
# curl or wget, since install.sh copies file:// URLs itself.
nonet="$work/nonet-bin"
mkdir -p "$nonet"
for tool in sh cp mkdir mktemp rm mv chmod tar gzip awk cut sha256sum uname cat; do
  ln -s "$(command -v "$tool")" "$nonet/$tool"
done
PATH="$nonet" STOCKROOM_INSTALL_DIR="$work/file-bin" sh "$srv/install.sh" --version "$version" --base-url "file://$srv/good"
out="$("$work/file-bin/stockroom" --version)"
printf '%s\n' "$out" | grep -qx "stockroom $version (commit $commit)" ||
  die "stockroom installed from file:// printed '$out', expected 'stockroom $version (commit $commit)'"
echo "release-tests: from file://$srv/good: $out"
set +e
PATH="$nonet" STOCKROOM_INSTALL_DIR="$work/file-bad-bin" sh "$srv/install.sh" --version "$version" --base-url "file://$srv/bad" 2>"$work/file-bad.err"
rc=$?
set -e
[ "$rc" -ne 0 ] && grep -q "checksum mismatch for $asset" "$work/file-bad.err" ||
  { cat "$work/file-bad.err"; die "install.sh from a file:// base did not refuse a SHA256SUMS that does not match"; }
[ ! -e "$work/file-bad-bin/stockroom" ] || die "install.sh installed from file:// despite a checksum mismatch"
echo "release-tests: a file:// base whose SHA256SUMS does not match installs nothing"

step "the installed binaries: a demo pool and a lease from it"
"$work/bin/stockroom-pool" demo --listen 127.0.0.1:0 --ready-file "$work/pool.addr" >"$work/pool.out" 2>"$work/pool.log" &
pool_pid=$!
for _ in $(seq 1 600); do
  [ -s "$work/pool.addr" ] && break
  kill -0 "$pool_pid" 2>/dev/null || die "the installed stockroom-pool exited: $(cat "$work/pool.log")"
  sleep 0.1
done
[ -s "$work/pool.addr" ] || die "the installed stockroom-pool did not start within 60 s: $(cat "$work/pool.log")"
STOCKROOM_POOL="http://$(cat "$work/pool.addr")" "$work/bin/stockroom" run --manifest examples/stockroom.toml \
  --shard-index 0 --shard-total 1 -- sh -c 'test -n "$STOCKROOM_BUYER_CUSTOMER_ID" && test -n "$STOCKROOM_ORDERS_1_ORDER_ID"' ||
  die "the installed stockroom could not lease from the installed stockroom-pool"
echo "release-tests: leased a buyer and two orders with the installed binaries"

step "a SHA256SUMS that does not match must install nothing"
set +e
STOCKROOM_INSTALL_DIR="$work/bad-bin" sh "$srv/install.sh" --version "$version" --base-url "$base/bad" 2>"$work/bad.err"
rc=$?
set -e
cat "$work/bad.err"
[ "$rc" -ne 0 ] || die "install.sh accepted a tarball that does not match SHA256SUMS"
grep -q "checksum mismatch for $asset" "$work/bad.err" || die "install.sh failed, but not with a checksum mismatch"
if [ -e "$work/bad-bin" ] && [ -n "$(ls -A "$work/bad-bin")" ]; then
  die "install.sh left files after a checksum mismatch: $(ls -A "$work/bad-bin")"
fi

step "release tests passed"
