"""`parse --format prometheus` streams its rows: an exposition of 500,000 wanted samples (18 MB) stays under
100 MiB (every row and every line was held: 160+ MiB here, 309 MiB for a million). The command is the only
child of a small launcher, since a child forked from pytest would start with pytest's peak as its own."""

from __future__ import annotations

from pathlib import Path

from tests import peak

SAMPLES = 500_000


def test_a_large_exposition_is_parsed_in_bounded_memory(tmp_path: Path) -> None:
    exposition = tmp_path / "metrics.prom"
    with exposition.open("w") as out:
        out.write("# TYPE loss gauge\n")
        out.writelines(f'loss{{step="{i}",job="train"}} {i / SAMPLES}\n' for i in range(SAMPLES))
        out.write("# TYPE other gauge\nother 1\n")
    run = peak.measured(tmp_path, "parse", "--format", "prometheus", "-m", "loss", str(exposition))
    assert run.code == 0, run.stderr
    assert run.stdout.splitlines()[1].split() == ["loss", "latest", "0.999998", "0", "0.999998", "0.999998",
                                                  str(SAMPLES)]
    assert f"{SAMPLES + 3} lines/records read, {SAMPLES} values recorded" in run.stderr
    assert run.peak_mib < 100, f"peak RSS {run.peak_mib:.0f} MiB"
