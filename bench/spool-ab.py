#!/usr/bin/env python3
"""The spool on and off, one binary, message from a pipe (docs/PERFORMANCE.md, "Spooled
large messages").

Usage: bench/spool-ab.py BINARY CONFIG MESSAGE ROUNDS ORDER [CLEANUP...]

ORDER is a comma-separated list of `s` (spooled: TMPDIR=/tmp) and `m` (in memory: TMPDIR
names a missing directory, so the spool cannot be created and the message stays on the
heap), run in that order every round: `s` or `m` alone measures a block, `s,m` alternates.
CONFIG is a virt_mail config for a streaming backend (Virtuoso native or ODBC) that knows
the recipient `alice`. CLEANUP, if given, is a command run every 5 rounds (e.g. one that
empties the table). Prints the median wall time and system CPU (from wait4) per arm.
"""

import os
import statistics
import subprocess
import sys
import time

binary, config, message, rounds, order = sys.argv[1:6]
cleanup = sys.argv[6:]
data = open(message, "rb").read()
tmpdir = {"s": "/tmp", "m": "/nonexistent/spool"}
runs = {}
for i in range(int(rounds)):
    for arm in order.split(","):
        env = dict(os.environ, TMPDIR=tmpdir[arm])
        started = time.perf_counter()
        child = subprocess.Popen(
            [binary, "-c", config, "-l", "alice", "-h", "example.com", "-s", "bob@example.org"],
            stdin=subprocess.PIPE,
            env=env,
        )
        child.stdin.write(data)
        child.stdin.close()
        _, status, usage = os.wait4(child.pid, 0)
        if status != 0:
            sys.exit(f"{arm}: exit status {status}")
        runs.setdefault(arm, []).append(((time.perf_counter() - started) * 1e3, usage.ru_stime * 1e3))
    if cleanup and i % 5 == 4:
        subprocess.run(cleanup, capture_output=True, check=False)
for arm, values in runs.items():
    wall = statistics.median(v[0] for v in values)
    system = statistics.median(v[1] for v in values)
    print(f"order {order}: {'spooled' if arm == 's' else 'in memory'}: wall {wall:.1f} ms, system {system:.1f} ms ({len(values)} runs)")
