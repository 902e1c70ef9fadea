"""Knowledge distillation (`train.distill`): the teacher's labels must be the data's; the teacher stays frozen and in
eval mode and sees the student's very (mixed) batch, converted to its own input; and the loss is used: the
student trained on a deliberately odd teacher agrees with it far more than the same run on the labels alone."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import pytorch_lightning as pl
import safetensors.torch
import torch
from PIL import Image
from torch.utils.data import DataLoader

from posevit.core.config import DistillConfig, ModelConfig, PipelineConfig, TrainConfig, load_params
from posevit.core.errors import ConfigError
from posevit.core.hashing import hash_directory
from posevit.core.labels import ACTION_CLASSES
from posevit.data.store import LABELS, PIXELS, load_split
from posevit.infer.teacher import fetch_teacher
from posevit.models.bundle import load_bundle, save_bundle
from posevit.models.bundle_config import BundleConfig, DataConfig
from posevit.models.factory import create_model
from posevit.models.transforms import eval_transform, model_data_config
from posevit.publish.registry import ModelAddress, publish
from posevit.publish.s3 import make_client
from posevit.train.calibrate import split_logits
from posevit.train.distill import load_distiller
from posevit.train.lightning_module import ActionClassifier
from posevit.train.loop import TrainPaths, train
from tests.helpers.dvc_project import preprocessed_smoke_project

STUDENT = ModelConfig(name="vit_convstem_micro")
FAVOURITE = "texting"  # what the odd teacher answers for most images, whatever they show
IMAGENET_STATS = {"mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]}


def teacher_bundle(
    directory: Path, labels: tuple[str, ...] = ACTION_CLASSES, model: str = "vit_convstem_tiny", **data_config
) -> Path:
    """A real bundle of random weights whose head leans to FAVOURITE: a teacher unlike the labels."""
    torch.manual_seed(1)
    network = create_model(ModelConfig(name=model), num_classes=len(labels)).eval()
    with torch.no_grad():
        network.get_classifier().bias[labels.index(FAVOURITE)] += 4.0
    config = BundleConfig(
        model_name=model, labels=list(labels), data_config=DataConfig(**{**model_data_config(network), **data_config})
    )
    save_bundle(directory, network, config)
    return directory


def student_data() -> DataConfig:
    return model_data_config(create_model(STUDENT, num_classes=len(ACTION_CLASSES)))


def test_a_teacher_of_other_labels_is_a_config_error_naming_the_difference(tmp_path):
    swapped = list(ACTION_CLASSES)
    swapped[0], swapped[1] = swapped[1], swapped[0]
    folder = teacher_bundle(tmp_path / "swapped", tuple(swapped))
    cfg = DistillConfig(teacher=str(folder))
    with pytest.raises(ConfigError, match="same classes in another order") as error:
        load_distiller(cfg, None, list(ACTION_CLASSES), student_data())
    assert "train.distill.teacher" in str(error.value) and "\n" not in str(error.value)
    other = teacher_bundle(tmp_path / "other", (*ACTION_CLASSES[:-1], "juggling"))
    with pytest.raises(ConfigError, match=r"only in the data: \['using_laptop'\]; only in the teacher: \['juggling'\]"):
        load_distiller(DistillConfig(teacher=str(other)), None, list(ACTION_CLASSES), student_data())
    with pytest.raises(ConfigError, match="is not a model bundle"):
        load_distiller(DistillConfig(teacher=str(tmp_path / "none")), None, list(ACTION_CLASSES), student_data())
    with pytest.raises(ConfigError, match=r"names a registry model.*TrainPaths\(teacher=\.\.\.\)"):
        load_distiller(DistillConfig(teacher="registry:latest"), None, list(ACTION_CLASSES), student_data())
    # alpha 0 is the labels alone: no teacher is loaded (a sweep's "without" arm), so none needs to exist.
    assert (
        load_distiller(DistillConfig(teacher="nowhere", alpha=0.0), None, list(ACTION_CLASSES), student_data()) is None
    )


def random_batches(count: int, batch_size: int = 4) -> DataLoader:
    generator = torch.Generator().manual_seed(0)
    items = [
        {PIXELS: torch.randn(3, 96, 96, generator=generator), LABELS: torch.randint(0, 15, (), generator=generator)}
        for _ in range(count * batch_size)
    ]
    return DataLoader(items, batch_size=batch_size)  # type: ignore[arg-type]


def test_the_teacher_stays_frozen_in_eval_mode_and_sees_the_students_mixed_batch(tmp_path):
    folder = teacher_bundle(tmp_path / "teacher")
    cfg = TrainConfig(mixup=0.8, cutmix=1.0, warmup_epochs=0, distill=DistillConfig(teacher=str(folder)))
    distiller = load_distiller(cfg.distill, None, list(ACTION_CLASSES), student_data())
    assert distiller is not None and distiller.size is None  # same input: the batch goes in as it is
    student = create_model(STUDENT, num_classes=len(ACTION_CLASSES))
    seen: dict[str, list[torch.Tensor]] = {"student": [], "teacher": []}
    for name, network in (("student", student), ("teacher", distiller.teacher.model)):
        network.register_forward_pre_hook(lambda _m, args, name=name: seen[name].append(args[0].detach().clone()))
    module = ActionClassifier(student, len(ACTION_CLASSES), cfg, distiller=distiller)
    trainer = pl.Trainer(
        max_epochs=1, accelerator="cpu", logger=False, enable_checkpointing=False, enable_progress_bar=False
    )
    trainer.fit(module, train_dataloaders=random_batches(3))

    assert len(seen["teacher"]) == 3 and all(
        torch.equal(s, t) for s, t in zip(seen["student"], seen["teacher"], strict=True)
    )
    first = next(iter(random_batches(1)))[PIXELS]
    assert not torch.equal(seen["student"][0], first)  # mixed: the teacher saw the mix, not the raw batch
    teacher = distiller.teacher
    assert not teacher.training and not any(m.training for m in teacher.modules())
    assert all(not p.requires_grad and p.grad is None for p in teacher.parameters())
    weights = safetensors.torch.load_file(str(folder / "model.safetensors"))
    assert all(torch.equal(tensor, weights[name]) for name, tensor in teacher.model.state_dict().items())
    assert not any("teacher" in key for key in module.state_dict())  # nor in checkpoints or the bundle
    assert float(trainer.callback_metrics["train/kd_loss"]) > 0
    module.train()  # what Lightning calls at each epoch's start
    assert not teacher.training


def test_a_teacher_of_another_input_size_and_normalisation_gets_the_view_in_its_own_preprocessing(tmp_path):
    folder = teacher_bundle(tmp_path / "teacher", model="test_vit", crop_pct=1.0, **IMAGENET_STATS)  # 160 px
    distiller = load_distiller(DistillConfig(teacher=str(folder)), None, list(ACTION_CLASSES), student_data())
    assert distiller is not None and distiller.size == (160, 160)
    seen: list[torch.Tensor] = []
    distiller.teacher.model.register_forward_pre_hook(lambda _m, args: seen.append(args[0]))
    rng = np.random.default_rng(0)
    smooth = Image.fromarray(rng.integers(0, 256, (12, 12, 3), dtype=np.uint8)).resize(
        (96, 96), Image.Resampling.BICUBIC
    )
    pixels = eval_transform(student_data())(smooth)[None]  # what the student trains on
    distiller.to(torch.device("cpu"), torch.float32)
    logits = distiller.teacher_logits(pixels)
    assert logits.shape == (1, len(ACTION_CLASSES)) and seen[0].shape == (1, 3, 160, 160)
    own = eval_transform(load_bundle(folder).data_config)(smooth)[None]  # the teacher's own eval transform
    assert float((seen[0] - own).abs().mean()) < 0.05  # PIL's bicubic against torch's: the same image
    assert abs(float(seen[0].mean() - own.mean())) < 0.01


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    return preprocessed_smoke_project(tmp_path_factory, tmp_path_factory.mktemp("distill") / "posevit")


def run_train(project, tmp_path: Path, name: str, train_update: dict, teacher: Path | None = None):
    with project.inside():
        cfg: PipelineConfig = load_params()
        cfg = cfg.model_copy(update={"model": STUDENT, "train": cfg.train.model_copy(update=train_update)})
        paths = TrainPaths.under(tmp_path / name, teacher=teacher)
        train(cfg, paths)
        return paths


def predictions(folder: Path, data: Path) -> torch.Tensor:
    bundle = load_bundle(folder)
    logits, _ = split_logits(bundle.model, load_split("test", data), bundle.eval_transform(), 64)
    return logits.argmax(1)


def test_the_student_moves_toward_a_registry_teacher_against_the_same_run_on_labels_alone(
    project, tmp_path, aws_env, bucket, monkeypatch
):
    monkeypatch.setenv("POSEVIT_CACHE", str(tmp_path / "cache"))
    workspace = teacher_bundle(tmp_path / "teacher")
    publish(
        make_client(),
        ModelAddress(bucket, "registry", "posevit"),
        hash_directory(workspace),  # a version is its bundle's hash
        {f"models/{p.name}": p for p in workspace.iterdir()},
        progress=False,
    )
    distill = DistillConfig(teacher=f"s3://{bucket}/registry/posevit:latest", alpha=1.0, temperature=2.0)
    teacher = fetch_teacher(distill)
    assert teacher is not None and teacher != workspace and (teacher / "model.safetensors").is_file()

    common = {"epochs": 1, "warmup_epochs": 0, "lr": 3e-3}
    plain = run_train(project, tmp_path, "plain", common)
    distilled = run_train(project, tmp_path, "distilled", {**common, "distill": distill}, teacher)

    data = project.root / "data/processed"
    answers = predictions(teacher, data)
    agreement = {
        name: float((predictions(paths.models, data) == answers).float().mean())
        for name, paths in (("plain", plain), ("distilled", distilled))
    }
    assert agreement["distilled"] >= agreement["plain"] + 0.5, agreement  # measured: 1.0 against 0.0
    config = json.loads((distilled.models / "config.json").read_text())
    assert config["params"]["train"]["distill"] == distill.model_dump(mode="json")
    assert json.loads((plain.models / "config.json").read_text())["params"]["train"]["distill"] is None
    assert (distilled.live / "plots/metrics/train/kd_loss.tsv").is_file()
    assert not (plain.live / "plots/metrics/train/kd_loss.tsv").exists()
