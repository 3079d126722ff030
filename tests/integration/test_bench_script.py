"""The benchmark script stays runnable: a tiny run prints one line per phase."""

import subprocess
import sys
from pathlib import Path

from tests.aws import free_port

ROOT = Path(__file__).resolve().parents[2]


def test_a_small_benchmark_run_reports_every_phase() -> None:
    done = subprocess.run(
        [
            sys.executable,
            "scripts/bench_sync.py",
            "--builders",
            "3",
            "--rounds",
            "1",
            "--port",
            str(free_port()),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    phases = [line.split()[0] for line in done.stdout.splitlines() if line.endswith("syncs/s")]
    assert phases == ["new", "running", "idle"]
    assert "3 builders" in done.stdout
