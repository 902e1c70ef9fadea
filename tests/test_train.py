"""The train stage for real on a tiny config: reproducible, resumable after SIGKILL, DDP on CPU,
and `dvc repro` is a no-op right after a run."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time

import pytest

from posevit.core import evaluation_record
from posevit.core.config import load_params
from posevit.core.hashing import hash_directory
from posevit.models.bundle import load_bundle
from posevit.train.loop import TrainPaths, train
from tests.helpers.dvc_project import preprocessed_smoke_project, reproduced_smoke_project
from tests.helpers.workbook import check_workbook

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    """A project copy with the smoke config (2 epochs), preprocessed and trained once by `dvc repro`."""
    return reproduced_smoke_project(tmp_path_factory, tmp_path_factory.mktemp("train") / "posevit")


def test_repro_trains_a_bundle_and_a_second_repro_does_nothing(project):
    metrics = json.loads((project.root / "metrics/train.json").read_text())
    assert metrics["epochs"] == 2 and 0.0 <= metrics["best_val_acc"] <= 1.0
    assert metrics["train_images_per_s"] > 0 and metrics["trainable_params"] == metrics["total_params"]
    bundle = load_bundle(project.root / "models")
    assert bundle.labels[0] == "calling" and len(bundle.labels) == 15
    assert bundle.config.data_config["input_size"] == [3, 96, 96]
    assert (project.root / "plots/training_curves.png").stat().st_size > 5_000
    assert (project.root / "dvclive/train/plots/metrics/val/acc.tsv").read_text().count("\n") == 3  # header + 2 epochs
    again = project.dvc("repro")
    assert "Running stage" not in again.stdout, again.stdout
    assert not (project.root / "checkpoints/train").exists()


def test_evaluate_writes_metrics_plots_and_a_matching_workbook(project):
    metrics = json.loads((project.root / "metrics/test.json").read_text())
    assert list(metrics) == list(evaluation_record.TestMetrics.__annotations__) and metrics["n_test"] == 36
    check_workbook(project.root / "metrics/report.xlsx", metrics)
    rows = (project.root / "plots/predictions.csv").read_text().splitlines()
    assert rows[0] == "id,true,predicted,confidence" and len(rows) == 37
    for plot in ("confusion_matrix.png", "per_class_accuracy.png"):
        assert (project.root / "plots" / plot).stat().st_size > 10_000
    shown = project.dvc("metrics", "show", "--json").stdout
    assert '"f1_macro"' in shown


def test_an_edit_to_the_eval_transform_code_reruns_evaluate(project):
    """Training is deterministic, so the bundle would not change: evaluate must see the code edit itself."""
    source = project.root / "src/posevit/models/transforms.py"
    original = source.read_text()
    assert "up to date" in project.dvc("status").stdout
    try:
        source.write_text(original + "\n# an edit to the eval transform's module\n")
        status = json.loads(project.dvc("status", "--json").stdout)
    finally:
        source.write_text(original)
    assert "evaluate" in status and "changed deps" in json.dumps(status["evaluate"]), status
    assert "src/posevit/models" in json.dumps(status["evaluate"]), status
    assert "up to date" in project.dvc("status").stdout


def test_evaluate_without_a_bundle_fails_clearly(project, tmp_path):
    (tmp_path / "params.yaml").write_text((project.root / "params.yaml").read_text())
    result = subprocess.run(
        [sys.executable, "-m", "stages.evaluate"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env={**project.env, "PYTHONPATH": str(project.root)},
    )
    assert result.returncode == 2
    assert "models/config.json not found" in result.stderr and "dvc repro train" in result.stderr
    assert "Traceback" not in result.stderr


def test_same_params_and_seed_give_identical_val_metrics_and_bundle(project, tmp_path, monkeypatch):
    monkeypatch.chdir(project.root)
    cfg = load_params()
    runs = [train(cfg, TrainPaths.under(tmp_path / f"run{i}")) for i in range(2)]
    assert runs[0]["best_val_acc"] == runs[1]["best_val_acc"]
    history = [
        (tmp_path / f"run{i}/dvclive/train/plots/metrics/val/loss.tsv").read_text().splitlines() for i in range(2)
    ]
    assert [row.split("\t")[1:] for row in history[0]] == [row.split("\t")[1:] for row in history[1]]
    # Byte-identical bundles: one registry version per model, however often it is retrained.
    assert hash_directory(tmp_path / "run0/models") == hash_directory(tmp_path / "run1/models")


def test_a_killed_run_resumes_from_its_last_checkpoint(tmp_path_factory):
    project = preprocessed_smoke_project(
        tmp_path_factory, tmp_path_factory.mktemp("resume") / "posevit", "train.epochs=6"
    )
    command = [sys.executable, "-m", "stages.train"]
    first = subprocess.Popen(
        command, cwd=project.root, env=project.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    last = project.root / "checkpoints/train/last.ckpt"
    deadline = time.monotonic() + 300
    while not last.exists() and first.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    first.send_signal(signal.SIGKILL)
    first.wait()
    assert last.exists(), "no checkpoint was written before the kill"
    assert not (project.root / "models").exists()

    second = project.run(*command)
    log = second.stdout + second.stderr
    assert "resuming the interrupted run" in log and "Restoring states from the checkpoint" in log
    assert "Epoch 0:" not in log  # it continued instead of starting over
    assert json.loads((project.root / "metrics/train.json").read_text())["epochs"] == 6
    load_bundle(project.root / "models")


def test_ddp_on_cpu_with_two_processes(tmp_path_factory):
    project = preprocessed_smoke_project(tmp_path_factory, tmp_path_factory.mktemp("ddp") / "posevit", "trainer=ddp")
    result = project.run(sys.executable, "-m", "stages.train")
    log = result.stdout + result.stderr
    assert "Initializing distributed: GLOBAL_RANK: 1, MEMBER: 2/2" in log, log[-3000:]
    load_bundle(project.root / "models")
