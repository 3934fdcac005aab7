#!/usr/bin/env bash
# What the per-test agent's tests need before `cargo test --workspace`:
# tests/tests/agent.rs drives the agent with curl and python3 clients (real
# processes), and docs/per-test.md's example is curl. Installs curl from
# Debian when missing; python3 must be there (the machine's).
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
die() { echo "agent: $*" >&2; exit 1; }
. "$repo/.ci/lib.sh"
command -v curl >/dev/null 2>&1 || apt_install curl
command -v python3 >/dev/null 2>&1 || die "python3 is missing: the agent's end-to-end tests run python3 clients"
echo "agent: curl $(curl --version | head -n 1 | cut -d' ' -f2), $(python3 --version)"
