"""Difference 14 end to end: the Kubeflow SDK's JSON report lines on stdout through `run` and the sidecar."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from katib_metrics.collector.dbmanager import serve
from katib_metrics.collector.report import get_observation_log
from tests.collector.test_collect_integration import finish, sidecar

ROOT = Path(__file__).resolve().parents[2]
# What kubeflow's optimizer `report_metrics` prints: sorted keys, values as strings, an ISO time stamp.
SDK_LINES = [
    json.dumps({"epoch": str(e), "loss": str(0.5 / e), "step": str(100 * e),
                "timestamp": f"2026-05-01T10:00:0{e}.123456+00:00"}, sort_keys=True)
    for e in (1, 2, 3)
]
TRAINING = "import sys\nprint('starting')\n" + "".join(f"print({line!r}, flush=True)\n" for line in SDK_LINES)


def test_run_collects_the_sdk_lines_of_a_real_training(tmp_path: Path) -> None:
    script = tmp_path / "train.py"
    script.write_text(TRAINING)
    done = subprocess.run([sys.executable, "-m", "katib_metrics", "run", "--db", str(tmp_path / "db.sqlite"),
                           "--trial", "sdk", "-m", "loss", "-m", "epoch", "--objective-type", "minimize",
                           "--output", "json", "--", sys.executable, str(script)],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    logs = [(log["time_stamp"], log["metric"]["name"], log["metric"]["value"]) for log in result["metric_logs"]]
    assert ("2026-05-01T10:00:01.123456+00:00", "loss", "0.5") in logs
    assert sorted(value for _, name, value in logs if name == "epoch") == ["1", "2", "3"]
    assert not [name for _, name, _ in logs if name == "step"]  # not asked for by name
    loss = next(m for m in result["observation"]["metrics"] if m["name"] == "loss")
    assert (loss["min"], loss["latest"]) == ("0.16666666666666666", "0.16666666666666666")


def test_the_sidecar_reports_sdk_lines_from_a_stdout_file(tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    logs.mkdir()
    (logs / "metrics.log").write_text("starting\n" + "\n".join(SDK_LINES) + "\n")
    (logs / "7.pid").write_text("completed\n")  # the training ended before the sidecar looked
    server = serve("127.0.0.1:0", tmp_path / "db.sqlite")
    try:
        collector = sidecar("-t", "sdk", "-m", "loss", "-s-db", server.address, "-path", str(logs / "metrics.log"))
        status, err = finish(collector, timeout=120)
        assert status == 0, err
        rows = get_observation_log(server.address, "sdk", timeout=30)
    finally:
        server.stop(grace=1)
    assert [(row.name, row.value) for row in rows] == [("loss", "0.5"), ("loss", "0.25"),
                                                       ("loss", "0.16666666666666666")]
    assert rows[0].time_stamp.startswith("2026-05-01T10:00:01.123456")
