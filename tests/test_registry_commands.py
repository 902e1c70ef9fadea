"""`posevit registry` in-process through the real `posevit` main(argv), against the real SeaweedFS; one subprocess
shows the exit status and the one-line error a shell sees."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from scipy.stats import binomtest

from posevit.cli import main
from posevit.publish.aliases import history, move_alias, read_pointer
from posevit.publish.catalog import PREDICTIONS_FILE
from posevit.publish.registry import MANIFEST_FILE, ModelAddress, publish
from posevit.publish.s3 import make_client
from tests.helpers.registry_runs import LABELS, push_run
from tests.helpers.s3 import s3_environment
from tests.test_registry import version_files


@pytest.fixture
def registry(aws_env, bucket) -> str:
    return f"s3://{bucket}/registry/posevit"


@pytest.fixture
def address(bucket) -> ModelAddress:
    return ModelAddress(bucket, "registry", "posevit")


def registry_command(capsys, *argv: str) -> tuple[int, str, str]:
    """(exit status, stdout, stderr) of `posevit registry ARGV`, run in this process."""
    try:
        status = main(["registry", *argv])
    except SystemExit as exit_:
        status = int(exit_.code or 0)
    captured = capsys.readouterr()
    return status, captured.out, captured.err


@pytest.fixture(scope="module")
def pushed(s3_server, tmp_path_factory) -> tuple[str, list[str]]:
    """Versions with accuracy 0.8, 0.9, 0.85, pushed once for the module in that order: (their bucket, versions)."""
    source = f"pushed-{os.getpid()}"
    s3_server.create_buckets([source])
    root = tmp_path_factory.mktemp("runs")
    with pytest.MonkeyPatch.context() as patch:
        for name, value in s3_environment(s3_server).items():
            patch.setenv(name, value)
        versions = [
            push_run(root, source, seed, right)["version"]
            for seed, right in ((0, set(range(96))), (1, set(range(108))), (2, set(range(12, 114))))
        ]
    return source, versions


@pytest.fixture
def three_runs(registry, bucket, pushed) -> list[str]:
    """This test's own registry holding the three versions (copied inside S3), production -> the 0.9 one."""
    source, versions = pushed
    client = make_client()
    for item in client.list_objects_v2(Bucket=source)["Contents"]:
        client.copy_object(Bucket=bucket, Key=item["Key"], CopySource={"Bucket": source, "Key": item["Key"]})
    move_alias(client, ModelAddress(bucket, "registry", "posevit"), "production", versions[1], by="ana")
    return versions


def test_list_shows_versions_newest_first_with_scores_and_aliases(capsys, registry, three_runs):
    status, out, _ = registry_command(capsys, "list", "--registry", registry, "--json")
    assert status == 0
    rows = json.loads(out)
    assert [row["version"] for row in rows] == three_runs[::-1]
    assert [row["aliases"] for row in rows] == [["latest"], ["production"], []]
    assert rows[1]["accuracy"] == 0.9 and rows[1]["int8_accuracy"] == pytest.approx(0.89) and rows[1]["size"] > 0
    assert rows[0]["published_at"] >= rows[1]["published_at"] >= rows[2]["published_at"]

    status, out, _ = registry_command(capsys, "list", "-r", registry)
    header, *lines = out.splitlines()
    assert header.split() == ["VERSION", "PUBLISHED", "ACCURACY", "F1", "ECE", "INT8", "ACC", "SIZE", "ALIASES"]
    assert lines[1].startswith(three_runs[1]) and "0.9000" in lines[1] and lines[1].endswith("production")


def test_a_version_published_before_scores_joined_the_manifest_is_read_from_its_metrics(
    capsys, registry, address, tmp_path
):
    version, files = version_files(tmp_path, seed=0, accuracy=0.75)  # published as before this change
    publish(make_client(), address, version, files, progress=False)
    status, out, _ = registry_command(capsys, "show", "latest", "-r", registry, "--json")
    shown = json.loads(out)
    assert status == 0 and shown["version"] == version and shown["accuracy"] == 0.75
    assert shown["gate"] == ["accuracy"] and shown["int8_accuracy"] is None


def test_show_names_a_version_by_alias_with_its_manifest_metrics_and_history(capsys, registry, address, three_runs):
    status, out, _ = registry_command(capsys, "show", "production", "-r", registry, "--json")
    shown = json.loads(out)
    assert status == 0 and shown["version"] == three_runs[1] and shown["aliases"] == ["production"]
    assert shown["metrics"]["accuracy"] == 0.9 and shown["gate"] == ["accuracy"]
    assert PREDICTIONS_FILE in shown["files"] and "models/model.safetensors" in shown["files"]
    assert [(m["alias"], m["by"], m["version"]) for m in shown["history"]] == [("production", "ana", three_runs[1])]
    status, out, _ = registry_command(capsys, "show", three_runs[0], "-r", registry)
    assert status == 0 and f"version    {three_runs[0]}" in out and "no alias has pointed at it" in out
    status, _, err = registry_command(capsys, "show", "staging", "-r", registry)
    assert status == 2 and err.startswith("error: no alias and no version named 'staging'") and err.count("\n") == 1


def test_diff_runs_mcnemars_exact_test_on_the_paired_predictions(capsys, registry, bucket, tmp_path, three_runs):
    # A (0.8) is right on images 0..95, B (0.85) on 12..113: 12 only A, 18 only B.
    status, out, _ = registry_command(capsys, "diff", three_runs[0], three_runs[2], "-r", registry, "--json")
    assert status == 0
    result = json.loads(out)
    test = result["mcnemar"]
    assert (test["only_a_right"], test["only_b_right"], test["both_right"], test["both_wrong"]) == (12, 18, 84, 6)
    assert test["p_value"] == pytest.approx(binomtest(12, 30, 0.5).pvalue)
    assert test["verdict"].startswith("no significant difference")
    assert result["metrics"]["accuracy"] == [0.8, 0.85]
    assert set(result["per_class_accuracy"]) == set(LABELS)
    status, out, _ = registry_command(capsys, "diff", three_runs[0], "production", "-r", registry)
    assert status == 0 and "McNemar's exact test on 120 paired images: 0 only A got right, 12 only B" in out
    assert "B is significantly better" in out

    other = push_run(tmp_path, bucket, 3, set(range(50)), images=100)["version"]  # scored on another split
    status, _, err = registry_command(capsys, "diff", three_runs[0], other, "-r", registry)
    assert status == 2 and "different test splits (120 and 100 images, 100 shared)" in err


def test_promote_refuses_a_worse_version_naming_the_metric_unless_forced(capsys, registry, address, three_runs):
    status, _, err = registry_command(capsys, "promote", three_runs[2], "--to", "production", "-r", registry)
    assert status == 2 and "accuracy 0.8500 < 0.9000" in err and "--force" in err
    assert read_pointer(make_client(), address, "production")[0]["version"] == three_runs[1]

    status, out, _ = registry_command(
        capsys, "promote", three_runs[2], "--to", "production", "--force", "-m", "hotfix", "--by", "bo", "-r", registry
    )
    assert status == 0 and "(forced past accuracy 0.8500 < 0.9000)" in out
    last = history(make_client(), address, "production")[-1]
    assert (last["by"], last["message"]) == ("bo", "hotfix [forced past: accuracy 0.8500 < 0.9000]")
    status, out, _ = registry_command(capsys, "promote", "production", "--to", "staging", "-r", registry)
    assert status == 0 and out.strip() == f"staging: (new) -> {three_runs[2]}"  # an alias names a version too


def test_rollback_goes_back_to_the_previous_version_and_says_when_there_is_none(capsys, registry, address, three_runs):
    status, _, err = registry_command(capsys, "rollback", "production", "-r", registry)
    assert status == 2 and f"{three_runs[1]} was its first" in err
    registry_command(capsys, "promote", three_runs[2], "--to", "production", "--force", "-r", registry)
    status, out, _ = registry_command(capsys, "rollback", "production", "-r", registry, "--by", "cy")
    assert status == 0 and out.strip() == f"production: {three_runs[2]} -> {three_runs[1]} (rolled back)"
    moves = history(make_client(), address, "production")
    assert [m["version"] for m in moves] == [three_runs[1], three_runs[2], three_runs[1]]
    assert moves[-1]["by"] == "cy" and moves[-1]["message"] == f"rollback from {three_runs[2]}"


def test_gc_is_a_dry_run_unless_yes_and_keeps_what_aliases_and_recent_moves_name(
    capsys, registry, address, bucket, tmp_path, three_runs
):
    client = make_client()
    fourth = push_run(tmp_path, bucket, 4, set(range(110)))["version"]  # latest now
    _, etag = read_pointer(client, address, "production")
    move_alias(client, address, "production", three_runs[2], by="ana", expected_etag=etag)  # from three_runs[1]

    status, out, _ = registry_command(capsys, "gc", "--keep", "1", "-r", registry)
    assert status == 0 and f"would delete  {three_runs[0]}" in out and "1 version(s) would be deleted" in out
    assert f"keep    {three_runs[1]}  (production history (move 2))" in out
    assert client.head_object(Bucket=bucket, Key=address.key(three_runs[0], MANIFEST_FILE))  # nothing deleted

    status, out, _ = registry_command(capsys, "gc", "--keep", "0", "--yes", "-r", registry)
    assert status == 0 and "deleted 2 version(s)" in out
    status, out, _ = registry_command(capsys, "list", "-r", registry, "--json")
    assert [row["version"] for row in json.loads(out)] == [fourth, three_runs[2]]
    left = client.list_objects_v2(Bucket=bucket, Prefix=address.key(three_runs[0]) + "/")
    assert "Contents" not in left


def test_a_refusal_is_one_line_on_stderr_and_exit_status_2_in_a_shell(registry, three_runs, s3_server):
    command = [sys.executable, "-m", "posevit.cli", "registry", "promote", three_runs[0], "--to", "production"]
    result = subprocess.run([*command, "-r", registry], capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1
    assert "accuracy 0.8000 < 0.9000" in result.stderr and "Traceback" not in result.stderr
