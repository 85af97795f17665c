"""`run --experiment` and `parse --experiment` end to end: Katib's seed experiments with local stand-ins."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

from katib_metrics.collector.dbmanager import serve
from katib_metrics.collector.report import get_observation_log

ROOT = Path(__file__).resolve().parents[2]
SEEDS = ROOT / "examples" / "experiments"
MXNET = str(SEEDS / "mxnet-mnist" / "mnist.py")
PYTORCH = str(SEEDS / "pytorch-mnist" / "mnist.py")


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "katib_metrics", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=90)


def stored(db: Path, trial: str) -> list[tuple[str, str]]:
    server = serve("127.0.0.1:0", db)
    try:
        return [(log.name, log.value) for log in get_observation_log(server.address, trial)]
    finally:
        server.stop(grace=1)


def test_random_search_runs_the_stand_in_with_substituted_parameters(tmp_path: Path) -> None:
    db = tmp_path / "katib.db"
    done = cli("run", "--db", str(db), "--trial", "random-1", "--experiment", str(SEEDS / "random.yaml"),
               "--param", "lr=0.02", "--param", "num-layers=3", "--param", "optimizer=adam",
               "--", sys.executable, MXNET, "--batch-size=64", "--lr=${trialParameters.learningRate}",
               "--num-layers=${trialParameters.numberLayers}", "--optimizer=${trialParameters.optimizer}")
    assert done.returncode == 0, done.stderr
    output = done.stdout + done.stderr
    assert "lr=0.02" in output and "optimizer='adam'" in output  # the stand-in got the substituted values
    validation = re.findall(r"Validation-accuracy=(\S+)", output)
    assert len(validation) == 10
    rows = stored(db, "random-1")
    assert [v for n, v in rows if n == "Validation-accuracy"] == validation
    assert len([n for n, _ in rows if n == "Train-accuracy"]) == 10
    table = {line.split()[0]: line.split() for line in done.stdout.splitlines() if line.endswith(" 10")}
    assert table["Validation-accuracy"][1:3] == ["max", max(validation, key=float)]  # Katib's defaulting: max


def _local_copy(tmp_path: Path, name: str, image_path: str, local: str, **changes: Any) -> Path:
    text = (SEEDS / name).read_text(encoding="utf-8").replace(image_path, local)
    doc = yaml.safe_load(text)
    doc["spec"].update(changes)
    target = tmp_path / name
    target.write_text(yaml.safe_dump(doc), encoding="utf-8")
    return target


def test_pytorchjob_without_a_command_runs_the_master_replicas_container(tmp_path: Path) -> None:
    experiment = _local_copy(tmp_path, "pytorchjob-mnist.yaml", "/opt/pytorch-mnist/mnist.py", PYTORCH)
    doc = yaml.safe_load(experiment.read_text())
    master = doc["spec"]["trialTemplate"]["trialSpec"]["spec"]["pytorchReplicaSpecs"]["Master"]
    master["template"]["spec"]["containers"][0]["command"][0] = sys.executable
    master["template"]["spec"]["containers"][0]["command"].append("--log-interval=100")
    doc["spec"]["trialTemplate"]["trialSpec"]["spec"]["pytorchReplicaSpecs"]["Worker"] = {"template": {}}
    experiment.write_text(yaml.safe_dump(doc))
    db = tmp_path / "katib.db"
    done = cli("run", "--db", str(db), "--trial", "torch-1", "--output", "json", "--experiment", str(experiment),
               "--param", "learningRate=0.03", "--param", "momentum=0.7")
    assert done.returncode == 0, done.stderr
    losses = re.findall(r"\tloss=(\S+)", done.stderr)  # --output json: the command's output goes to stderr
    assert len(losses) == 38  # 3750 batches of 16, one line per 100
    observation = json.loads(done.stdout)["observation"]["metrics"]
    assert observation == [{"name": "loss", "min": min(losses, key=float), "max": max(losses, key=float),
                            "latest": losses[-1], "strategy": "min", "value": min(losses, key=float)}]


def test_file_collector_path_and_template_env(tmp_path: Path) -> None:
    log = tmp_path / "logs" / "mnist.log"
    log.parent.mkdir()
    experiment = _local_copy(tmp_path, "pytorchjob-mnist.yaml", "/opt/pytorch-mnist/mnist.py", PYTORCH,
                             metricsCollectorSpec={"collector": {"kind": "File"},
                                                   "source": {"fileSystemPath": {"path": str(log), "kind": "File",
                                                                                 "format": "TEXT"}}})
    done = cli("run", "--db", str(tmp_path / "k.db"), "--experiment", str(experiment), "--param", "lr=0.01",
               "--param", "momentum=0.5", "--", sys.executable, PYTORCH, "--epochs=1", "--log-interval=500",
               f"--log-path={log}", "--lr=${trialParameters.learningRate}")
    assert done.returncode == 0, done.stderr
    assert "Train Epoch" not in done.stdout  # the training logged into the file, and the collector read it there
    loss_rows = [line for line in done.stdout.splitlines() if line.startswith("loss ")]
    assert loss_rows and loss_rows[0].split()[-1] == "2"  # two lines of 938 batches at interval 500


def test_usage_errors_name_what_is_missing(tmp_path: Path) -> None:
    missing = cli("run", "--db", str(tmp_path / "k.db"), "--experiment", str(SEEDS / "random.yaml"),
                  "--param", "lr=0.02")
    assert missing.returncode == 2
    assert "no value for trial parameter(s) numberLayers (num-layers), optimizer" in missing.stderr
    image = cli("run", "--db", str(tmp_path / "k.db"), "--experiment", str(SEEDS / "random.yaml"),
                "--param", "lr=0.02", "--param", "num-layers=2", "--param", "optimizer=sgd")
    assert image.returncode == 2
    assert "runs /opt/mxnet-mnist/mnist.py, which is in the image, not on this machine" in image.stderr
    orphan = cli("run", "--param", "lr=1", "--", "true")
    assert orphan.returncode == 2 and "--param needs --experiment" in orphan.stderr
    file_kind = _local_copy(tmp_path, "random.yaml", "/opt/mxnet-mnist/mnist.py", MXNET,
                            metricsCollectorSpec={"collector": {"kind": "File"}, "source": {
                                "fileSystemPath": {"path": "/no/such/dir/m.log", "kind": "File", "format": "TEXT"}}})
    nowhere = cli("run", "--db", str(tmp_path / "k.db"), "--experiment", str(file_kind), "--", "true")
    assert nowhere.returncode == 2
    assert "spec.metricsCollectorSpec.source.fileSystemPath.path /no/such/dir/m.log" in nowhere.stderr
    for stream in (missing, image, orphan, nowhere):
        assert "Traceback" not in stream.stderr


def test_parse_takes_the_experiment_and_flags_win(tmp_path: Path) -> None:
    log = tmp_path / "train.log"
    log.write_text(subprocess.run([sys.executable, MXNET, "--num-epochs=3"], capture_output=True, text=True,
                                  timeout=60).stderr)
    seeded = cli("parse", "--experiment", str(SEEDS / "random.yaml"), str(log), "--output", "json")
    assert seeded.returncode == 0, seeded.stderr
    metrics = json.loads(seeded.stdout)["observation"]["metrics"]
    assert [(m["name"], m["strategy"]) for m in metrics] == [("Validation-accuracy", "max"), ("Train-accuracy", "max")]
    flagged = cli("parse", "--experiment", str(SEEDS / "random.yaml"), str(log), "--output", "json",
                  "-m", "Train-accuracy", "--objective-type", "minimize")
    metrics = json.loads(flagged.stdout)["observation"]["metrics"]
    assert [(m["name"], m["strategy"]) for m in metrics] == [("Train-accuracy", "min")]
    bad = cli("parse", "--experiment", str(tmp_path / "nothing.yaml"), str(log))
    assert bad.returncode == 2 and "nothing.yaml: cannot read the Experiment file" in bad.stderr


def test_a_trial_runs_its_run_spec_as_is(tmp_path: Path) -> None:
    # A Trial made by Katib's experiment controller: runSpec is already substituted, no --param needed.
    trial = {"apiVersion": "kubeflow.org/v1beta1", "kind": "Trial",
             "metadata": {"name": "random-abc12", "namespace": "kubeflow"},
             "spec": {"objective": {"type": "maximize", "objectiveMetricName": "Validation-accuracy",
                                    "additionalMetricNames": ["Train-accuracy"]},
                      "metricsCollector": {"collector": {"kind": "StdOut"}},
                      "primaryContainerName": "training-container",
                      "runSpec": {"apiVersion": "batch/v1", "kind": "Job",
                                  "spec": {"template": {"spec": {"containers": [{
                                      "name": "training-container", "image": "i",
                                      "command": [sys.executable, MXNET, "--num-epochs=2", "--lr=0.03"],
                                      "env": [{"name": "TRIAL_SEED", "value": "7"}]}]}}}}}}
    path = tmp_path / "trial.json"
    path.write_text(json.dumps(trial))
    done = cli("run", "--db", str(tmp_path / "k.db"), "--experiment", str(path), "--output", "json")
    assert done.returncode == 0, done.stderr
    assert "lr=0.03" in done.stderr
    observed = {m["name"]: m["count"] if "count" in m else m["latest"] for m in
                json.loads(done.stdout)["observation"]["metrics"]}
    assert set(observed) == {"Validation-accuracy", "Train-accuracy"}
    assert all(value != "unavailable" for value in observed.values())


def test_the_containers_env_reaches_the_command(tmp_path: Path) -> None:
    job = {"apiVersion": "batch/v1", "kind": "Job", "spec": {"template": {"spec": {"containers": [{
        "name": "main", "image": "i", "env": [{"name": "SCORE", "value": "${trialParameters.score}"}],
        "command": [sys.executable, "-c", "import os; print('Validation-accuracy=' + os.environ['SCORE'])"]}]}}}}
    experiment = yaml.safe_load((SEEDS / "random.yaml").read_text())
    experiment["spec"]["trialTemplate"].update(trialSpec=job, primaryContainerName="main",
                                               trialParameters=[{"name": "score", "reference": "lr"}])
    path = tmp_path / "env.yaml"
    path.write_text(yaml.safe_dump(experiment))
    done = cli("run", "--db", str(tmp_path / "k.db"), "--experiment", str(path), "--param", "lr=0.625",
               "--output", "json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["observation"]["metrics"][0]["latest"] == "0.625"


def test_a_trials_early_stopping_rules_stop_the_run(tmp_path: Path) -> None:
    trial = {"apiVersion": "kubeflow.org/v1beta1", "kind": "Trial", "metadata": {"name": "median-x1"},
             "spec": {"objective": {"type": "maximize", "objectiveMetricName": "accuracy"},
                      "earlyStoppingRules": [{"name": "accuracy", "value": "0.6", "comparison": "less",
                                              "startStep": 4}],
                      "primaryContainerName": "main",
                      "runSpec": {"apiVersion": "batch/v1", "kind": "Job", "spec": {"template": {"spec": {
                          "containers": [{"name": "main", "image": "i", "command": [
                              sys.executable, str(ROOT / "examples" / "train.py"), "--lr", "0.01", "--epochs",
                              "40", "--seconds", "8"]}]}}}}}}
    path = tmp_path / "trial.yaml"
    path.write_text(yaml.safe_dump(trial))
    done = cli("run", "--db", str(tmp_path / "k.db"), "--trial", "median-x1", "--experiment", str(path))
    assert done.returncode == 0, done.stderr
    assert "trial median-x1: early-stopped by rule accuracy;0.6;less;4" in done.stdout
    assert len(re.findall(r"^epoch=", done.stdout, flags=re.M)) < 40  # stopped before the end


SERVE = """
import http.server, sys, threading, time
state = {"loss": 0.5}
class Metrics(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = ("# TYPE loss gauge\\nloss %s\\n" % state["loss"]).encode()
        self.send_response(200 if self.path == "/custom" else 404)
        self.send_header("Content-Type", "text/plain; version=0.0.4")
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args):
        pass
server = http.server.HTTPServer(("127.0.0.1", int(sys.argv[1])), Metrics)
threading.Thread(target=server.serve_forever, daemon=True).start()
for value in (0.5, 0.25, 0.125):
    state["loss"] = value
    print("loss now", value, flush=True)
    time.sleep(1.5)
"""


def test_a_prometheus_experiment_scrapes_the_commands_endpoint(tmp_path: Path) -> None:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    (tmp_path / "serve.py").write_text(SERVE)
    experiment = _local_copy(tmp_path, "pytorchjob-mnist.yaml", "/opt/pytorch-mnist/mnist.py", PYTORCH,
                             metricsCollectorSpec={"collector": {"kind": "PrometheusMetric"},
                                                   "source": {"httpGet": {"port": port, "path": "/custom"}}})
    done = cli("run", "--db", str(tmp_path / "k.db"), "--experiment", str(experiment), "--param", "lr=0.01",
               "--param", "momentum=0.5", "--output", "json", "--", sys.executable, str(tmp_path / "serve.py"),
               str(port))
    assert done.returncode == 0, done.stderr
    # Not captured, the command's output goes where run's own does (today: stdout too, before the document).
    loss = json.loads(done.stdout.splitlines()[-1])["observation"]["metrics"][0]
    assert loss["latest"] in ("0.25", "0.125") and loss["max"] in ("0.5", "0.25")  # scraped as the values changed
    assert "loss now 0.125" in done.stdout + done.stderr


def test_a_push_experiment_runs_and_its_reports_count(tmp_path: Path) -> None:
    script = tmp_path / "push.py"
    script.write_text("from katib_metrics import report_metrics\n"
                      "for epoch in range(3):\n    report_metrics({'loss': 1 / (epoch + 1)})\n")
    experiment = _local_copy(tmp_path, "pytorchjob-mnist.yaml", "/opt/pytorch-mnist/mnist.py", PYTORCH,
                             metricsCollectorSpec={"collector": {"kind": "Push"}})
    done = cli("run", "--db", str(tmp_path / "k.db"), "--experiment", str(experiment), "--param", "lr=0.01",
               "--param", "momentum=0.5", "--output", "json", "--", sys.executable, str(script))
    assert done.returncode == 0, done.stderr
    loss = json.loads(done.stdout.splitlines()[-1])["observation"]["metrics"][0]
    assert (loss["min"], loss["max"], loss["strategy"]) == ("0.3333333333333333", "1.0", "min")
