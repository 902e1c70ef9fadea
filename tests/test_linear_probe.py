"""train.mode=linear_probe on the processed demo splits: one feature pass per split, only the head learns, and the
result is the usual bundle (loads, scores what training reported, is calibrated)."""

from __future__ import annotations

import logging
from typing import get_type_hints

import pytest
import pytorch_lightning as pl
import safetensors.torch
import torch
from timm.layers import HybridEmbed

from posevit.core.config import PipelineConfig, compose_config, load_params, validate_config
from posevit.core.errors import ConfigError
from posevit.core.labels import ACTION_CLASSES
from posevit.data.store import load_split
from posevit.models.bundle import load_bundle
from posevit.models.factory import create_model
from posevit.train.calibrate import split_logits
from posevit.train.loop import TrainMetrics, TrainPaths, train
from tests.helpers.dvc_project import preprocessed_smoke_project

EPOCHS = 30  # the head's epochs on cached features: the backbone must still see each image once


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    return preprocessed_smoke_project(tmp_path_factory, tmp_path_factory.mktemp("probe") / "posevit")


def _config(project) -> PipelineConfig:
    with project.inside():
        cfg = load_params()
    probe = {"mode": "linear_probe", "epochs": EPOCHS, "lr": 1e-2, "warmup_epochs": 0}
    return cfg.model_copy(update={"train": cfg.train.model_copy(update=probe)})


def test_a_linear_probe_trains_only_the_head_on_features_computed_once(project, tmp_path, caplog):
    cfg = _config(project)
    data = project.root / "data/processed"
    paths = TrainPaths.under(tmp_path, data)
    seen = {"images": 0}

    def count_backbone_images(module, args, output) -> None:
        if isinstance(module, HybridEmbed):  # vit_convstem_tiny's patch embedding: every image enters here
            seen["images"] += args[0].shape[0]

    hook = torch.nn.modules.module.register_module_forward_hook(count_backbone_images)
    try:
        with caplog.at_level(logging.INFO, logger="posevit"):
            metrics = train(cfg, paths)
    finally:
        hook.remove()

    train_split, val_split = load_split("train", data), load_split("val", data)
    assert seen["images"] == len(train_split) + len(val_split)  # once per split, not once per epoch
    assert caplog.text.count("feature pass over the train split") == caplog.text.count("feature pass over the val") == 1
    assert metrics is not None and set(metrics) == set(get_type_hints(TrainMetrics))
    assert metrics["epochs"] == EPOCHS and metrics["trainable_params"] == 15 * 128 + 15  # the head of width 128
    assert (paths.live / "plots/metrics/val/acc.tsv").read_text().count("\n") == EPOCHS + 1  # header + epochs

    # Only the head moved from the weights the run started from (same seed, same model); buffers too stayed.
    pl.seed_everything(cfg.train.seed, workers=True)
    initial = create_model(cfg.model, num_classes=len(ACTION_CLASSES)).state_dict()
    shipped = safetensors.torch.load_file(str(paths.models / "model.safetensors"))
    changed = {name for name, tensor in initial.items() if not torch.equal(shipped[name], tensor)}
    assert changed == {"head.weight", "head.bias"}

    # The bundle is the whole model: it scores the val split as training reported, well above chance.
    bundle = load_bundle(paths.models)
    logits, labels = split_logits(bundle.model, val_split, bundle.eval_transform(), 64)
    accuracy = float((logits.argmax(1) == labels).float().mean())
    assert accuracy == pytest.approx(metrics["best_val_acc"], abs=1.5 / len(val_split))  # bf16 may flip one
    assert accuracy > 2 / len(ACTION_CLASSES)
    assert bundle.config.freeze_blocks == 3 and bundle.config.params["train"]["mode"] == "linear_probe"  # type: ignore[index]
    assert bundle.temperature != 1.0


def test_the_dinov2_probe_recipe_composes():
    cfg = validate_config(compose_config(["experiment=har_linear_probe"]))
    assert cfg.train.mode == "linear_probe" and cfg.model.name == "vit_base_patch14_reg4_dinov2.lvd142m"
    assert cfg.model.img_size == 224 and cfg.data.name == "Bingsu/Human_Action_Recognition"


def test_knobs_a_probe_cannot_use_are_a_config_error_that_names_them():
    with pytest.raises(ConfigError, match=r"mode=linear_probe trains only the head .* layer_decay=0.75, mixup=0.8"):
        validate_config(compose_config(["experiment=har_finetune", "train.mode=linear_probe"]))
