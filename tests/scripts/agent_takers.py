"""Many concurrent takers through one Stockroom agent (tests/tests/agent.rs).

Run as the command of `stockroom run`: it reads STOCKROOM_AGENT_URL and
STOCKROOM_AGENT_TOKEN, reserves, then drives threads and child processes that
take, hold for a moment and say done with mixed outcomes, while recording
every take and done (with a system-wide monotonic clock) as JSON lines, one
file per process, for the test's invariant checker. It also leaves two takes
without a done on purpose: one child dies after its take, one is killed while
its take waits on the pool for stock that appears only afterwards.

Standard library only.
"""

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request

URL = os.environ.get("STOCKROOM_AGENT_URL", "")
TOKEN = os.environ.get("STOCKROOM_AGENT_TOKEN", "")
OUTCOMES = ["passed"] * 14 + ["unused"] * 3 + ["failed"] * 2 + ["cancelled"]


def call(method, path, body=None, timeout=60):
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(
        URL + path,
        data=data,
        method=method,
        headers={"Authorization": "Bearer " + TOKEN, "Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as answer:
            return answer.status, json.load(answer)
    except urllib.error.HTTPError as e:
        return e.code, json.load(e)


class Recorder:
    def __init__(self, path):
        self.file = open(path, "a", buffering=1)
        self.lock = threading.Lock()

    def write(self, **event):
        event["t"] = time.monotonic_ns()
        with self.lock:
            self.file.write(json.dumps(event) + "\n")
            self.file.flush()


def one_take(rec, worker, n, rng):
    items = [{"name": "buyer", "type": "customer", "state": "active"}]
    roll = rng.random()
    if roll < 0.15:
        items[0]["count"] = 2
    elif roll < 0.3:
        items[0]["where"] = {"country": "DE"}
    test = "tests/test_shop.py::test_%s_%d" % (worker, n)
    status, answer = call("POST", "/v1/take", {"test": test, "worker": worker, "wait_seconds": 30, "items": items})
    if status != 200:
        rec.write(kind="refused", worker=worker, test=test, status=status, problem=answer)
        return
    ids = [d["id"] for d in answer["datasets"]]
    entities = [e for d in answer["datasets"] for e in d["entities"]]
    rec.write(kind="take", worker=worker, test=test, take_id=answer["take_id"], ids=ids, entities=entities)
    time.sleep(rng.random() * 0.004)
    outcome = rng.choice(OUTCOMES)
    rec.write(kind="done", worker=worker, take_id=answer["take_id"], outcome=outcome)
    status, done = call("POST", "/v1/takes/%s/done" % answer["take_id"], {"outcome": outcome, "reason": "by the driver"})
    if status != 200:
        rec.write(kind="done-refused", take_id=answer["take_id"], status=status, problem=done)


def worker_loop(rec, worker, takes, seed):
    rng = random.Random(seed)
    for n in range(takes):
        one_take(rec, worker, n, rng)


def main_role(args):
    rec = Recorder(os.path.join(args.out, "events.main.jsonl"))
    status, reserved = call("POST", "/v1/reserve", {"items": [{"type": "customer", "state": "active", "count": args.reserve}]})
    rec.write(kind="reserve", status=status, answer=reserved)

    me = [sys.executable, os.path.abspath(__file__), "--out", args.out, "--takes", str(args.takes)]
    procs = [subprocess.Popen(me + ["--role", "worker", "--worker", "p%d" % i]) for i in range(args.procs)]
    threads = [
        threading.Thread(target=worker_loop, args=(rec, "t%d" % i, args.takes, i)) for i in range(args.threads)
    ]
    for t in threads:
        t.start()

    # A test that dies right after its take: never says done.
    died = subprocess.run(me + ["--role", "die-after-take"])
    rec.write(kind="died", code=died.returncode)

    # A test killed while its take waits for stock that appears only later.
    marker = os.path.join(args.out, "fr-asking")
    fr = subprocess.Popen(me + ["--role", "fr-taker", "--marker", marker])
    while not os.path.exists(marker):
        time.sleep(0.01)
    time.sleep(0.3)
    fr.send_signal(signal.SIGKILL)
    fr.wait()
    rec.write(kind="killed", pid=fr.pid)
    body = [{"type": "customer", "state": "active", "attributes": {"country": "FR"},
             "data": {"customer_id": "CFR"}, "entities": ["customer:CFR"]}]
    request = urllib.request.Request(args.pool + "/api/v1/datasets", data=json.dumps(body).encode(),
                                     method="POST", headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as answer:
        rec.write(kind="registered-fr", status=answer.status)
    deadline = time.monotonic() + 30
    orphan = None
    while orphan is None and time.monotonic() < deadline:
        _, listing = call("GET", "/v1/takes")
        orphan = next((t for t in listing["takes"] if t.get("test") == "killed-mid-take"), None)
        time.sleep(0.05)
    rec.write(kind="orphan", take=orphan)

    for t in threads:
        t.join()
    codes = [p.wait() for p in procs]
    _, listing = call("GET", "/v1/takes")
    rec.write(kind="final", workers=codes, listing=listing)
    return 0 if all(c == 0 for c in codes) and orphan is not None else 1


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--role", default="main")
    parser.add_argument("--out", required=True)
    parser.add_argument("--pool", default="")
    parser.add_argument("--worker", default="w")
    parser.add_argument("--marker", default="")
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--procs", type=int, default=4)
    parser.add_argument("--takes", type=int, default=15)
    parser.add_argument("--reserve", type=int, default=20)
    args = parser.parse_args()
    if args.role == "main":
        return main_role(args)
    rec = Recorder(os.path.join(args.out, "events.%s.%d.jsonl" % (args.role, os.getpid())))
    if args.role == "worker":
        worker_loop(rec, args.worker, args.takes, sum(map(ord, args.worker)))
        return 0
    if args.role == "die-after-take":
        status, answer = call("POST", "/v1/take", {"test": "dies-after-take", "wait_seconds": 30,
                                                   "items": [{"type": "customer", "state": "active"}]})
        if status == 200:
            rec.write(kind="take", worker="dier", test="dies-after-take", take_id=answer["take_id"],
                      ids=[d["id"] for d in answer["datasets"]],
                      entities=[e for d in answer["datasets"] for e in d["entities"]])
        os._exit(3)
    if args.role == "fr-taker":
        open(args.marker, "w").close()
        call("POST", "/v1/take", {"test": "killed-mid-take", "wait_seconds": 30,
                                  "items": [{"type": "customer", "state": "active", "where": {"country": "FR"}}]})
        return 0
    return 2


if __name__ == "__main__":
    sys.exit(main())
