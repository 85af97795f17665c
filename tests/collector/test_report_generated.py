"""The generated gRPC code matches the .proto files, Katib's wire names, and the dependency pins."""

from __future__ import annotations

import pathlib
import re
import shutil
import subprocess
import tomllib

import pytest

from katib_metrics.collector.report._generated import api_pb2, health_pb2

ROOT = pathlib.Path(__file__).resolve().parents[2]
GENERATED = ROOT / "collector" / "report" / "_generated"


def _lower_bound(requirement: str) -> tuple[int, ...]:
    match = re.search(r">=([\d.]+)", requirement)
    assert match, requirement
    return tuple(int(part) for part in match.group(1).split("."))


def _pin(name: str) -> str:
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    found: str = next(req for req in extras["collector"] if re.match(rf"{name}\b", req))
    return found


def test_protobuf_and_grpcio_pins_admit_no_runtime_older_than_the_generated_code() -> None:
    gen = (GENERATED / "api_pb2.py").read_text()
    match = re.search(r"Domain\.PUBLIC,\s*(\d+),\s*(\d+),\s*(\d+),", gen)
    assert match, "generated code has no runtime version check: update this test"
    assert _lower_bound(_pin("protobuf")) >= tuple(int(g) for g in match.groups())
    grpc_gen = re.search(r"GRPC_GENERATED_VERSION = '([\d.]+)'", (GENERATED / "api_pb2_grpc.py").read_text())
    assert grpc_gen
    assert _lower_bound(_pin("grpcio")) >= tuple(int(p) for p in grpc_gen.group(1).split("."))


def test_wire_names_and_field_numbers_are_katibs() -> None:
    services = api_pb2.DESCRIPTOR.services_by_name
    assert api_pb2.DESCRIPTOR.package == "api.v1.beta1"
    assert [m.full_name for m in services["DBManager"].methods] == [
        "api.v1.beta1.DBManager.ReportObservationLog",
        "api.v1.beta1.DBManager.GetObservationLog",
        "api.v1.beta1.DBManager.DeleteObservationLog",
    ]
    assert [m.name for m in services["EarlyStopping"].methods] == ["SetTrialStatus"]
    fields = {
        name: {f.name: f.number for f in api_pb2.DESCRIPTOR.message_types_by_name[name].fields}
        for name in api_pb2.DESCRIPTOR.message_types_by_name
    }
    assert fields["MetricLog"] == {"time_stamp": 1, "metric": 2}
    assert fields["Metric"] == {"name": 1, "value": 2}
    assert fields["ObservationLog"] == {"metric_logs": 1}
    assert fields["ReportObservationLogRequest"] == {"trial_name": 1, "observation_log": 2}
    assert fields["GetObservationLogRequest"] == {
        "trial_name": 1,
        "metric_name": 2,
        "start_time": 3,
        "end_time": 4,
    }
    assert fields["GetObservationLogReply"] == {"observation_log": 1}
    assert fields["EarlyStoppingRule"] == {"name": 1, "value": 2, "comparison": 3, "start_step": 4}
    assert dict(api_pb2.ComparisonType.items()) == {
        "UNKNOWN_COMPARISON": 0,
        "EQUAL": 1,
        "LESS": 2,
        "GREATER": 3,
    }
    health = health_pb2.DESCRIPTOR
    assert health.package == "grpc.health.v1" and "Check" in health.services_by_name["Health"].methods_by_name
    assert dict(health_pb2.HealthCheckResponse.ServingStatus.items()) == {
        "UNKNOWN": 0,
        "SERVING": 1,
        "NOT_SERVING": 2,
    }


@pytest.mark.timeout(60)
def test_generated_code_is_up_to_date_with_the_protos(tmp_path: pathlib.Path) -> None:
    pytest.importorskip("grpc_tools")
    copy = tmp_path / "repo"
    (copy / "collector" / "report" / "_generated").mkdir(parents=True)
    (copy / "scripts").mkdir()
    shutil.copy(ROOT / "scripts" / "gen-api-protos", copy / "scripts")
    for proto in ("api.proto", "health.proto"):
        shutil.copy(ROOT / "collector" / "report" / proto, copy / "collector" / "report")
    subprocess.run([str(copy / "scripts" / "gen-api-protos")], check=True, capture_output=True, timeout=60)
    fresh = copy / "collector" / "report" / "_generated"
    names = sorted(p.name for p in fresh.iterdir())
    assert names == sorted(p.name for p in GENERATED.iterdir() if p.is_file())
    stale = [name for name in names if (fresh / name).read_bytes() != (GENERATED / name).read_bytes()]
    assert not stale, f"run scripts/gen-api-protos: {stale} differ from the .proto files"
