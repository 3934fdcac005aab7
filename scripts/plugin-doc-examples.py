#!/usr/bin/env python3
"""Runs the complete examples of docs/plugins/*.md as written.

Their blocks are marked for scripts/doc-tests.py as illustrations (they need
pytest, npm packages and a browser, which that runner does not install); the
ones whose reason says `run by .ci/plugins-tests.sh` are run here, in order,
each page in a fresh directory:

    <!-- illustration: file NAME, run by .ci/plugins-tests.sh -->   written to NAME
    <!-- illustration: run by .ci/plugins-tests.sh ... -->           run with bash -e

against a demo pool this script starts (`stockroom-pool demo` from
$STOCKROOM_BIN_DIR or target/debug, its URL in STOCKROOM_POOL), with STOCKROOM_SRC set to the
repository and target/debug first on PATH. The caller provides the rest of
PATH (a virtualenv with pip; node and npm).

Usage: plugin-doc-examples.py REPO [DOC ...]  (default: every docs/plugins/*.md)
"""

import importlib.util
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

MARK = "run by .ci/plugins-tests.sh"
FILE = re.compile(r"^file (\S+), ")
TIMEOUT = 600


def load_doc_tests(repo):
    spec = importlib.util.spec_from_file_location("doc_tests", repo / "scripts" / "doc-tests.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def start_pool(bin_dir, work):
    ready = work / "pool.addr"
    log = open(work / "pool.log", "wb")
    proc = subprocess.Popen(
        [str(bin_dir / "stockroom-pool"), "demo", "--listen", "127.0.0.1:0", "--shop-listen", "127.0.0.1:0", "--ready-file", str(ready)],
        stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
    )
    deadline = time.time() + 60
    while True:
        if ready.exists() and ready.read_text().strip():
            url = "http://" + ready.read_text().strip()
            try:
                urllib.request.urlopen(url + "/readyz", timeout=2).close()
                return proc, url
            except OSError:
                pass
        if proc.poll() is not None or time.time() > deadline:
            sys.exit("plugin-doc-examples: the demo pool did not start:\n" + (work / "pool.log").read_text())
        time.sleep(0.05)


def main():
    repo = Path(sys.argv[1] if len(sys.argv) > 1 else ".").resolve()
    docs = sys.argv[2:] or sorted(str(p.relative_to(repo)) for p in (repo / "docs" / "plugins").glob("*.md"))
    bin_dir = Path(os.environ.get("STOCKROOM_BIN_DIR") or repo / "target" / "debug")
    doc_tests = load_doc_tests(repo)
    root = Path(tempfile.mkdtemp(prefix="plugin-doc-examples-"))
    pool, url = start_pool(bin_dir, root)
    failures = 0
    try:
        env = {k: v for k, v in os.environ.items() if not doc_tests.CLEARED_ENV.match(k)}
        env.update(STOCKROOM_POOL=url, STOCKROOM_SRC=str(repo), PATH=f"{bin_dir}{os.pathsep}{env.get('PATH', '')}")
        for rel in docs:
            blocks, errors = doc_tests.blocks_of(repo, rel)
            if errors:
                sys.exit("\n".join(errors))
            ours = [b for b in blocks if b.kind == "illustration" and MARK in b.opt("why", "")]
            if not ours:
                sys.exit(f"plugin-doc-examples: {rel} has no block marked '{MARK}'")
            work = root / rel.replace("/", "_")
            work.mkdir()
            print(f"== {rel} (in {work})", flush=True)
            for block in ours:
                name = FILE.match(block.opt("why"))
                if name:
                    target = work / name.group(1)
                    target.parent.mkdir(parents=True, exist_ok=True)
                    target.write_text(block.text)
                    continue
                print(f"-- {block.where}\n{block.text.rstrip()}", flush=True)
                try:
                    done = subprocess.run(["bash", "-e", "-o", "pipefail", "-c", block.text], cwd=work, env=env,
                                          capture_output=True, text=True, timeout=TIMEOUT)
                    code, output = done.returncode, done.stdout + done.stderr
                except subprocess.TimeoutExpired as e:
                    code, output = "timeout", f"{e.stdout or ''}{e.stderr or ''}"
                if code != 0:
                    failures += 1
                    print(f"FAILED {block.where}: exit {code}\n{output}", flush=True)
                    break
                print(output.rstrip()[-1500:], flush=True)
    finally:
        pool.terminate()
        pool.wait(timeout=30)
        shutil.rmtree(root, ignore_errors=True)
    if failures:
        sys.exit(f"plugin-doc-examples: {failures} page(s) failed")
    print("plugin-doc-examples: every example ran as written")


if __name__ == "__main__":
    main()
