"""The push stage as DVC runs it (`python -m stages.push`), against a real SeaweedFS: the quality gate,
the receipt, and clear, secret-free failures that leave latest.json alone."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import ValidationError

from posevit.core.config import PushConfig, write_params
from posevit.core.hashing import hash_directory
from posevit.devtools.local_s3 import free_port
from posevit.publish.aliases import history, read_pointer
from posevit.publish.catalog import PREDICTIONS_FILE, read_version
from posevit.publish.registry import ModelAddress
from posevit.publish.s3 import make_client
from tests.helpers import ROOT
from tests.helpers.bundles import tiny_bundle
from tests.helpers.registry_runs import push_run
from tests.helpers.s3 import s3_environment

METRICS = {
    "accuracy": 0.9,
    "precision_weighted": 0.91,
    "recall_weighted": 0.9,
    "f1_weighted": 0.9,
    "precision_macro": 0.9,
    "recall_macro": 0.9,
    "f1_macro": 0.89,
    "accuracy_ci_low": 0.88,
    "accuracy_ci_high": 0.92,
    "n_test": 1200,
}


def clean_env(**extra: str) -> dict[str, str]:
    """This environment without any AWS settings of the person running the tests."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    # The checkout's own src/ first: a worktree is tested on its code, not the editable install's.
    return {
        **env,
        "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "src")]),
        "AWS_EC2_METADATA_DISABLED": "true",
        **extra,
    }


class Workspace:
    """What the push stage reads: params.yaml, models/, metrics/test.json, metrics/report.xlsx."""

    def __init__(self, root: Path, bucket: str) -> None:
        self.root, self.bucket = root, bucket
        tiny_bundle(root / "models")
        (root / "metrics").mkdir()
        (root / "metrics" / "test.json").write_text(json.dumps(METRICS))
        (root / "metrics" / "report.xlsx").write_bytes(b"a workbook")
        (root / "metrics" / "export.json").write_text(json.dumps({"opset": 18}))
        (root / "exports").mkdir()
        for name in ("model.onnx", "model.int8.onnx", "input.json"):
            (root / "exports" / name).write_bytes(f"export {name}".encode())
        self.configure()

    def configure(self, *overrides: str) -> None:
        write_params(
            [f"push.bucket={self.bucket}", *overrides], output=self.root / "params.yaml", config_dir=ROOT / "conf"
        )

    def push(self, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "stages.push"], cwd=self.root, env=env, capture_output=True, text=True, timeout=300
        )

    @property
    def receipt(self) -> dict:
        return json.loads((self.root / "metrics" / "push.json").read_text())


@pytest.fixture
def workspace(tmp_path, bucket) -> Workspace:
    return Workspace(tmp_path, bucket)


@pytest.fixture
def good_env(s3_server) -> dict[str, str]:
    return clean_env(**s3_environment(s3_server))


def latest_bytes(s3_server, bucket: str) -> bytes:
    return s3_server.client().get_object(Bucket=bucket, Key="registry/posevit/latest.json")["Body"].read()


def test_passing_the_bar_publishes_and_writes_a_receipt(workspace, good_env, s3_server):
    result = workspace.push(good_env)
    assert result.returncode == 0, result.stderr
    version = hash_directory(workspace.root / "models")
    receipt = workspace.receipt
    assert receipt["pushed"] is True and receipt["version"] == version
    assert receipt["uri"] == f"s3://{workspace.bucket}/registry/posevit/{version}/"
    assert receipt["conditions"] == {"accuracy": {"value": 0.9, "threshold": 0.85, "passed": True}}
    assert json.loads(latest_bytes(s3_server, workspace.bucket))["version"] == version
    assert "PASS accuracy" in result.stderr
    listing = s3_server.client().list_objects_v2(Bucket=workspace.bucket, Prefix=f"registry/posevit/{version}/")
    published = {item["Key"].split(f"{version}/", 1)[1] for item in listing["Contents"]}
    assert published == {
        "manifest.json",
        "models/config.json",
        "models/model.safetensors",
        "exports/model.onnx",
        "exports/model.int8.onnx",
        "exports/input.json",
        "metrics/test.json",
        "metrics/export.json",
        "metrics/report.xlsx",
    }
    assert receipt["files"] == 8 and "not_added" not in receipt


def test_failing_the_bar_is_not_an_error_and_touches_nothing(workspace, good_env, s3_server):
    workspace.configure("push.conditions=[{metric:accuracy,threshold:0.85},{metric:f1_macro,threshold:0.95}]")
    result = workspace.push(good_env)
    assert result.returncode == 0, result.stderr
    assert workspace.receipt["pushed"] is False and workspace.receipt["uri"] is None
    assert workspace.receipt["conditions"]["f1_macro"] == {"value": 0.89, "threshold": 0.95, "passed": False}
    assert workspace.receipt["conditions"]["accuracy"]["passed"] is True
    assert "FAIL f1_macro" in result.stderr and "nothing published" in result.stderr
    assert "Contents" not in s3_server.client().list_objects_v2(Bucket=workspace.bucket)


def test_an_unknown_metric_is_a_config_error(workspace, good_env):
    (workspace.root / "params.yaml").write_text(
        (workspace.root / "params.yaml").read_text().replace("metric: accuracy", "metric: acuracy")
    )
    result = workspace.push(good_env)
    assert result.returncode == 2
    assert "push.conditions.0.metric = 'acuracy'" in result.stderr and "f1_weighted" in result.stderr


@pytest.mark.parametrize(
    "fault, message",
    [
        ("no credentials", "no AWS credentials found"),
        ("wrong secret", "rejected the credentials"),
        ("unknown key", "rejected the credentials"),
        ("unreachable endpoint", "cannot reach S3 at http://127.0.0.1:"),
        ("missing bucket", "bucket 'no-such-bucket' does not exist"),
    ],
)
def test_s3_faults_fail_clearly_keep_latest_and_print_no_secret(
    workspace, good_env, s3_server, tmp_path, fault, message
):
    assert workspace.push(good_env).returncode == 0
    before = latest_bytes(s3_server, workspace.bucket)
    (workspace.root / "metrics" / "test.json").write_text(json.dumps({**METRICS, "accuracy": 0.95}))
    tiny_bundle(workspace.root / "models", seed=1)  # a new version that must not become latest

    key, secret = s3_server.credentials()
    env = dict(good_env)
    if fault == "no credentials":
        env = clean_env(AWS_CONFIG_FILE=str(tmp_path / "none"), AWS_SHARED_CREDENTIALS_FILE=str(tmp_path / "none"))
    elif fault in ("wrong secret", "unknown key"):
        env = clean_env(
            AWS_ACCESS_KEY_ID=key if fault == "wrong secret" else "PVNOSUCHKEY0000",
            AWS_SECRET_ACCESS_KEY="wrong-" + secret,
            AWS_ENDPOINT_URL_S3=s3_server.endpoint,
        )
    elif fault == "unreachable endpoint":
        workspace.configure(f"push.endpoint_url=http://127.0.0.1:{free_port()}")
    else:
        workspace.configure("push.bucket=no-such-bucket")
    result = workspace.push(env)

    assert result.returncode == 2, result.stdout + result.stderr
    assert message in result.stderr and "Traceback" not in result.stderr
    assert secret not in result.stdout + result.stderr and "wrong-" not in result.stdout + result.stderr
    assert latest_bytes(s3_server, workspace.bucket) == before


def test_dvc_experiments_do_not_publish_unless_asked(workspace, good_env, s3_server):
    experiment_env = {**good_env, "DVC_EXP_NAME": "sweep-point-3"}
    result = workspace.push(experiment_env)
    assert result.returncode == 0, result.stderr
    assert workspace.receipt["pushed"] is False and "dvc exp apply sweep-point-3" in workspace.receipt["skipped"]
    assert workspace.receipt["conditions"]["accuracy"]["passed"] is True
    assert "Contents" not in s3_server.client().list_objects_v2(Bucket=workspace.bucket)

    workspace.configure("push.from_experiments=true")
    assert workspace.push(experiment_env).returncode == 0
    assert workspace.receipt["pushed"] is True


def test_push_publishes_predictions_and_scores_and_moves_its_alias_through_the_gate(aws_env, bucket, tmp_path):
    """push.alias: the first push creates it; a worse model is still published (latest moves) but the alias
    stays, and the receipt names the metric; a better one moves it."""
    client, address = make_client(), ModelAddress(bucket, "registry", "posevit")
    first = push_run(tmp_path, bucket, seed=0, right=set(range(108)), alias="staging")  # accuracy 0.9
    assert first["alias"] == {"name": "staging", "moved": True, "why": "moved from (new)"}
    info = read_version(client, address, first["version"])
    assert PREDICTIONS_FILE in info.manifest["files"] and info.gate == ["accuracy"]
    assert info.metrics["accuracy"] == 0.9 and info.int8_accuracy == pytest.approx(0.89)

    worse = push_run(tmp_path, bucket, seed=1, right=set(range(96)), alias="staging")  # accuracy 0.8
    assert worse["pushed"] and worse["alias"]["moved"] is False
    assert "accuracy 0.8000 < 0.9000" in worse["alias"]["why"] and "--force" in worse["alias"]["why"]
    assert read_pointer(client, address, "latest")[0]["version"] == worse["version"]
    assert read_pointer(client, address, "staging")[0]["version"] == first["version"]

    better = push_run(tmp_path, bucket, seed=2, right=set(range(114)), alias="staging")
    assert better["alias"]["moved"] is True
    moves = history(client, address, "staging")
    assert [m["version"] for m in moves] == [first["version"], better["version"]]
    assert moves[-1]["message"] == "push stage" and moves[-1]["from_version"] == first["version"]


def test_push_alias_must_be_an_alias_name_other_than_latest():
    for alias, problem in (("latest", "latest moves with every push"), ("Prod", "String should match pattern")):
        with pytest.raises(ValidationError, match=problem):
            PushConfig(bucket="posevit-models", conditions=[{"metric": "accuracy", "threshold": 0.5}], alias=alias)
