"""The serving install for real: a venv of requirements/serve.txt alone (posevit[serve]; `make serve-venv`) holds
exactly that lock and no pipeline package, and its `posevit serve` / `posevit predict` run from a directory that
is no project, with a model named by its registry URI and the AWS chain for S3, on ONNX Runtime and OpenVINO."""

from __future__ import annotations

import csv
import io
import json
import re
import subprocess

import httpx
from PIL import Image

from posevit.core.hashing import hash_directory
from posevit.devtools.image_test import write_tiny_bundle
from posevit.publish.registry import ModelAddress, publish
from posevit.publish.s3 import make_client
from tests.helpers.openvino_exports import write_openvino_exports
from tests.helpers.server import RunningApp
from tests.helpers.slim import SERVE_REQUIREMENTS, serving_env

PIPELINE_ONLY = {"torch", "torchvision", "timm", "pytorch-lightning", "lightning", "torchmetrics", "datasets", "dvc"}
LISTING = (
    "import importlib.metadata as m, json; "
    "print(json.dumps({d.metadata['Name']: d.version for d in m.distributions()}))"
)


def normal(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def test_the_serving_install_is_its_lock_and_holds_no_pipeline_package(serving_venv):
    listing = subprocess.run(
        [serving_venv / "bin/python", "-c", LISTING], env=serving_env(), capture_output=True, text=True, check=True
    )
    installed = {normal(name): version for name, version in json.loads(listing.stdout).items()}
    locked = {
        normal(name): version for name, version in re.findall(r"^(\S+)==(\S+)", SERVE_REQUIREMENTS.read_text(), re.M)
    }
    assert installed.pop("posevit") == "0.1.0"
    for tool in ("pip", "setuptools"):  # what `python -m venv` puts in every venv
        installed.pop(tool, None)
    assert installed == locked
    assert not PIPELINE_ONLY & installed.keys()
    assert {"onnxruntime", "openvino", "fastapi", "gradio", "boto3", "pyarrow", "fastapi-offline"} <= installed.keys()
    check = subprocess.run([serving_venv / "bin/python", "-m", "pip", "check"], env=serving_env(), capture_output=True)
    assert check.returncode == 0, check.stdout


def test_serve_and_predict_of_the_serving_install_take_a_model_uri_from_any_directory(
    serving_venv, aws_env, bucket, tmp_path
):
    """Found by a new user: outside the project root both commands said `params.yaml not found: run make params`."""
    published = write_tiny_bundle(tmp_path / "published")  # models/ and exports/, as the export stage leaves them
    write_openvino_exports(published / "models", published / "exports")  # and its OpenVINO IR
    version = hash_directory(published / "models")
    files = {
        p.relative_to(published).as_posix(): p
        for folder in ("models", "exports")
        for p in (published / folder).rglob("*")
        if p.is_file()
    }
    publish(make_client(), ModelAddress(bucket, "models", "posevit-vit"), version, files, progress=False)
    elsewhere = tmp_path / "elsewhere"  # no params.yaml, no models/
    (elsewhere / "photos").mkdir(parents=True)
    for seed in range(3):
        Image.effect_noise((160, 120), 40 + 20 * seed).convert("RGB").save(elsewhere / "photos" / f"{seed}.jpg")
    uri = f"s3://{bucket}/models/posevit-vit"
    environment = serving_env()  # aws_env put the test S3's profile in os.environ: the AWS chain finds it

    server = RunningApp(
        elsewhere,
        *("--model", f"{uri}:latest", "--backend", "onnx-int8"),
        env=environment,
        command=[str(serving_venv / "bin/posevit"), "serve"],
    )
    try:
        card = httpx.get(server.url + "v1/model").json()
        assert (card["version"], card["backend"]) == (version, "onnx-int8")
        assert card["source"] == f"S3 registry {uri}/{version}/"
        photo = (elsewhere / "photos" / "0.jpg").read_bytes()
        response = httpx.post(server.url + "v1/predict", files={"file": ("0.jpg", photo)}, timeout=60)
        assert response.status_code == 200, response.text
        assert len(response.json()["predictions"]) == 5
    finally:
        server.stop()
    fetched = elsewhere / "cache" / "registry" / "posevit-vit" / version  # RunningApp's POSEVIT_CACHE
    assert (fetched / "exports" / "model.int8.onnx").is_file()
    assert not (fetched / "models" / "model.safetensors").exists()  # the int8 backend runs no weights

    result = subprocess.run(
        [serving_venv / "bin/posevit", "predict", "photos", "--model", f"{uri}@{version}", "--backend", "onnx-int8"],
        cwd=elsewhere,
        env={**environment, "POSEVIT_CACHE": str(elsewhere / "cache")},
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert result.returncode == 0, result.stderr
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    assert sorted(row["path"] for row in rows) == [f"photos/{seed}.jpg" for seed in range(3)]
    assert all(row["label_1"] and not row["error"] for row in rows)
    assert f"version {version}" in result.stderr

    # OpenVINO's static int8 from the same install: its IR fetched (alone), run without torch
    result = subprocess.run(
        [
            serving_venv / "bin/posevit",
            "predict",
            "photos",
            "--model",
            f"{uri}@{version}",
            "--backend",
            "openvino-int8",
        ],
        cwd=elsewhere,
        env={**environment, "POSEVIT_CACHE": str(elsewhere / "cache")},
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert result.returncode == 0, result.stderr
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    assert len(rows) == 3 and all(row["label_1"] and not row["error"] for row in rows)
    assert (fetched / "exports" / "openvino" / "model.int8.xml").is_file()
    assert (fetched / "exports" / "openvino" / "model.int8.bin").is_file()
    assert not (fetched / "exports" / "openvino" / "model.xml").exists()  # the fp32 IR is another backend's
