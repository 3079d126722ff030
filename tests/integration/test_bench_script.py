"""The benchmark script stays runnable: a tiny run prints every labelled line of every phase and goal.

Timing numbers are never asserted (CI is a busy 2-core machine); only that each line is there and that the
warm AWS calls per sync can be read back.
"""

import os
import re
import subprocess
import sys
from pathlib import Path

from tests.aws import free_port

ROOT = Path(__file__).resolve().parents[2]

LABELS = [
    "machine:",
    "setup:",
    "phase new:",
    "phase running 1:",
    "phase built:",
    "1. warm:",
    "1. warm calls by API:",
    "1. warm calls/sync:",
    "2. run bare ",
    "2. run bare-async",
    "2. run hook",
    "2. throughput bare:",
    "2. throughput bare-async:",
    "2. throughput hook:",
    "2. throughput ratio hook/bare-async:",
    "2. throughput ratio hook/bare:",
    "3. slow EC2:",
    "3. slow EC2, syncs while a call was held:",
    "3. slow EC2, the other syncs (control):",
    "4. RSS with 3 builders:",
    "4. new:",
    "4. built:",
    "4. RSS:",
    "goal warm AWS calls per sync:",
    "goal throughput hook/bare:",
    "goal hook p99 at concurrency 5:",
    "goal slowest warm sync while EC2 was held:",
    "goal RSS at 5 builders:",
]


def test_a_small_benchmark_run_prints_every_phase_and_goal() -> None:
    done = subprocess.run(
        [
            sys.executable,
            "scripts/bench_sync.py",
            *("--builders", "3", "--rounds", "1", "--requests", "20", "--repeats", "1"),
            *("--slow-delay", "0.3", "--rss-builders", "5", "--port", str(free_port())),
        ],
        cwd=ROOT,
        # A short refresh period, so that the slow-EC2 phase meets a background refresh within seconds.
        env={**os.environ, "INDEX_REFRESH_SECONDS": "2"},
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    lines = done.stdout.splitlines()
    for label in LABELS:
        assert any(line.startswith(label) for line in lines), f"no line starts with {label!r}:\n{done.stdout}"

    warm = next(line for line in lines if line.startswith("1. warm calls/sync:"))
    match = re.match(r"1\. warm calls/sync: (\d+\.\d+) \((\d+) AWS calls in (\d+) syncs", warm)
    assert match is not None, warm
    per_sync, calls, syncs = float(match[1]), int(match[2]), int(match[3])
    assert syncs > 0
    assert abs(per_sync - calls / syncs) < 1e-4

    assert re.search(r"^phase built: +\d/3 builders Ready", done.stdout, re.MULTILINE), done.stdout
    goals = [line for line in lines if line.startswith("goal ")]
    assert len(goals) == 5
    assert all(line.endswith((": met", ": MISSED", ": not measured")) for line in goals), goals
