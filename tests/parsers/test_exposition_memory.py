"""`parse --format prometheus` streams its rows: an exposition of 500,000 wanted samples (18 MB) stays under
100 MiB (every row and every line was held: 160+ MiB here, 309 MiB for a million). The command is the only
child of a small launcher, since a child forked from pytest would start with pytest's peak as its own."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
LAUNCHER = ("import resource, subprocess, sys\ncode = subprocess.run(sys.argv[2:], stdout=open(sys.argv[1], 'w'))"
            ".returncode\nprint(code, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)")
SAMPLES = 500_000


def test_a_large_exposition_is_parsed_in_bounded_memory(tmp_path: Path) -> None:
    exposition = tmp_path / "metrics.prom"
    with exposition.open("w") as out:
        out.write("# TYPE loss gauge\n")
        out.writelines(f'loss{{step="{i}",job="train"}} {i / SAMPLES}\n' for i in range(SAMPLES))
        out.write("# TYPE other gauge\nother 1\n")
    table = tmp_path / "table"
    command = [sys.executable, "-c", LAUNCHER, str(table), sys.executable, "-m", "katib_metrics", "parse",
               "--format", "prometheus", "-m", "loss", str(exposition)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=180, cwd=ROOT)
    code, peak_kib = map(int, done.stdout.split())
    assert code == 0, done.stderr
    assert table.read_text().splitlines()[1].split() == ["loss", "latest", "0.999998", "0", "0.999998", "0.999998",
                                                         str(SAMPLES)]
    assert f"{SAMPLES + 3} lines/records read, {SAMPLES} values recorded" in done.stderr
    assert peak_kib < 100 * 1024, f"peak RSS {peak_kib // 1024} MiB"
