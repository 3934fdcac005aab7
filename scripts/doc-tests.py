#!/usr/bin/env python3
"""Runs the shell blocks of README.md and docs/ as a user would paste them.

Every ```sh, ```bash, ```shell or ```console block must follow a marker
comment on the line before it (blank lines between are allowed):

    <!-- doc-test -->                      run it; it must exit 0
    <!-- doc-test exit=65 expect="a:1:2" --> exit code and lines to find
    <!-- doc-test pool -->                 a long-running demo pool: started
                                           first, in the background, kept until
                                           the end, ready when /readyz answers
    <!-- illustration: WHY -->             not run (needs npm, a CI, ...)

`expect` is a regular expression searched in the block's stdout and stderr
together; it may be given several times. A ```toml (or any) block marked
`<!-- doc-test file=NAME -->` is written to NAME in the work directory, for
later blocks to use. A block without a marker fails the run, so a new
command in the docs is either run here or said to be an illustration.

Blocks run with `bash -e -o pipefail` in one shared work directory holding
symbolic links to the repository's `examples/`, `target/` and `clients/`, with
target/debug first on PATH and without any CI's or Stockroom's variables
from the environment (a user's terminal has none). `cargo run [-q] -p X --
ARGS` runs target/debug/X ARGS and `cargo build -p X` checks that it exists:
these are the binaries `cargo test --workspace` built before this runs, so
nothing is compiled here; any other cargo command fails the block.

The demo pool the blocks talk to listens on its defaults, 127.0.0.1:7878
and its shop API on 127.0.0.1:7879, the addresses the docs name. One run at
a time holds them: a run waits (up to DOC_TESTS_LOCK_WAIT seconds, default
300) for another one on this machine to finish, then fails at once, naming
the port and what listens on it, when anything else holds one of them.

Usage: doc-tests.py REPO  (docs/benchmarks.md is skipped: its blocks are
benchmarks run by hand on a quiet machine, as that page says).
"""

import fcntl
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
import urllib.request
from pathlib import Path

SHELL_LANGS = {"sh", "bash", "shell", "console"}
SKIPPED_FILES = {"docs/benchmarks.md"}
# Markers and fences may be indented (blocks inside list items).
MARKER = re.compile(r"^\s*<!--\s*(doc-test|illustration)\b:?\s*(.*?)\s*-->\s*$")
FENCE = re.compile(r"^\s*```(\S*)\s*$")
DEMO_POOL = "http://127.0.0.1:7878"
# The demo's own defaults (`stockroom-pool demo`): the pool and its shop API.
DEMO_PORTS = (7878, 7879)
# One doc-test run at a time on a machine: the ports are fixed.
DEMO_LOCK = Path(tempfile.gettempdir()) / "stockroom-doc-tests-demo.lock"
DEFAULT_TIMEOUT = 120
# A user's terminal has none of these; the runner's CI has some.
CLEARED_ENV = re.compile(
    r"^(STOCKROOM_.*|GITHUB_.*|GITLAB_CI|CI_.*|JENKINS_URL|BUILD_ID|CIRCLECI|CIRCLE_.*|"
    r"BUILDKITE.*|TF_BUILD|SYSTEM_.*|AGENT_.*|RUNNER_.*)$"
)

CARGO_SHIM = r"""#!/bin/sh
# doc-tests: the binaries `cargo test --workspace` built; nothing is compiled.
bin="$DOC_TESTS_BIN"
cmd=""; pkgs=""
while [ $# -gt 0 ]; do
  case "$1" in
    -q|--quiet) ;;
    run|build) cmd="$1" ;;
    -p|--package) shift; pkgs="$pkgs $1" ;;
    --) shift; break ;;
    *) echo "doc-tests: 'cargo $*' is not supported here" >&2; exit 97 ;;
  esac
  shift
done
for p in $pkgs; do
  [ -x "$bin/$p" ] || { echo "doc-tests: $bin/$p is missing; run cargo test --workspace first" >&2; exit 97; }
done
case "$cmd" in
  build) exit 0 ;;
  run) set -- $pkgs "$@"; p="$1"; shift; exec "$bin/$p" "$@" ;;
  *) echo "doc-tests: only 'cargo run' and 'cargo build' are supported" >&2; exit 97 ;;
esac
"""


class Block:
    def __init__(self, path, line, lang, text, kind, attrs):
        self.path, self.line, self.lang, self.text = path, line, lang, text
        self.kind, self.attrs = kind, attrs

    @property
    def where(self):
        return f"{self.path}:{self.line}"

    def opt(self, name, default=None):
        values = [v for k, v in self.attrs if k == name]
        return values[-1] if values else default

    def expects(self):
        return [v for k, v in self.attrs if k == "expect"]

    def flag(self, name):
        return any(k == name for k, _ in self.attrs)


def parse_attrs(text):
    attrs = []
    for word in shlex.split(text):
        key, sep, value = word.partition("=")
        attrs.append((key, value if sep else ""))
    return attrs


def blocks_of(repo, rel):
    lines = (repo / rel).read_text().splitlines()
    out, errors, i, marker = [], [], 0, None
    while i < len(lines):
        m = MARKER.match(lines[i])
        if m:
            marker = (m.group(1), m.group(2), i + 1)
            i += 1
            continue
        f = FENCE.match(lines[i])
        if f:
            lang, start = f.group(1), i + 1
            j = i + 1
            while j < len(lines) and not lines[j].lstrip().startswith("```"):
                j += 1
            text = textwrap.dedent("\n".join(lines[i + 1 : j])) + "\n"
            if marker:
                kind, rest, _ = marker
                attrs = parse_attrs(rest) if kind == "doc-test" else [("why", rest)]
                if kind == "illustration" and not rest:
                    errors.append(f"{rel}:{start}: an illustration marker says why it is not run")
                out.append(Block(rel, start, lang, text, kind, attrs))
            elif lang in SHELL_LANGS:
                errors.append(
                    f"{rel}:{start}: a ```{lang} block without a marker: add <!-- doc-test ... --> "
                    "to run it here, or <!-- illustration: WHY --> (see scripts/doc-tests.py)"
                )
            marker = None
            i = j + 1
            continue
        if lines[i].strip():
            marker = None
        i += 1
    return out, errors


def doc_files(repo):
    files = ["README.md"] + sorted(
        str(p.relative_to(repo)) for p in (repo / "docs").rglob("*.md")
    )
    return [f for f in files if f not in SKIPPED_FILES]


def wait_ready(url, deadline, proc, log):
    """Ready when url answers /readyz and the pool in proc announced that url in its log:
    then it is this run's pool that answers, not one started meanwhile by someone else."""
    announced = f"Stockroom demo pool: {url}"
    while time.time() < deadline:
        if proc.poll() is not None:
            return f"exited {proc.returncode} before it was ready"
        if announced not in log.read_text(errors="replace"):
            time.sleep(0.1)
            continue
        try:
            with urllib.request.urlopen(url + "/readyz", timeout=2) as answer:
                if answer.status == 200:
                    return None
        except OSError:
            pass
        time.sleep(0.1)
    return f"not ready at {url}/readyz within the deadline"


def port_in_use(port, host="127.0.0.1"):
    """Whether binding host:port fails, as the pool's own bind would."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        # As the pool binds (SO_REUSEADDR): a closed connection's TIME_WAIT is no obstacle.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError:
            return True
    return False


def listener_of(port):
    """What listens on the port, as `ss` tells (empty when it cannot)."""
    try:
        out = subprocess.run(
            ["ss", "-Hltnp", f"sport = :{port}"], capture_output=True, text=True, timeout=5
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""
    users = re.findall(r'\("([^"]+)",pid=(\d+)', out)
    return ", ".join(f"{name} (pid {pid})" for name, pid in users) or out


def busy_ports_message(ports):
    """None when every port is free, else what to tell the user."""
    busy = [p for p in ports if port_in_use(p)]
    if not busy:
        return None
    lines = []
    for port in busy:
        who = listener_of(port)
        lines.append(f"127.0.0.1:{port} is in use" + (f" by {who}" if who else ""))
    return (
        "doc-tests: " + "; ".join(lines) + ". The docs' demo pool (`stockroom-pool demo`) "
        f"listens on its defaults, {' and '.join(f'127.0.0.1:{p}' for p in ports)}, and the "
        "blocks name those addresses: stop what listens there and run again."
    )


def hold_lock(path, wait_seconds):
    """Holds an exclusive lock on path (returns its open file), waiting up to wait_seconds."""
    handle = open(path, "a+")
    deadline = time.time() + wait_seconds
    told = False
    while True:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            handle.seek(0)
            handle.truncate()
            handle.write(f"{os.getpid()}\n")
            handle.flush()
            return handle
        except BlockingIOError:
            if time.time() >= deadline:
                handle.close()
                return None
            if not told:
                print(f"doc-tests: another doc-test run holds {path}; waiting up to {wait_seconds} s", flush=True)
                told = True
            time.sleep(0.2)


def check_output(block, code, output):
    problems = []
    want = int(block.opt("exit", "0"))
    if code != want:
        problems.append(f"exit {code}, expected {want}")
    for pattern in block.expects():
        if not re.search(pattern, output, re.MULTILINE):
            problems.append(f"no line matches {pattern!r}")
    return problems


def main():
    repo = Path(sys.argv[1] if len(sys.argv) > 1 else ".").resolve()
    bin_dir = repo / "target" / "debug"
    for name in ("stockroom", "stockroom-pool"):
        if not (bin_dir / name).is_file():
            sys.exit(f"doc-tests: {bin_dir / name} is missing; run cargo test --workspace first")

    blocks, errors = [], []
    for rel in doc_files(repo):
        found, bad = blocks_of(repo, rel)
        blocks += found
        errors += bad
    if errors:
        print("\n".join(errors), file=sys.stderr)
        sys.exit(1)

    work = Path(tempfile.mkdtemp(prefix="stockroom-doc-tests-"))
    shim = work / ".doc-tests-bin"
    shim.mkdir()
    (shim / "cargo").write_text(CARGO_SHIM)
    (shim / "cargo").chmod(0o755)
    for name in ("examples", "target", "clients"):
        (work / name).symlink_to(repo / name)
    env = {k: v for k, v in os.environ.items() if not CLEARED_ENV.match(k)}
    env["PATH"] = f"{shim}:{bin_dir}:{env.get('PATH', '/usr/bin:/bin')}"
    env["DOC_TESTS_BIN"] = str(bin_dir)

    pools = [b for b in blocks if b.kind == "doc-test" and b.flag("pool")]
    if len(pools) > 1:
        sys.exit("doc-tests: more than one `pool` block: " + ", ".join(b.where for b in pools))
    pool_proc, failures, ran, illustrations = None, [], [], []
    try:
        if pools:
            block = pools[0]
            wait = int(os.environ.get("DOC_TESTS_LOCK_WAIT", "300"))
            lock = hold_lock(DEMO_LOCK, wait)
            if lock is None:
                sys.exit(f"doc-tests: another doc-test run still holds {DEMO_LOCK} after {wait} s")
            busy = busy_ports_message(DEMO_PORTS)
            if busy:
                sys.exit(busy)
            log = open(work / ".doc-tests-pool.log", "w")
            pool_proc = subprocess.Popen(
                ["bash", "-e", "-o", "pipefail", "-c", block.text],
                cwd=work, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            )
            problem = wait_ready(DEMO_POOL, time.time() + 60, pool_proc, work / ".doc-tests-pool.log")
            if problem:
                log_text = (work / ".doc-tests-pool.log").read_text()
                sys.exit(f"doc-tests: FAIL {block.where}: the pool {problem}; its output:\n{log_text}")
            ran.append(block)
            print(f"ok   {block.where} (pool, in the background)")
        for block in blocks:
            if block.kind == "illustration":
                illustrations.append(block)
                continue
            if block.flag("pool"):
                continue
            file_name = block.opt("file")
            if file_name:
                (work / file_name).write_text(block.text)
                ran.append(block)
                print(f"ok   {block.where} (written to {file_name})")
                continue
            t0 = time.time()
            timeout = int(block.opt("timeout", str(DEFAULT_TIMEOUT)))
            proc = subprocess.Popen(
                ["bash", "-e", "-o", "pipefail", "-c", block.text],
                cwd=work, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL, start_new_session=True, text=True,
            )
            try:
                output, _ = proc.communicate(timeout=timeout)
                problems = check_output(block, proc.returncode, output)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                output, _ = proc.communicate()
                problems = [f"still running after {timeout} s"]
            try:  # whatever the block left running in the background
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            ran.append(block)
            status = "FAIL" if problems else "ok  "
            print(f"{status} {block.where} ({time.time() - t0:.1f} s)")
            if problems:
                failures.append((block, problems, output))
    finally:
        if pool_proc and pool_proc.poll() is None:
            os.killpg(pool_proc.pid, signal.SIGTERM)
            try:
                pool_proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(pool_proc.pid, signal.SIGKILL)
                pool_proc.wait()
        if not failures:
            shutil.rmtree(work, ignore_errors=True)

    for block, problems, output in failures:
        print(f"\n--- {block.where}: {'; '.join(problems)}\n{block.text}--- its output:\n{output}", file=sys.stderr)
    print(f"doc-tests: {len(ran)} block(s) run, {len(illustrations)} illustration(s), {len(failures)} failure(s)")
    for block in illustrations:
        print(f"  illustration {block.where}: {block.opt('why')}")
    if failures:
        print(f"doc-tests: the work directory is kept: {work}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
