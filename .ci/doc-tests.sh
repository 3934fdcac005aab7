#!/usr/bin/env bash
# The docs' shell blocks, run as written against the demo pool
# (scripts/doc-tests.py says how blocks are marked). Uses the binaries
# `cargo test --workspace` built in target/debug; compiles nothing.
# Installs from Debian what a fresh machine lacks: jq (docs/sidecar.md uses it).
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
die() { echo "doc-tests: $*" >&2; exit 1; }

command -v python3 >/dev/null 2>&1 || die "python3 is missing"
if ! command -v jq >/dev/null 2>&1; then
  command -v apt-get >/dev/null 2>&1 || die "jq is missing and apt-get is not available to install it"
  apt-get update -qq || die "apt-get update failed"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq jq >/dev/null || die "apt-get install jq failed"
fi
# The runner's own guards (the demo's fixed ports, one run at a time).
python3 "$repo/scripts/test_doc_tests.py" || die "scripts/test_doc_tests.py failed"
# Bounded: the quickstart block is the longest (seconds); 10 minutes is a hang.
timeout 600 python3 "$repo/scripts/doc-tests.py" "$repo"
