"""The export stage's work on a real bundle: ONNX fp32 and int8 files, OpenVINO IR fp32 and static int8, parity on
a test split, the bar; and the server running the exports through ONNX Runtime and OpenVINO with the same API."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from posevit.core.config import ExportConfig
from posevit.export.parity import FormatParity
from posevit.export.run import ExportMetrics, ExportPaths, export, parity_problems
from tests.helpers.bundles import tiny_bundle
from tests.helpers.images import action_dataset, balanced_labels, png_bytes
from tests.helpers.server import RunningApp
from tests.helpers.slim import serving_env

pytestmark = pytest.mark.timeout(600)


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    """models/ (a decisive random bundle), data/processed/{train,test}, and the exports made from them."""
    root = tmp_path_factory.mktemp("export")
    tiny_bundle(root / "models", seed=5, head_scale=40.0)
    for split, per_class, seed in (("train", 2, 2), ("test", 4, 1)):
        images = action_dataset(balanced_labels(per_class), seed=seed)
        images = images.add_column("id", [f"{split}/{i}" for i in range(len(images))])
        images.save_to_disk(str(root / "data/processed" / split))
    paths = ExportPaths(
        models=root / "models", data=root / "data/processed", exports=root / "exports", log=root / "export.log"
    )
    (root / "export.json").write_text(json.dumps(export(ExportConfig(), paths)))
    return root


def test_export_writes_fp32_int8_and_an_input_spec(project):
    assert sorted(p.name for p in (project / "exports").iterdir()) == [
        "input.json",
        "model.int8.onnx",
        "model.onnx",
        "openvino",
    ]
    assert sorted(p.name for p in (project / "exports/openvino").iterdir()) == [
        "model.bin",
        "model.int8.bin",
        "model.int8.xml",
        "model.xml",
    ]
    spec = json.loads((project / "exports/input.json").read_text())
    assert spec["input"] == "pixels" and spec["data_config"]["input_size"] == [3, 96, 96] and len(spec["labels"]) == 15
    assert not (project / "exports.partial").exists()


def test_onnx_fp32_matches_pytorch_and_int8_is_measured(project):
    metrics = json.loads((project / "export.json").read_text())
    assert metrics["n_test"] == 60 and metrics["opset"] == 18
    assert metrics["onnx"]["top1_agreement"] == 1.0 and metrics["onnx"]["max_abs_logit_diff"] < 1e-3
    assert metrics["onnx"]["accuracy"] == metrics["pytorch_accuracy"]
    assert 0.0 <= metrics["onnx_int8"]["top1_agreement"] <= 1.0 and metrics["onnx_int8"]["max_abs_logit_diff"] > 0
    assert metrics["int8_accuracy_drop"] == pytest.approx(
        metrics["pytorch_accuracy"] - metrics["onnx_int8"]["accuracy"]
    )


def test_openvino_fp32_matches_pytorch_and_static_int8_is_measured_after_calibrating_on_train(project):
    metrics = json.loads((project / "export.json").read_text())
    assert metrics["openvino"]["top1_agreement"] == 1.0 and metrics["openvino"]["max_abs_logit_diff"] < 1e-3
    assert metrics["openvino"]["accuracy"] == metrics["pytorch_accuracy"]
    rows = ["openvino_int8", "openvino_int8_bf16"] if metrics["cpu_has_native_bf16"] else ["openvino_int8"]
    assert [name for name in metrics if name.startswith("openvino_int8") and "calibration" not in name] == rows
    for name in rows:
        assert 0.0 <= metrics[name]["top1_agreement"] <= 1.0 and metrics[name]["max_abs_logit_diff"] > 0
        assert metrics[name]["accuracy_drop"] == pytest.approx(metrics["pytorch_accuracy"] - metrics[name]["accuracy"])
    # 300 asked for, the train split holds 30: all of them, and never the test split's
    assert metrics["openvino_int8_calibration"] == {"split": "train", "images": 30, "smooth_quant_alpha": 0.15}
    assert metrics["openvino_token_groups"] == [32, 4]  # 36 tokens: one whole 32-row block, then the rest
    # and calibrating wrote nothing into the split (a DVC output of preprocess: `dvc status` would call it modified)
    assert [p.name for p in (project / "data/processed/train").iterdir() if p.name.startswith("cache-")] == []


def test_the_exporters_and_nncf_write_into_the_log_not_the_terminal(project):
    log = (project / "export.log").read_text()
    for section in ("ONNX fp32", "ONNX int8", "OpenVINO IR fp32", "OpenVINO IR static int8"):
        assert f"==> {section}" in log
    assert "nncf" in log.lower()  # NNCF's own lines (its logger prints to stdout) are in the log


def test_the_bar_names_what_failed():
    def parity(agreement: float, accuracy: float) -> FormatParity:
        return FormatParity(accuracy=accuracy, max_abs_logit_diff=0.1, top1_agreement=agreement)

    metrics = ExportMetrics(
        opset=18,
        n_test=100,
        pytorch_accuracy=0.9,
        onnx=parity(0.99, 0.9),
        onnx_int8=parity(0.9, 0.85),
        int8_accuracy_drop=0.05,
    )
    problems = parity_problems(metrics, ExportConfig())
    assert len(problems) == 2
    assert "99.00%" in problems[0] and "export.min_top1_agreement=0.995" in problems[0]
    assert "0.0500" in problems[1] and "export.max_int8_accuracy_drop=0.01" in problems[1]
    assert parity_problems(metrics, ExportConfig(min_top1_agreement=0.99, max_int8_accuracy_drop=0.05)) == []


def test_the_bar_holds_the_openvino_exports_to_the_same_bounds():
    def parity(agreement: float, accuracy: float) -> FormatParity:
        return FormatParity(accuracy=accuracy, max_abs_logit_diff=0.1, top1_agreement=agreement)

    metrics = ExportMetrics(
        opset=18,
        n_test=100,
        pytorch_accuracy=0.9,
        onnx=parity(1.0, 0.9),
        openvino=parity(0.98, 0.9),
        openvino_int8=parity(0.95, 0.895),
        openvino_int8_bf16=parity(0.9, 0.87),
    )
    problems = parity_problems(metrics, ExportConfig())
    assert len(problems) == 2
    assert problems[0].startswith("OpenVINO fp32 agrees with PyTorch on top-1 for 98.00%")
    assert problems[1].startswith("OpenVINO static int8 (the rest bf16) loses 0.0300 accuracy")


def openvino_int8_card(card: dict) -> str:
    """What the server's card must say backend openvino-int8 runs in on this machine, precision auto: f32 for the
    rest, or where the CPU has native bf16 whichever of f32 and bf16 it timed faster at load, on the streams the
    warm-up chose."""
    from posevit.core.cores import usable_cores
    from posevit.models.openvino_runtime import cpu_has_native_bf16

    rest = "fp32"
    if cpu_has_native_bf16():
        timings = card["precision_timings_ms"]
        assert set(timings) == {"f32", "bf16"}
        rest = "bf16" if timings["bf16"] < timings["f32"] else "fp32"
    streams = card["batching"]["streams"]  # timed at warm-up (serve.streams auto); lone passes on every core
    ran = f"{streams} streams; a pass alone on {usable_cores()} threads" if streams > 1 else "1 stream"
    return f"int8, the rest {rest} (OpenVINO CPU, {usable_cores()} threads, {ran})"


@pytest.mark.parametrize(
    ("backend", "precision"),
    [("onnx", "fp32 (ONNX Runtime)"), ("onnx-int8", "int8 (ONNX Runtime)"), ("openvino-int8", None)],
)
def test_the_server_runs_the_exports_with_the_same_api_and_answers(project, serving_venv, backend, precision):
    """`posevit serve` of the serving install (a venv of requirements/serve.txt alone: no torch, no timm) answers
    as the full install's torch backend does."""
    photo = project / "photo.png"
    photo.write_bytes(png_bytes((200, 30, 90), (120, 96)))
    slim = serving_env()
    blocked = subprocess.run([serving_venv / "bin/python", "-c", "import torch"], env=slim, capture_output=True)
    assert b"No module named 'torch'" in blocked.stderr
    torch_server = RunningApp(project, "--model", "models")
    onnx_server = RunningApp(
        project,
        "--model",
        "models",
        "--backend",
        backend,
        env=slim,
        command=[str(serving_venv / "bin/posevit"), "serve"],
    )
    try:
        card = httpx.get(onnx_server.url + "v1/model").json()
        assert card["precision"] == (precision or openvino_int8_card(card)) and card["backend"] == backend
        assert "needs backend torch" in httpx.get(onnx_server.url + "config").text  # the page offers no heat map
        answers = []
        for server in (torch_server, onnx_server):
            response = httpx.post(
                server.url + "v1/predict",
                files={"file": ("p.png", photo.read_bytes())},
                params={"top_k": 15},
                timeout=60,
            )
            assert response.status_code == 200, response.text
            answers.append({p["label"]: p["probability"] for p in response.json()["predictions"]})
        assert max(abs(answers[0][label] - answers[1][label]) for label in answers[0]) < 0.05
    finally:
        torch_server.stop()
        onnx_server.stop()


def test_an_onnx_backend_without_exports_says_how_to_make_them(tmp_path):
    from tests.helpers import ROOT

    tiny_bundle(tmp_path / "models")
    result = subprocess.run(
        [sys.executable, str(ROOT / "app.py"), "--model", "models", "--backend", "onnx-int8"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2 and "dvc repro export" in result.stderr, result.stderr


def test_the_readme_onnx_snippet_classifies_like_posevit(project):
    """The deployment page's ten lines (onnxruntime, PIL, numpy only) give the label posevit's own int8 path gives."""
    import re

    from PIL import Image

    from posevit.infer.predictor import OnnxPredictor
    from posevit.models.bundle_config import read_bundle_config
    from tests.helpers import ROOT

    snippet = re.search(
        r"Deploying without Python.*?```python\n(.*?)```", (ROOT / "docs/deployment.md").read_text(), re.S
    )
    assert snippet and len(snippet.group(1).strip().splitlines()) <= 10
    predictor = OnnxPredictor(read_bundle_config(project / "models"), project / "exports", "onnx-int8")
    for seed, size in ((0, (640, 480)), (1, (333, 500))):
        photo = Image.effect_noise(size, 60 + 40 * seed).convert("RGB").resize(size)
        photo.save(project / "photo.jpg", quality=95)
        expected = predictor.predict(Image.open(project / "photo.jpg")).top(1)[0][0]
        result = subprocess.run(
            [sys.executable, "-c", snippet.group(1)], cwd=project, capture_output=True, text=True, timeout=120
        )
        assert result.returncode == 0, result.stderr
        assert result.stdout.strip() == expected


def test_posevit_predict_runs_the_onnx_and_openvino_backends_with_the_same_answers(project):
    from PIL import Image

    folder = project / "photos"
    folder.mkdir(exist_ok=True)
    for seed in range(12):
        Image.effect_noise((90 + 5 * seed, 120), 30 + 10 * seed).convert("RGB").save(folder / f"{seed}.jpg")
    answers = {}
    for backend in ("torch", "onnx", "onnx-int8", "openvino-int8"):
        output = project / f"{backend}.jsonl"
        result = subprocess.run(
            [
                sys.executable,
                "-m",
                "posevit.cli",
                "predict",
                "photos",
                "--model",
                "models",
                "--backend",
                backend,
                "--top-k",
                "15",
                "--batch-size",
                "5",
                "-o",
                str(output),
            ],
            cwd=project,
            capture_output=True,
            text=True,
            timeout=240,
        )
        assert result.returncode == 0, result.stderr
        records = [json.loads(line) for line in output.read_text().splitlines()]
        answers[backend] = {r["path"]: {p["label"]: p["probability"] for p in r["predictions"]} for r in records}
    for backend in ("onnx", "onnx-int8", "openvino-int8"):
        assert answers[backend].keys() == answers["torch"].keys() and len(answers["torch"]) == 12
        for path, probabilities in answers[backend].items():
            reference = answers["torch"][path]
            assert max(abs(probabilities[label] - reference[label]) for label in reference) < 0.05, (backend, path)


def test_two_exports_of_one_bundle_are_byte_identical_and_name_no_path_of_the_machine(project, capfd):
    """exports/ is a DVC output whose hash must follow from the bundle alone: the exporter's debug metadata
    named the checkout's and the environment's absolute paths, so a fresh clone elsewhere exported other bytes
    and could not find the committed exports in any cache. NNCF's static int8 too: same calibration images,
    same scales, same bytes. Meanwhile nothing the exporters print reaches the terminal (it goes to the log)."""
    import hashlib

    import onnx

    from tests.helpers import ROOT

    again = ExportPaths(
        models=project / "models", data=project / "data/processed", exports=project / "again", log=project / "again.log"
    )
    capfd.readouterr()
    export(ExportConfig(), again)
    terminal = capfd.readouterr()
    assert terminal.out == "" and "nncf" not in terminal.err.lower() and "onnx" not in terminal.err.lower()
    digests = [
        {
            p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in folder.rglob("*")
            if p.is_file()
        }
        for folder in (project / "exports", again.exports)
    ]
    assert digests[0] == digests[1] and len(digests[0]) == 7
    for name in ("model.onnx", "model.int8.onnx", "openvino/model.xml", "openvino/model.int8.xml"):
        data = (project / "exports" / name).read_bytes()
        for local in (ROOT, Path(sys.prefix), Path(onnx.__file__).parents[1], project):
            assert str(local).encode() not in data, f"{name} names {local}"
    assert "+" not in onnx.load(project / "exports/model.onnx").producer_version  # no wheel tag (+cpu, +cu130)
