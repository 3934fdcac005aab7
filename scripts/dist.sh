#!/usr/bin/env bash
# scripts/dist.sh VERSION: the release assets for this host (or for
# $STOCKROOM_DIST_TARGET, a Rust target installed in the toolchain):
#   dist/stockroom-VERSION-TARGET.tar.gz   stockroom, stockroom-pool, LICENSE, README.md
#                                          in a directory stockroom-VERSION-TARGET/
#   dist/SHA256SUMS                        one line per tarball of VERSION in dist/
#   dist/image/stockroom-VERSION.tar.gz    for a Linux target, a link to its tarball:
#                                          what deploy/Containerfile builds by default
# Linux binaries are static. With the host's musl target installed
# (`rustup target add x86_64-unknown-linux-musl`), that is the target: musl
# links statically by default and its resolver needs nothing at run time.
# Without it, a static glibc build of the gnu target (crt-static): as
# portable across Linux distributions, but glibc resolves host names through
# NSS modules it loads at run time, so names beyond /etc/hosts and DNS (e.g.
# LDAP or mDNS hosts) need the same glibc version as the build; IP addresses
# and plain DNS names work everywhere. macOS binaries link libSystem, the only
# supported way there. The build fails if a Linux binary is not static.
# Build once per version: a release build takes minutes on two cores.
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
cd "$repo"
die() { echo "dist: $*" >&2; exit 1; }

[ $# -eq 1 ] || die "usage: scripts/dist.sh VERSION   (e.g. 0.2.0)"
version="${1#v}"
printf '%s\n' "$version" | grep -Eq '^[0-9]+\.[0-9]+\.[0-9]+([-+][0-9A-Za-z.+-]+)?$' ||
  die "VERSION must look like 1.2.3 or 1.2.3-rc.1, got '$1'"

# --version prints the package version: the release must be that version.
crate_version="$(sed -n '/^\[workspace.package\]/,/^\[/s/^version = "\(.*\)"/\1/p' Cargo.toml)"
[ "$version" = "$crate_version" ] ||
  die "VERSION $version is not the workspace version in Cargo.toml ($crate_version); set that first"

host="$(rustc -vV | sed -n 's/^host: //p')"
[ -n "$host" ] || die "cannot tell the host target from 'rustc -vV'"
target="${STOCKROOM_DIST_TARGET:-}"
if [ -z "$target" ]; then
  target="$host"
  case "$host" in
    *-unknown-linux-gnu)
      musl="${host%-gnu}-musl"
      if rustup target list --installed 2>/dev/null | grep -qx "$musl"; then target="$musl"; fi ;;
  esac
fi
rustflags="${RUSTFLAGS:-}"
case "$target" in
  *-linux-musl) linkage="static (musl)" ;;
  *-linux-gnu) linkage="static (glibc, crt-static)"; rustflags="$rustflags -C target-feature=+crt-static" ;;
  *-apple-darwin) linkage="dynamic (libSystem)" ;;
  *) die "no release recipe for target $target" ;;
esac

commit="$(git rev-parse --short=12 HEAD 2>/dev/null || echo unknown)"
echo "dist: stockroom $version ($commit) for $target, $linkage"
# --target keeps RUSTFLAGS off build scripts and proc macros (they run on the host).
STOCKROOM_COMMIT="$commit" RUSTFLAGS="$rustflags" \
  cargo build --release --locked --target "$target" -p stockroom -p stockroom-pool

name="stockroom-$version-$target"
out="$repo/dist"
stage="$out/$name"
rm -rf "$stage"
mkdir -p "$stage"
for bin in stockroom stockroom-pool; do
  built="$repo/target/$target/release/$bin"
  case "$target" in
    *-linux-*)
      # A dynamic executable has a program interpreter (ld-linux).
      if LC_ALL=C readelf -l "$built" | grep -q 'Requesting program interpreter'; then
        die "$built is dynamically linked; expected a static binary"
      fi ;;
  esac
  install -m 0755 "$built" "$stage/$bin"
done
install -m 0644 LICENSE README.md "$stage/"
if tar --version 2>/dev/null | grep -q 'GNU tar'; then
  # Reproducible archive: fixed owner, order and times.
  tar --sort=name --owner=0 --group=0 --numeric-owner --mtime="@$(git log -1 --format=%ct 2>/dev/null || echo 0)" \
    -C "$out" -cf - "$name" | gzip -9n >"$out/$name.tar.gz"
else # macOS: bsdtar
  tar -C "$out" -cf - "$name" | gzip -9n >"$out/$name.tar.gz"
fi
rm -rf "$stage"
case "$target" in
  *-linux-*)
    # The image's default input, whichever Linux target this was; outside
    # dist/*.tar.gz, so neither SHA256SUMS nor the release workflows take it.
    mkdir -p "$out/image"
    ln -f "$out/$name.tar.gz" "$out/image/stockroom-$version.tar.gz" 2>/dev/null ||
      cp "$out/$name.tar.gz" "$out/image/stockroom-$version.tar.gz" ;;
esac
if command -v sha256sum >/dev/null 2>&1; then sums="sha256sum"; else sums="shasum -a 256"; fi
(cd "$out" && $sums "stockroom-$version-"*.tar.gz >SHA256SUMS)
ls -l "$out/$name.tar.gz"
cat "$out/SHA256SUMS"
