"""The OpenVINO backends on a real bundle's IR: static int8 answers independent of the batch, fp32 as ONNX
Runtime's, the precision hint set and reported, devices checked, and a registry fetch of only their files."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest

from posevit.core.cores import usable_cores
from posevit.core.errors import ConfigError
from posevit.core.hashing import hash_directory
from posevit.export.openvino_ir import INT8_IR
from posevit.infer.backends import BACKEND_FILES, check_device, load_predictor
from posevit.infer.model_source import from_folder, from_registry
from posevit.infer.predictor import OnnxPredictor, OpenVinoPredictor
from posevit.models.bundle_config import read_bundle_config
from posevit.models.openvino_runtime import OpenVinoModel, cpu_has_native_bf16
from posevit.publish.registry import ModelAddress, publish
from posevit.publish.s3 import make_client
from tests.helpers.bundles import tiny_bundle
from tests.helpers.openvino_exports import photos, write_openvino_exports

pytestmark = pytest.mark.timeout(300)


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    """models/ (a decisive random bundle) and exports/ with its ONNX and both OpenVINO IRs."""
    root = tmp_path_factory.mktemp("openvino")
    tiny_bundle(root / "models", seed=5, head_scale=40.0)
    write_openvino_exports(root / "models", root / "exports")
    return root


@pytest.fixture(scope="module")
def pixels(project) -> np.ndarray:
    """16 different photos through the eval transform: one batch."""
    predictor = OnnxPredictor(read_bundle_config(project / "models"), project / "exports", "onnx")
    return np.stack([predictor.preprocess(photo) for photo in photos(16)])


def openvino(project: Path, backend, precision="auto") -> OpenVinoPredictor:
    return OpenVinoPredictor(read_bundle_config(project / "models"), project / "exports", backend, "cpu", precision)


@pytest.mark.parametrize("precision", ["auto", "fp32"])
def test_static_int8_answers_do_not_depend_on_the_batch(project, pixels, precision):
    """Dynamic int8 picks each batch's activation scales from that batch; NNCF's static int8 fixed them at export,
    so an image's probabilities alone and among 15 others are the same (auto: the faster of f32 and bf16 rest)."""
    predictor = openvino(project, "openvino-int8", precision)
    together = predictor.forward(pixels)
    alone = np.concatenate([predictor.forward(pixels[i : i + 1]) for i in range(len(pixels))])
    assert np.abs(together - alone).max() <= 1e-5
    assert np.ptp(together, axis=0).max() > 1e-3  # the photos get different answers: nothing trivially constant


def test_openvino_fp32_answers_as_onnx_runtime_fp32(project, pixels):
    config = read_bundle_config(project / "models")
    onnx = OnnxPredictor(config, project / "exports", "onnx")
    ir = openvino(project, "openvino")
    assert np.abs(ir.logits(pixels) - onnx.logits(pixels)).max() < 1e-4
    assert np.abs(ir.forward(pixels) - onnx.forward(pixels)).max() < 1e-5
    assert ir.precision == f"fp32 (OpenVINO CPU, {usable_cores()} threads, 1 stream)"  # never the plugin's bf16


def test_the_int8_ir_is_quantized_and_runs_its_rest_in_the_precision_the_card_names(project, pixels):
    graph = (project / "exports" / INT8_IR).read_text()
    assert graph.count('type="FakeQuantize"') >= 10  # NNCF's int8 points: every Conv and MatMul
    auto = openvino(project, "openvino-int8")
    if cpu_has_native_bf16():  # both timed at load, the faster one kept and named
        assert set(auto.precision_timings) == {"f32", "bf16"}
        faster = min(auto.precision_timings, key=auto.precision_timings.__getitem__)
        rest = {"f32": "fp32", "bf16": "bf16"}[faster]
    else:
        assert auto.precision_timings == {}
        rest = "fp32"
    assert auto.precision.startswith(f"int8, the rest {rest} (OpenVINO CPU, ")
    assert openvino(project, "openvino-int8", "fp32").precision.startswith("int8, the rest fp32 (OpenVINO CPU, ")
    fp32_rest = openvino(project, "openvino-int8", "fp32").forward(pixels)
    assert np.abs(openvino(project, "openvino-int8").forward(pixels) - fp32_rest).max() < 0.05


def test_two_streams_answer_two_callers_at_once_with_the_same_answers(project, pixels):
    model = OpenVinoModel(project / "exports" / INT8_IR, "f32", streams=2)
    assert model.streams == 2 and "2 streams" in model.describe()
    expected = model.logits(pixels[:4])
    answers: list[np.ndarray] = []
    callers = [threading.Thread(target=lambda: answers.append(model.logits(pixels[:4]))) for _ in range(4)]
    for caller in callers:
        caller.start()
    for caller in callers:
        caller.join()
    assert len(answers) == 4 and all(np.array_equal(answer, expected) for answer in answers)


def test_the_predictor_offers_streams_up_to_the_cores_and_recompiles_for_them(project, pixels):
    predictor = openvino(project, "openvino-int8", "fp32")
    cores = usable_cores()
    assert predictor.stream_options[0] == 1 and predictor.stream_options[-1] == cores
    assert list(predictor.stream_options) == sorted(set(predictor.stream_options))
    expected = predictor.forward(pixels[:4])
    predictor.use_streams(2)
    assert predictor.streams == 2 and predictor.precision.endswith(f"{cores} threads, 2 streams)")
    # static int8: the same answers on any split of the cores (to 1e-5, as alone and in a batch: another CPU may
    # reduce the f32 rest in another order on one thread than on two)
    assert np.abs(predictor.forward(pixels[:4]) - expected).max() <= 1e-5
    predictor.lone_passes_on_every_core()
    assert predictor.precision.endswith(f"2 streams; a pass alone on {cores} threads)")


def test_with_lone_passes_a_pass_alone_runs_on_every_core_and_the_rest_on_the_streams(project, pixels):
    """Which model a pass ran on is seen by holding one: a second pass started meanwhile must go to the streams."""
    predictor = openvino(project, "openvino-int8", "fp32")
    predictor.use_streams(2)
    predictor.lone_passes_on_every_core()
    streamed, one_stream = predictor.openvino.model, predictor.openvino.one_stream
    seen: list[str] = []
    held, go = threading.Event(), threading.Event()

    def recording(model, name):
        original = model.logits

        def logits(batch):
            seen.append(name)
            if name == "one stream" and not held.is_set():
                held.set()
                assert go.wait(60)
            return original(batch)

        return logits

    streamed.logits, one_stream.logits = recording(streamed, "streams"), recording(one_stream, "one stream")
    first = threading.Thread(target=predictor.forward, args=(pixels[:1],))
    first.start()
    assert held.wait(60)  # the lone pass holds the one-stream model
    predictor.forward(pixels[:1])  # one in flight already: on the streams
    go.set()
    first.join()
    predictor.forward(pixels[:1])  # alone again
    assert seen == ["one stream", "streams", "one stream"]


def test_a_server_on_openvino_times_each_stream_count_and_runs_the_one_it_chose(project):
    from posevit.infer.model_source import from_folder
    from tests.helpers.api import api_client, photo

    loaded = (openvino(project, "openvino-int8", "fp32"), from_folder(project / "models"))
    with api_client(loaded, max_batch_size=4, batch_limit="auto", streams="auto") as (client, service):
        batching = client.get("/v1/model").json()["batching"]
        assert batching["streams_chosen_by"] == "measured"
        assert sorted({row["streams"] for row in batching["stream_timings"]}) == list(loaded[0].stream_options)
        assert batching["streams"] == service.batcher.streams == loaded[0].streams
        assert service.batcher.max_streams == max(loaded[0].stream_options)
        assert client.post("/v1/predict", files={"file": ("0.png", photo(0))}).status_code == 200
    with api_client(loaded, max_batch_size=4, batch_limit=2, streams=1) as (client, service):
        batching = client.get("/v1/model").json()["batching"]
        assert batching["streams"] == 1 == service.batcher.streams and batching["streams_chosen_by"] == "serve.streams"


@pytest.mark.parametrize(
    ("device", "backend", "message"),
    [
        ("gpu", "openvino-int8", "--device=gpu: OpenVINO lists CPU here (no GPU): use --device cpu"),
        ("cuda", "openvino", "the OpenVINO backends run on cpu or, where OpenVINO lists one, an Intel gpu"),
        ("gpu.1", "onnx", "is for the OpenVINO backends (openvino, openvino-int8)"),
    ],
)
def test_a_device_the_backend_cannot_use_stops_with_one_line(device, backend, message):
    with pytest.raises(ConfigError) as error:
        check_device(device, backend)
    assert message in str(error.value) and "\n" not in str(error.value)


def test_a_registry_fetch_for_an_openvino_backend_takes_only_its_files(project, aws_env, bucket, tmp_path, monkeypatch):
    monkeypatch.setenv("POSEVIT_CACHE", str(tmp_path / "cache"))
    version = hash_directory(project / "models")
    files = {
        f"{folder}/{path.relative_to(project / folder).as_posix()}": path
        for folder in ("models", "exports")
        for path in (project / folder).rglob("*")
        if path.is_file()
    }
    address = ModelAddress(bucket, "registry", "posevit")
    publish(make_client(), address, version, files, progress=False)

    served = from_registry(address, version, "openvino-int8")
    fetched = served.bundle_dir.parent
    taken = sorted(p.relative_to(fetched).as_posix() for p in fetched.rglob("*") if p.is_file())
    assert taken == sorted(["manifest.json", *(path.as_posix() for path in BACKEND_FILES["openvino-int8"])])
    assert "exports/openvino/model.int8.bin" in taken and "models/model.safetensors" not in taken
    predictor = load_predictor(served, backend="openvino-int8", precision="fp32")
    local = openvino(project, "openvino-int8", "fp32")
    one = local.preprocess(photos(1)[0])[None]
    assert np.array_equal(predictor.forward(one), local.forward(one))


def test_an_openvino_backend_without_its_ir_says_how_to_make_it(tmp_path):
    tiny_bundle(tmp_path / "models")
    (tmp_path / "exports").mkdir()
    with pytest.raises(ConfigError, match=r"needs the model's export \(openvino/model.int8.xml .*dvc repro export"):
        load_predictor(from_folder(tmp_path / "models"), backend="openvino-int8")
