"""`posevit predict`, run as users run it: folders of good, odd and broken files into CSV, JSON Lines and Parquet."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from posevit.core.precision import BF16_PROBABILITY_TOLERANCE
from posevit.data.images import decode_rgb
from posevit.infer.inputs import expand_inputs
from posevit.infer.torch_predictor import TorchPredictor
from posevit.models.bundle import load_bundle
from tests.helpers.bundles import tiny_bundle
from tests.helpers.images import ODD_BUT_FINE, animated_gif, encode, exif_rotated_jpeg, png_with_declared_size

pytestmark = pytest.mark.timeout(300)

BROKEN = {
    "truncated.jpg": lambda: encode(Image.effect_noise((64, 48), 50).convert("RGB"), "JPEG")[:300],
    "text.jpg": lambda: b"this is not a photo\n",
    "empty.png": lambda: b"",
    "bomb.png": lambda: png_with_declared_size(100_000, 100_000),
}
SUFFIX = {"CMYK JPEG": "jpg", "TIFF float": "tif", "WebP": "webp"}
ODD = {
    **{f"odd/{name.replace(' ', '_')}.{SUFFIX.get(name, 'png')}": make for name, make in ODD_BUT_FINE.items()},
    "odd/rotated.jpg": exif_rotated_jpeg,
    "odd/animated.gif": animated_gif,
}


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> Path:
    """photos/: ordinary photos at many sizes, odd-but-fine images in a sub-folder, broken files, a README."""
    root = tmp_path_factory.mktemp("predict")
    tiny_bundle(root / "models", seed=3, head_scale=8.0)
    folder = root / "photos"
    (folder / "odd").mkdir(parents=True)
    for index in range(40):  # more than a batch, in sizes that differ, so batches mix shapes before the crop
        size = (60 + 7 * index, 200 - 3 * index)
        Image.effect_noise(size, 20 + index).convert("RGB").save(folder / f"photo_{index:02d}.jpg", quality=90)
    for name, make in {**ODD, **BROKEN}.items():
        (folder / name).write_bytes(make())
    (folder / "README.txt").write_text("not an image, not a row")
    (root / "notes").mkdir()
    (root / "notes" / "todo.txt").write_text("a folder without images")
    return root


def run_predict(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "posevit.cli", "predict", "--quiet", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=240,
    )


def read_rows(path: Path) -> dict[str, tuple[list[tuple[str, float]], str | None]]:
    """path -> (top k, error), whatever the format."""
    if path.suffix == ".jsonl":
        records = [json.loads(line) for line in path.read_text().splitlines()]
        return {r["path"]: ([(p["label"], p["probability"]) for p in r["predictions"]], r["error"]) for r in records}
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        flat = pq.read_table(path).to_pylist()
    else:
        with path.open(newline="") as handle:
            flat = [{k: (v if v != "" else None) for k, v in row.items()} for row in csv.DictReader(handle)]
    rows = {}
    for record in flat:
        ranks = range(1, 1 + sum(key.startswith("label_") for key in record))
        top = [(record[f"label_{r}"], float(record[f"probability_{r}"])) for r in ranks if record[f"label_{r}"]]
        rows[record["path"]] = (top, record["error"])
    return rows


@pytest.fixture(scope="module")
def jsonl_run(photos) -> tuple[subprocess.CompletedProcess[str], Path]:
    output = photos / "predictions.jsonl"
    result = run_predict(
        photos, "photos", "--model", "models", "--top-k", "15", "--batch-size", "16", "-o", str(output)
    )
    return result, output


def test_every_image_in_the_folder_gets_a_row_and_broken_files_say_why(photos, jsonl_run):
    result, output = jsonl_run
    assert result.returncode == 0, result.stderr
    rows = read_rows(output)
    expected = {f"photos/photo_{i:02d}.jpg" for i in range(40)} | {f"photos/{name}" for name in {**ODD, **BROKEN}}
    assert set(rows) == expected  # README.txt is not an image by its suffix: skipped, and counted in the log
    assert "1 non-image file(s) skipped" in result.stderr
    for name in BROKEN:
        top, error = rows[f"photos/{name}"]
        assert top == [] and error, name
    assert "empty" in rows["photos/empty.png"][1] and "too large" in rows["photos/bomb.png"][1]
    for name in ODD:
        top, error = rows[f"photos/{name}"]
        assert error is None and len(top) == 15, (name, error)
    assert f"classified {40 + len(ODD)} of {40 + len(ODD) + len(BROKEN)}" in result.stderr
    assert not list(photos.glob("*.partial"))


def single_image_answers(photos: Path, rows, precision: str) -> dict[str, dict[str, float]]:
    """path -> the probabilities of the image classified alone, in `precision`, for every row with an answer."""
    predictor = TorchPredictor(load_bundle(photos / "models"), precision=precision)
    return {
        path: predictor.predict(decode_rgb((photos / path).read_bytes(), 40_000_000)).probabilities
        for path, (_, error) in rows.items()
        if not error
    }


def batched_rows(photos: Path, precision: str):
    """photos/ classified by `posevit predict` in batches of 16, all 15 probabilities each, in `precision`."""
    output = photos / f"{precision}.jsonl"
    result = run_predict(
        photos, "photos", "--model", "models", "--top-k", "15", "--batch-size", "16", "--precision", precision,
        "-o", str(output),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    return read_rows(output)


def test_in_fp32_every_batched_answer_equals_the_images_answer_alone(photos):
    """fp32 is exact whatever the batch: the same probabilities to 1e-6 (float32 rounding only)."""
    rows = batched_rows(photos, "fp32")
    alone = single_image_answers(photos, rows, "fp32")
    assert len(alone) == 40 + len(ODD)
    for path, probabilities in alone.items():
        assert dict(rows[path][0]) == pytest.approx(probabilities, abs=1e-6), path  # all 15: ties in either order


def test_in_bf16_a_batched_answer_stays_within_bf16s_resolution_of_fp32s(photos):
    """bf16 keeps 8 significant bits, and a GEMM's blocking (so its rounding) depends on the batch size and the
    CPU: an image's bf16 probabilities may move with its batch, by at most BF16_PROBABILITY_TOLERANCE from the
    fp32 answer, and its top-1 is fp32's wherever fp32's top two are further apart than that can bridge."""
    rows = batched_rows(photos, "bf16")
    exact = single_image_answers(photos, rows, "fp32")
    bf16_alone = single_image_answers(photos, rows, "bf16")
    decisive = 0
    for path, probabilities in exact.items():
        batched = dict(rows[path][0])
        assert batched == pytest.approx(probabilities, abs=BF16_PROBABILITY_TOLERANCE), path
        assert batched == pytest.approx(bf16_alone[path], abs=BF16_PROBABILITY_TOLERANCE), path
        first, second = sorted(probabilities.values(), reverse=True)[:2]
        if first - second > 2 * BF16_PROBABILITY_TOLERANCE:
            assert rows[path][0][0][0] == max(probabilities, key=probabilities.__getitem__), path
            decisive += 1
    assert decisive >= len(exact) // 2  # the top-1 promise was tested on most images, not vacuously


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_csv_and_parquet_hold_the_same_rows_as_json_lines(photos, jsonl_run, suffix):
    _, jsonl = jsonl_run
    output = photos / f"predictions{suffix}"
    result = run_predict(photos, "photos", "--model", "models", "--top-k", "3", "--workers", "0", "-o", str(output))
    assert result.returncode == 0, result.stderr
    rows, reference = read_rows(output), read_rows(jsonl)
    assert list(rows) == list(reference)  # same inputs, same order
    for path, (top, error) in rows.items():
        assert error == reference[path][1]
        assert [p for _, p in top] == pytest.approx([p for _, p in reference[path][0][:3]], abs=1e-6)
        assert all(dict(reference[path][0])[label] == pytest.approx(p, abs=1e-6) for label, p in top)


def test_csv_goes_to_stdout_without_an_output_file(photos):
    result = run_predict(photos, "photos/photo_00.jpg", "photos/missing.jpg", "--model", "models", "--top-k", "1")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "path,label_1,probability_1,error"
    assert lines[1].startswith("photos/photo_00.jpg,") and lines[2] == "photos/missing.jpg,,,no such file or folder"


def test_when_nothing_could_be_classified_it_exits_1_and_says_so(photos):
    output = photos / "none.csv"
    result = run_predict(photos, "photos/text.jpg", "photos/empty.png", "--model", "models", "-o", str(output))
    assert result.returncode == 1
    assert "none of the 2 input(s) could be classified" in result.stderr
    assert "photos/text.jpg: not an image" in result.stderr
    assert read_rows(output)["photos/text.jpg"][1]  # the reasons are still written


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["photos", "--model", "models", "-o", "out.txt"], "must end in one of .csv, .jsonl, .parquet"),
        (["photos", "--model", "nowhere"], "nowhere holds no model bundle"),
        (["photos", "--model", "models", "--device", "cuda"], "needs a CUDA GPU"),
        (
            ["photos", "--model", "models", "--top-k", "0"],
            "predict.top_k = '0' is invalid: Input should be greater than or equal to 1",
        ),
        (
            ["photos", "--model", "models", "--backend", "onnx", "--precision", "bf16"],
            "precision bf16 is for backend torch",
        ),
        (["notes", "--model", "models"], "no image files in notes (skipped 1 other files)"),
    ],
)
def test_bad_flags_stop_before_any_work_with_exit_2(photos, args, message):
    result = run_predict(photos, *args)
    assert result.returncode == 2 and message in result.stderr, result.stderr
    assert not list(photos.glob("out.txt*"))


def test_globs_recurse_and_a_pattern_or_path_that_matches_nothing_becomes_a_row(photos):
    folder = str(photos / "photos")
    expanded = expand_inputs([f"{folder}/**/*.gif", f"{folder}/*.gif", f"{folder}/nope.jpg", f"{folder}/odd"])
    paths = [item.path for item in expanded.inputs]
    assert paths[0] == f"{folder}/odd/animated.gif"
    assert (f"{folder}/*.gif", "the pattern matched no files") in [(i.path, i.problem) for i in expanded.inputs]
    assert (f"{folder}/nope.jpg", "no such file or folder") in [(i.path, i.problem) for i in expanded.inputs]
    assert len(paths) == len(set(paths)) == 3 + len(ODD) - 1  # animated.gif once, though named twice


@pytest.fixture(scope="module")
def exported(photos) -> Path:
    """The export stage's ONNX files for photos/'s bundle, in exports/ beside models/ (as in a project)."""
    from posevit.core.config import ExportConfig
    from posevit.export.run import ExportPaths, export
    from tests.helpers.images import action_dataset, balanced_labels

    test = action_dataset(balanced_labels(2), seed=1)
    test.add_column("id", [f"test/{i}" for i in range(len(test))]).save_to_disk(str(photos / "data/processed/test"))
    export(  # the ONNX files these tests run (the OpenVINO IR would calibrate on a train split: not needed here)
        ExportConfig(openvino=False),
        ExportPaths(models=photos / "models", data=photos / "data/processed", exports=photos / "exports"),
    )
    return photos


def run_slim(venv: Path, cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """`posevit predict` of the serving install (`make serve-venv`: requirements/serve.txt alone, no torch or timm)."""
    from tests.helpers.slim import serving_env

    return subprocess.run(
        [str(venv / "bin" / "posevit"), "predict", "--quiet", *args],
        cwd=cwd,
        env=serving_env(),
        capture_output=True,
        text=True,
        timeout=240,
    )


def test_the_serving_install_classifies_a_folder_without_torch(exported, serving_venv):
    """The serving image's install (no torch) runs the folder classifier on the ONNX exports: every row as the
    full install gives it, fp32 ONNX answers within ONNX's rounding of torch's fp32 ones, Parquet too."""
    int8, fp32 = exported / "slim-int8.csv", exported / "slim-fp32.jsonl"
    result = run_slim(serving_venv, exported, "photos", "--model", "models", "--backend", "onnx-int8", "-o", str(int8))
    assert result.returncode == 0 and "Traceback" not in result.stderr, result.stderr
    rows = read_rows(int8)
    assert len(rows) == 40 + len(ODD) + len(BROKEN) and sum(not error for _, error in rows.values()) == 40 + len(ODD)
    assert "empty" in rows["photos/empty.png"][1] and all(len(top) == 5 for top, error in rows.values() if not error)

    result = run_slim(
        serving_venv, exported, "photos", "--model", "models", "--backend", "onnx", "--top-k", "15",
        "--batch-size", "8", "-o", str(fp32),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    rows = read_rows(fp32)
    for path, probabilities in single_image_answers(exported, rows, "fp32").items():
        assert dict(rows[path][0]) == pytest.approx(probabilities, abs=1e-4), path

    parquet = exported / "slim.parquet"
    result = run_slim(serving_venv, exported, "photos", "--model", "models", "--backend", "onnx", "-o", str(parquet))
    assert result.returncode == 0, result.stderr
    assert read_rows(parquet) == {path: (top[:5], error) for path, (top, error) in rows.items()}


def test_the_serving_install_asked_for_backend_torch_says_which_backends_it_has(exported, serving_venv):
    result = run_slim(serving_venv, exported, "photos", "--model", "models")
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith("error: backend torch needs PyTorch")
    assert "onnx-int8" in result.stderr
