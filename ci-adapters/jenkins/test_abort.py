#!/usr/bin/env python3
"""Emulates a Jenkins build abort around `stockroom run` and checks that the
datasets are quarantined inside Jenkins' kill window.

What Jenkins does (ProcessTree.killAll with the step's cookie): it sends
SIGTERM to every process whose environment carries the step's
JENKINS_SERVER_COOKIE — the sidecar and the tests alike, not one process
group — and SIGKILL to whatever is left about 5 s later. This test launches
the shard's `sh` step the way the Jenkinsfile does (withEnv shard index and
total, the cookie in the environment), waits until the tests hold their
datasets, then does exactly that, polling the pool meanwhile.

Also checks a normal passing and a failing shard for contrast.
Needs STOCKROOM_BIN_DIR (default: <repo>/target/debug) with `stockroom` and
`stockroom-pool`. Prints 'N passed, N failed' and exits non-zero on failure.
"""

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
BIN_DIR = os.environ.get("STOCKROOM_BIN_DIR") or os.path.join(REPO, "target", "debug")
STOCKROOM = os.path.join(BIN_DIR, "stockroom")
POOL_BIN = os.path.join(BIN_DIR, "stockroom-pool")
SOFT_KILL_WAIT = 5.0  # hudson.util.ProcessTree.softKillWaitSeconds

results = {"passed": 0, "failed": 0}


def check(what, ok, detail=""):
    if ok:
        results["passed"] += 1
        print(f"ok - {what}")
    else:
        results["failed"] += 1
        print(f"not ok - {what}" + (f"\n{detail}" if detail else ""))


def api(pool, method, route, body=None):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(pool + "/api/v1" + route, data=data, method=method,
                                 headers={"content-type": "application/json"} if data else {})
    with urllib.request.urlopen(req, timeout=10) as resp:
        text = resp.read()
    return json.loads(text) if text else None


def status_of(pool, dataset_id):
    return api(pool, "GET", f"/datasets/{dataset_id}")["status"]


def start_pool(work):
    ready = os.path.join(work, "pool.ready")
    log = open(os.path.join(work, "pool.log"), "ab")
    proc = subprocess.Popen([POOL_BIN, "--listen", "127.0.0.1:0", "--store",
                             f"sqlite://{work}/pool.db", "--ready-file", ready],
                            stdout=log, stderr=log)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            sys.exit(f"stockroom-pool exited early:\n{open(os.path.join(work, 'pool.log')).read()}")
        if os.path.exists(ready) and open(ready).read().strip():
            addr = open(ready).read().strip().rstrip("/")
            return proc, addr if addr.startswith("http") else "http://" + addr
        time.sleep(0.05)
    proc.kill()
    sys.exit("stockroom-pool wrote no ready file within 30 s")


def processes_with_cookie(cookie):
    """Every process whose environment holds JENKINS_SERVER_COOKIE=cookie, as Jenkins finds them."""
    needle = f"JENKINS_SERVER_COOKIE={cookie}".encode()
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/environ", "rb") as f:
                if needle in f.read().split(b"\0"):
                    pids.append(int(entry))
        except OSError:
            pass  # gone, or not ours
    return pids


def is_zombie(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


def kill_all(pids, sig):
    for pid in pids:
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass


def jenkins_step(work, pool, shard_index, shard_total, script, build):
    """Launches `sh 'stockroom run -- …'` with the environment a Jenkins sh step has."""
    cookie = "durable-" + uuid.uuid4().hex
    env = {
        "PATH": BIN_DIR + os.pathsep + os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": os.environ.get("HOME", "/root"),
        "JENKINS_URL": "https://jenkins.example/",
        "JENKINS_HOME": "/var/jenkins_home",
        "JOB_NAME": "shop/web/main",
        "JOB_BASE_NAME": "main",
        "BUILD_NUMBER": str(build),
        "BUILD_ID": str(build),
        "BUILD_URL": f"https://jenkins.example/job/shop/job/web/job/main/{build}/",
        "STAGE_NAME": "e2e",
        "WORKSPACE": work,
        "JENKINS_SERVER_COOKIE": cookie,
        # withEnv(["STOCKROOM_SHARD_INDEX=${index}", "STOCKROOM_SHARD_TOTAL=${SHARDS}"])
        "STOCKROOM_SHARD_INDEX": str(shard_index),
        "STOCKROOM_SHARD_TOTAL": str(shard_total),
        "STOCKROOM_POOL": pool,
        "STOCKROOM_MANIFEST": os.path.join(work, "stockroom.toml"),
    }
    log = open(os.path.join(work, f"step-{build}-{shard_index}.log"), "wb")
    # durable-task runs the step script with `sh -xe`; it is a session of its own.
    proc = subprocess.Popen(["sh", "-xe", "-c", f"stockroom run --grace 3s -- sh -c '{script}'"],
                            env=env, cwd=work, stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)
    return proc, cookie, log.name


def wait_for_file(path, proc, timeout):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if os.path.exists(path) and open(path).read().strip():
            return open(path).read().strip()
        if proc.poll() is not None:
            return None
        time.sleep(0.05)
    return None


def abort_case(work, pool, name, tests, build):
    marker = os.path.join(work, f"aborted-{build}")
    proc, cookie, log = jenkins_step(work, pool, 0, 2, f'echo "$STOCKROOM_BUYER_ID" > {marker}; {tests}', build=build)
    dataset = wait_for_file(marker, proc, 30)
    check(f"{name}: the tests started with a leased dataset", dataset is not None, open(log).read())
    if dataset is None:
        return
    time.sleep(0.3)  # let the trap be installed
    check(f"{name}: the dataset is leased while the tests run", status_of(pool, dataset) == "leased")
    targets = processes_with_cookie(cookie)
    check(f"{name}: the cookie marks the sidecar and the tests ({len(targets)} processes)", len(targets) >= 2)

    sent = time.monotonic()
    kill_all(targets, signal.SIGTERM)
    quarantined_after = None
    while time.monotonic() - sent < SOFT_KILL_WAIT:
        if status_of(pool, dataset) == "quarantined":
            quarantined_after = time.monotonic() - sent
            break
        time.sleep(0.05)
    # Jenkins waits up to softKillWaitSeconds for the processes to go, then kills the rest.
    while time.monotonic() - sent < SOFT_KILL_WAIT and processes_with_cookie(cookie):
        time.sleep(0.05)
    leftovers = [pid for pid in processes_with_cookie(cookie) if not is_zombie(pid)]
    kill_all(leftovers, signal.SIGKILL)
    try:
        rc = proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        rc = None
    print(f"  SIGTERM to {targets}; quarantined after "
          f"{'%.2f s' % quarantined_after if quarantined_after is not None else 'never'}; "
          f"still alive at SIGKILL: {leftovers}; step exit {rc}")
    check(f"{name}: quarantined within Jenkins' 5 s window", quarantined_after is not None, open(log).read())
    check(f"{name}: the sidecar and the tests exited by themselves before SIGKILL", not leftovers, open(log).read())
    # The step's own shell also got SIGTERM, so the step ends by that signal.
    check(f"{name}: the step ends by SIGTERM", rc in (-signal.SIGTERM, 128 + signal.SIGTERM), f"exit {rc}")


def main():
    for b in (STOCKROOM, POOL_BIN):
        if not os.access(b, os.X_OK):
            sys.exit(f"{b} is missing: cargo build -p stockroom -p stockroom-pool (or set STOCKROOM_BIN_DIR)")
    work = tempfile.mkdtemp(prefix="stockroom-jenkins-test-")
    pool_proc, pool = start_pool(work)
    try:
        api(pool, "POST", "/datasets", [
            {"type": "customer", "state": "active", "attributes": {"country": "DE"},
             "data": {"customer_id": f"J{i}", "email": f"j{i}@shop.test"},
             "secret_fields": [], "entities": [f"customer:J{i}"]} for i in range(6)])
        with open(os.path.join(work, "stockroom.toml"), "w") as f:
            f.write('version = 1\nlease_ttl = "60s"\nacquire_timeout = "10s"\n\n'
                    '[[dataset]]\nname = "buyer"\ntype = "customer"\nstate = "active"\n')

        # A passing and a failing shard, for contrast.
        for index, script, expected, code in ((0, "exit 0", "consumed", 0), (1, "exit 4", "quarantined", 4)):
            marker = os.path.join(work, f"plain-{index}")
            proc, _, log = jenkins_step(work, pool, index, 2,
                                        f'echo "$STOCKROOM_BUYER_ID" > {marker}; {script}', build=41)
            rc = proc.wait(timeout=60)
            dataset = open(marker).read().strip() if os.path.exists(marker) else None
            check(f"shard {index} of 2 ({script}): the step exits {code}", rc == code, open(log).read())
            check(f"shard {index} of 2 ({script}): its dataset is {expected}",
                  dataset is not None and status_of(pool, dataset) == expected)

        abort_case(work, pool, "abort", "sleep 300", build=42)
        # Tests that ignore SIGTERM: the sidecar's --grace 3s kills them before Jenkins' SIGKILL.
        abort_case(work, pool, "abort, tests ignore SIGTERM", "trap \"\" TERM; sleep 300 & wait; sleep 300", build=43)
        leases = api(pool, "GET", "/leases?status=active")
        active = leases if isinstance(leases, list) else leases.get("leases", [])
        check("no lease is left active", not active, json.dumps(active)[:2000])
    finally:
        pool_proc.terminate()
        try:
            pool_proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pool_proc.kill()
        if not os.environ.get("KEEP_TEST_DIR"):
            subprocess.run(["rm", "-rf", work], check=False)
        else:
            print(f"kept {work}")


if __name__ == "__main__":
    main()
    print(f"jenkins: {results['passed']} passed, {results['failed']} failed")
    sys.exit(1 if results["failed"] else 0)
