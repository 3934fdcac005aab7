#!/usr/bin/env python3
"""Where a process's threads spend their time, from /proc (Linux only).

    python3 bench/thread-sampler.py PID SECONDS

Per thread name (threads of the same name summed): the share of wall time on
a CPU and waiting in the run queue (from /proc/PID/task/TID/schedstat), the
context switches per second, and the states seen by sampling
/proc/PID/task/TID/stat about once a millisecond (R running or runnable,
S sleeping, D disk wait). Used in docs/benchmarks.md to tell a thread that is
short of work from one that is short of CPU.
"""

import collections
import os
import sys
import time


def schedstat(pid, tid):
    on_cpu, waiting, slices = open(f"/proc/{pid}/task/{tid}/schedstat").read().split()[:3]
    return int(on_cpu), int(waiting), int(slices)


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    pid, seconds = sys.argv[1], float(sys.argv[2])
    tasks = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        with open(f"/proc/{pid}/task/{tid}/comm") as f:
            tasks[tid] = f.read().strip()
    before = {t: schedstat(pid, t) for t in tasks}
    states = collections.defaultdict(collections.Counter)
    start = time.monotonic()
    while time.monotonic() - start < seconds:
        for t in tasks:
            try:
                with open(f"/proc/{pid}/task/{t}/stat") as f:
                    stat = f.read()
                states[t][stat[stat.rindex(")") + 2]] += 1
            except OSError:
                pass  # the thread ended
        time.sleep(0.001)
    wall = time.monotonic() - start
    after = {t: schedstat(pid, t) for t in tasks if os.path.exists(f"/proc/{pid}/task/{t}")}
    total = collections.defaultdict(lambda: [0.0, 0.0, 0, collections.Counter()])
    for t, name in tasks.items():
        if t not in after:
            continue
        row = total[name]
        row[0] += (after[t][0] - before[t][0]) / 1e9 / wall
        row[1] += (after[t][1] - before[t][1]) / 1e9 / wall
        row[2] += after[t][2] - before[t][2]
        row[3] += states[t]
    for name, (on_cpu, waiting, slices, seen) in sorted(total.items()):
        n = sum(seen.values()) or 1
        shares = " ".join(f"{s}:{c * 100 / n:.0f}%" for s, c in seen.most_common())
        print(
            f"{name:18} on-cpu {on_cpu * 100:5.1f}%  runqueue-wait {waiting * 100:5.1f}%  "
            f"switches/s {slices / wall:7.0f}  states {shares}"
        )


if __name__ == "__main__":
    main()
