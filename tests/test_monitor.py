"""The drift report on logs made by real predictions: a tiny model that tells the demo classes apart a little
(a random network whose head is fitted to its features in closed form, seconds, no training loop) answers a
test split (its reference, written by the evaluate stage's own writer) and then, through the in-process API
with the prediction log on, a stream of photos drawn from that split (no alert) or a shifted one (three
classes only, heavily blurred: the alert names what moved and on which day). The reference is also fetched
from a version published on the real SeaweedFS, with the log under an S3 prefix."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageFilter

from posevit.cli import main as cli
from posevit.core.config import ModelConfig
from posevit.core.hashing import hash_directory
from posevit.core.labels import ACTION_CLASSES
from posevit.data.demo import render_sample, sample_rng
from posevit.evaluate.predict import Predictions, write_predictions
from posevit.infer.backends import load_predictor
from posevit.infer.model_source import from_folder
from posevit.models.bundle import save_bundle
from posevit.models.bundle_config import BundleConfig
from posevit.models.factory import create_model
from posevit.models.preprocess import EvalPreprocess
from posevit.models.transforms import model_data_config
from posevit.monitor.report import PLOT_FILE, REPORT_FILE
from posevit.publish.registry import ModelAddress, publish
from posevit.publish.s3 import make_client
from tests.helpers.api import api_client
from tests.helpers.images import encode
from tests.test_structure import loaded_modules

pytestmark = pytest.mark.timeout(300)
IMAGE_SIZE, PER_CLASS = 96, 20
DAY_ONE, DAY_TWO = datetime(2026, 5, 4, 9, tzinfo=UTC), datetime(2026, 5, 5, 9, tzinfo=UTC)
SHIFTED_CLASSES = ("calling", "dancing", "sleeping")


def demo_photos(seed: int, per_class: int, classes=ACTION_CLASSES) -> list[tuple[Image.Image, str]]:
    labels = [ACTION_CLASSES.index(name) for name in classes]
    return [
        (render_sample(label, sample_rng(seed, i), IMAGE_SIZE), ACTION_CLASSES[label])
        for i, label in enumerate(labels * per_class)
    ]


def probe_bundle(directory: Path) -> Path:
    """A random network whose head is a ridge regression on its own features of demo photos: it tells the classes
    apart a little (~0.2 accuracy, chance 0.07) and answers with spread-out confidences, as a real model does."""
    torch.manual_seed(0)
    model = create_model(ModelConfig(name="vit_convstem_tiny"), num_classes=len(ACTION_CLASSES)).eval()
    preprocess = EvalPreprocess(model_data_config(model))
    photos = demo_photos(seed=12, per_class=PER_CLASS)
    pixels = torch.from_numpy(np.stack([preprocess(image) for image, _ in photos]))
    with torch.no_grad():
        features = model.forward_head(model.forward_features(pixels), pre_logits=True)
    mean, std = features.mean(0), features.std(0) + 1e-6
    design = torch.cat([(features - mean) / std, torch.ones(len(features), 1)], dim=1)
    targets = torch.nn.functional.one_hot(torch.tensor([ACTION_CLASSES.index(label) for _, label in photos])) * 2 - 1
    solution = torch.linalg.solve(design.T @ design + 10 * torch.eye(design.shape[1]), design.T @ targets.float())
    solution *= 10  # logits scale: confidences from ~0.2 to ~0.8
    head = model.get_submodule("head")
    with torch.no_grad():
        head.weight.copy_((solution[:-1] / std[:, None]).T)
        head.bias.copy_(solution[-1] - (mean / std) @ solution[:-1])
    config = BundleConfig(
        model_name="vit_convstem_tiny", labels=list(ACTION_CLASSES), data_config=model_data_config(model)
    )
    save_bundle(directory, model, config)
    return directory


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """(model, the test split's photos, its predictions.csv as the evaluate stage writes it)."""
    root = tmp_path_factory.mktemp("monitor")
    served = from_folder(probe_bundle(root / "run" / "models"))
    predictor = load_predictor(served, "cpu", "torch")
    split = demo_photos(seed=11, per_class=PER_CLASS)
    probabilities = predictor.forward(np.stack([predictor.preprocess(image) for image, _ in split]))
    predictions = Predictions(
        ids=[f"test/{i}" for i in range(len(split))],
        targets=np.array([ACTION_CLASSES.index(label) for _, label in split]),
        logits=np.log(probabilities),  # softmax(log p) = p: the served probabilities, as evaluate computes them
    )
    reference = root / "run" / "plots" / "predictions.csv"
    write_predictions(reference, predictions, list(ACTION_CLASSES))
    return (predictor, served), [image for image, _ in split], reference


def log_stream(model, log: str, days: dict[datetime, list[Image.Image]]) -> None:
    """Each day's photos through the API with the prediction log on, the log's clock set to that day."""
    with api_client(model, prediction_log=log, prediction_log_max_records=50) as (client, _):
        prediction_log = client.app.state.prediction_log
        for day, photos in days.items():
            prediction_log.drain()
            prediction_log.now = lambda day=day: day.timestamp()
            for image in photos:
                response = client.post("/v1/predict", files={"file": ("photo.png", encode(image, "PNG"))})
                assert response.status_code == 200, response.text
        prediction_log.drain()


def drawn_from(split: list[Image.Image], count: int, seed: int) -> list[Image.Image]:
    rng = np.random.default_rng(seed)
    return [split[i] for i in rng.integers(0, len(split), count)]


def shifted(count: int) -> list[Image.Image]:
    photos = demo_photos(seed=13, per_class=count // len(SHIFTED_CLASSES), classes=SHIFTED_CLASSES)
    return [image.filter(ImageFilter.GaussianBlur(4)) for image, _ in photos]


def test_photos_drawn_from_the_test_split_do_not_alert(world, tmp_path, capsys):
    model, split, reference = world
    log = tmp_path / "log"
    log_stream(model, str(log), {DAY_ONE: drawn_from(split, 150, seed=1), DAY_TWO: drawn_from(split, 150, seed=2)})
    output = tmp_path / "report"
    assert cli(["monitor", str(log), "--reference", str(reference), "--report-dir", str(output)]) == 0
    said = capsys.readouterr().out
    assert f"version {model[1].version}, 300 answers over 2 day(s): no drift past the thresholds" in said
    report = (output / REPORT_FILE).read_text()
    assert "**no drift** past the thresholds" in report and "| 2026-05-04 | 150 |" in report
    assert "| 2026-05-05 | 150 |" in report and "What moved" not in report
    assert Image.open(output / PLOT_FILE).size[0] > 1000


def test_a_shifted_stream_alerts_naming_what_moved_and_when(world, tmp_path, capsys):
    model, split, reference = world
    log = tmp_path / "log"
    log_stream(model, str(log), {DAY_ONE: drawn_from(split, 150, seed=3), DAY_TWO: shifted(150)})
    output = tmp_path / "report"
    assert cli(["monitor", str(log), "--reference", str(reference), "--report-dir", str(output)]) == 1
    said = capsys.readouterr().out
    alerts = [line for line in said.splitlines() if line.startswith("drift ")]
    assert alerts and all(line.startswith(("drift all:", "drift 2026-05-05:")) for line in alerts), said
    assert any(line.startswith("drift 2026-05-05: class distribution: PSI") for line in alerts), said
    assert any(line.startswith("drift 2026-05-05: confidence: Kolmogorov-Smirnov") for line in alerts), said
    report = (output / REPORT_FILE).read_text()
    assert "**ALERT**" in report and "## What moved" in report
    day_one = next(line for line in report.splitlines() if line.startswith("| 2026-05-04 |"))
    assert day_one.endswith("| ok |")  # the first day's photos were the test split's
    # Thresholds are settings: loose enough ones let the same log pass.
    loose = ["--max-psi", "50", "--max-ks-statistic", "1", "--max-low-confidence-increase", "1"]
    assert cli(["monitor", str(log), "--reference", str(reference), "--report-dir", str(output), *loose]) == 0


def test_the_reference_comes_from_the_published_version_and_the_log_from_s3(world, aws_env, bucket, capsys, tmp_path):
    model, split, reference = world
    predictor, served = model
    address = ModelAddress(bucket, "registry", "posevit")
    files = {f"models/{p.name}": p for p in served.bundle_dir.iterdir()}
    publish(make_client(), address, hash_directory(served.bundle_dir), files | {"metrics/predictions.csv": reference})
    log = f"s3://{bucket}/logs"
    log_stream(model, log, {DAY_ONE: shifted(120)})
    args = ["monitor", log, "--reference", f"{address.uri()}:latest", "--report-dir", str(tmp_path)]
    assert cli(args) == 1
    assert f"version {served.version}, 120 answers over 1 day(s)" in capsys.readouterr().out
    # A version published without its predictions says so, and what to compare with instead.
    other = ModelAddress(bucket, "registry", "older")
    publish(make_client(), other, hash_directory(served.bundle_dir), files, progress=False)
    with pytest.raises(SystemExit) as done:
        cli(["monitor", log, "--reference", f"{other.uri()}@{served.version}"])
    assert done.value.code == 2
    assert "was published without metrics/predictions.csv" in capsys.readouterr().err


def test_bad_inputs_are_one_line_errors(world, tmp_path, capsys):
    model, split, reference = world
    log = tmp_path / "log"
    log_stream(model, str(log), {DAY_ONE: split[:3]})
    for args, words in [
        ([str(log)], "say what to compare with: --reference"),
        ([str(tmp_path / "none"), "--reference", str(reference)], "no such prediction log"),
        ([str(log), "--reference", str(log / "x.csv")], "cannot read it"),
        ([str(log), "--reference", str(reference), "--version", "abc"], "has no answers of version abc; it holds"),
        ([str(log), "--reference", str(reference), "--max-psi", "0"], "monitor.max_psi = '0' is invalid"),
    ]:
        with pytest.raises(SystemExit) as done:
            cli(["monitor", *args])
        error = capsys.readouterr().err
        assert done.value.code == 2 and words in error and error.count("\n") == 1, error


def test_the_monitor_runs_without_torch():
    modules = loaded_modules("import posevit.monitor.command, posevit.monitor.drift, posevit.monitor.report")
    assert not {name.split(".")[0] for name in modules} & {"torch", "timm", "datasets", "dvc", "lightning"}
