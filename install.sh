#!/bin/sh
# Installs `stockroom` and `stockroom-pool` from the release assets:
#   curl -fsSL URL/install.sh | sh -s -- --version V [--base-url BASE] [--target TRIPLE]
# Downloads BASE/vV/SHA256SUMS and BASE/vV/stockroom-V-TARGET.tar.gz, checks
# the tarball's SHA-256 against SHA256SUMS, and only then installs both
# binaries into $STOCKROOM_INSTALL_DIR, else ~/.local/bin. On any mismatch or
# failure nothing is installed. POSIX sh; needs curl or wget (not for a
# file:// BASE), tar, gzip, and sha256sum or shasum. See docs/operations.md
# ("Installing stockroom").
set -eu

DEFAULT_BASE_URL="https://example.invalid/stockroom/releases/download"

say() { printf 'install.sh: %s\n' "$*" >&2; }
die() { say "$*"; exit 1; }
usage() {
  say "usage: install.sh --version V [--base-url BASE] [--target TRIPLE]"
  exit 64
}

version=""
base_url="${STOCKROOM_BASE_URL:-$DEFAULT_BASE_URL}"
target=""
while [ $# -gt 0 ]; do
  case "$1" in
    --version) [ $# -ge 2 ] || usage; version="$2"; shift 2 ;;
    --version=*) version="${1#*=}"; shift ;;
    --base-url) [ $# -ge 2 ] || usage; base_url="$2"; shift 2 ;;
    --base-url=*) base_url="${1#*=}"; shift ;;
    --target) [ $# -ge 2 ] || usage; target="$2"; shift 2 ;;
    --target=*) target="${1#*=}"; shift ;;
    -h|--help) usage ;;
    *) say "unknown argument: $1"; usage ;;
  esac
done
[ -n "$version" ] || { say "--version is required"; usage; }
version="${version#v}"
base_url="${base_url%/}"
dest="${STOCKROOM_INSTALL_DIR:-${HOME:?HOME is not set; set STOCKROOM_INSTALL_DIR}/.local/bin}"

# Static Linux builds are musl where the release has them, else static glibc.
if [ -z "$target" ]; then
  os="$(uname -s)"; arch="$(uname -m)"
  case "$os-$arch" in
    Linux-x86_64|Linux-amd64) candidates="x86_64-unknown-linux-musl x86_64-unknown-linux-gnu" ;;
    Linux-aarch64|Linux-arm64) candidates="aarch64-unknown-linux-musl aarch64-unknown-linux-gnu" ;;
    Darwin-x86_64) candidates="x86_64-apple-darwin" ;;
    Darwin-arm64) candidates="aarch64-apple-darwin" ;;
    *) die "no release for $os-$arch" ;;
  esac
else
  candidates="$target"
fi

# A file:// base (a mirror directory) is copied, so it needs neither curl
# nor wget (wget cannot read file:// at all).
case "$base_url" in
  file://*)
    fetch() { cp "${1#file://}" "$2"; } ;;
  *)
    if command -v curl >/dev/null 2>&1; then
      fetch() { curl -fsSL --retry 3 -o "$2" "$1"; }
    elif command -v wget >/dev/null 2>&1; then
      fetch() { wget -q -O "$2" "$1"; }
    else
      die "neither curl nor wget is installed"
    fi ;;
esac
if command -v sha256sum >/dev/null 2>&1; then
  sha256() { sha256sum "$1" | cut -d' ' -f1; }
elif command -v shasum >/dev/null 2>&1; then
  sha256() { shasum -a 256 "$1" | cut -d' ' -f1; }
else
  die "neither sha256sum nor shasum is installed"
fi

tmp="$(mktemp -d 2>/dev/null || mktemp -d -t stockroom)"
trap 'rm -rf "$tmp"' EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

release="$base_url/v$version"
fetch "$release/SHA256SUMS" "$tmp/SHA256SUMS" || die "cannot download $release/SHA256SUMS"

asset=""; expected=""
for t in $candidates; do
  name="stockroom-$version-$t.tar.gz"
  sum="$(awk -v a="$name" '$2 == a || $2 == "*" a { print $1; exit }' "$tmp/SHA256SUMS")"
  if [ -n "$sum" ]; then asset="$name"; expected="$sum"; break; fi
done
[ -n "$asset" ] || die "$release/SHA256SUMS lists no asset for: $candidates"

fetch "$release/$asset" "$tmp/$asset" || die "cannot download $release/$asset"
actual="$(sha256 "$tmp/$asset")"
if [ "$actual" != "$expected" ]; then
  die "checksum mismatch for $asset: SHA256SUMS says $expected, the download is $actual; nothing installed"
fi

mkdir "$tmp/x"
tar -xzf "$tmp/$asset" -C "$tmp/x" || die "cannot unpack $asset"
dir="$tmp/x/${asset%.tar.gz}"
for bin in stockroom stockroom-pool; do
  [ -f "$dir/$bin" ] || die "$asset has no $bin; nothing installed"
done

mkdir -p "$dest" || die "cannot create $dest"
# Copy both next to their final names first, then rename: a running
# stockroom is never overwritten in place, and a failed copy installs nothing.
for bin in stockroom stockroom-pool; do
  cp "$dir/$bin" "$dest/.$bin.new.$$" && chmod 0755 "$dest/.$bin.new.$$" ||
    { rm -f "$dest/.stockroom.new.$$" "$dest/.stockroom-pool.new.$$"; die "cannot write to $dest; nothing installed"; }
done
for bin in stockroom stockroom-pool; do
  mv -f "$dest/.$bin.new.$$" "$dest/$bin"
done

say "installed $("$dest/stockroom" --version) and stockroom-pool into $dest"
case ":${PATH:-}:" in
  *":$dest:"*) ;;
  *) say "$dest is not on PATH; add it: export PATH=\"$dest:\$PATH\"" ;;
esac
