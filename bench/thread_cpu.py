#!/usr/bin/env python3
"""Run a command and report the CPU time of each of its threads (by thread name), read from
/proc every 100 ms: which thread is the bottleneck (e.g. `issho-writer` during ingest).

    python3 bench/thread_cpu.py ./target/release/issho demo --data /tmp/d --patients 300
"""
import os
import subprocess
import sys
import time

cmd = sys.argv[1:]
if not cmd:
    sys.exit(__doc__)
t0 = time.time()
p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
last = {}
tick = os.sysconf("SC_CLK_TCK")
while p.poll() is None:
    try:
        tids = os.listdir(f"/proc/{p.pid}/task")
    except OSError:
        tids = []
    for tid in tids:
        try:
            s = open(f"/proc/{p.pid}/task/{tid}/stat").read()
        except OSError:
            continue
        comm = s[s.index("(") + 1 : s.rindex(")")]
        f = s[s.rindex(")") + 2 :].split()
        last[tid] = (comm, (int(f[11]) + int(f[12])) / tick)  # utime + stime
    time.sleep(0.1)
wall = time.time() - t0
by_name = {}
for comm, cpu in last.values():
    by_name[comm] = by_name.get(comm, 0) + cpu
print(p.stdout.read().decode().strip())
print(
    f"wall {wall:.1f}s; cpu by thread:",
    ", ".join(f"{k} {v:.1f}s" for k, v in sorted(by_name.items(), key=lambda x: -x[1])),
)
