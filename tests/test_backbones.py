"""The backbone zoo of conf/model/: each at full size (random weights) builds with timm's data config, trains one
optimiser step with freezing and layer decay, round-trips through the bundle and exports to ONNX that matches it."""

from __future__ import annotations

import time

import numpy as np
import onnxruntime
import pytest
import pytorch_lightning as pl
import safetensors.torch
import timm
import torch
from timm.models import get_pretrained_cfg
from torch.utils.data import DataLoader

from posevit.core.config import ModelConfig, validate_config
from posevit.core.config import compose_config as compose
from posevit.core.errors import ConfigError
from posevit.core.labels import ACTION_CLASSES
from posevit.data.store import LABELS, PIXELS
from posevit.export.onnx import export_onnx
from posevit.models.bundle import Bundle, load_bundle, save_bundle
from posevit.models.bundle_config import BundleConfig
from posevit.models.factory import create_model
from posevit.models.freeze import freeze_blocks, model_depth
from posevit.models.transforms import model_data_config
from posevit.train.lightning_module import ActionClassifier
from posevit.train.linear_probe import classifier_head, pooled_features
from posevit.train.loop import build_network

pytestmark = pytest.mark.timeout(300)

# conf/model/<file>: (timm name, input side as built, blocks that model.freeze_blocks counts, the classifier,
# layer-decay steps between the first block left trainable (block 2) and the head in timm's layer groups)
ZOO = {
    "vit_base_patch14_reg4_dinov2": ("vit_base_patch14_reg4_dinov2.lvd142m", 224, 12, "head", 10),
    "vit_base_patch16_siglip_224": ("vit_base_patch16_siglip_224.v2_webli", 224, 12, "head", 10),
    "eva02_base_patch14_224": ("eva02_base_patch14_224.mim_in22k", 224, 12, "head", 10),
    "convnext_base": ("convnext_base.fb_in22k_ft_in1k", 224, 36, "head.fc", 34),
}
FROZEN, DECAY = 2, 0.75


def _one_step(model: torch.nn.Module, frozen: list[torch.nn.Module], cfg, side: int) -> dict[str, float]:
    """One optimiser step on a random image; returns each trainable parameter's learning rate."""
    torch.manual_seed(0)
    batch = [{PIXELS: torch.randn(3, side, side), LABELS: torch.tensor(3)}]  # one image: the cheapest real step
    module = ActionClassifier(model, len(ACTION_CLASSES), cfg.train, frozen)
    trainer = pl.Trainer(
        max_steps=1,
        accelerator="cpu",
        precision="32-true",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        limit_val_batches=0,
    )
    trainer.fit(module, train_dataloaders=DataLoader(batch, batch_size=1))  # type: ignore[arg-type]
    names = {id(p): n for n, p in model.named_parameters()}
    return {names[id(p)]: g["lr"] for g in trainer.optimizers[0].param_groups for p in g["params"]}


@pytest.mark.parametrize("conf_name", list(ZOO))
def test_each_backbone_builds_trains_a_step_and_exports_to_onnx(conf_name, tmp_path):
    timm_name, side, depth, head_name, decay_steps = ZOO[conf_name]
    started = time.perf_counter()
    overrides = [f"model={conf_name}", "model.pretrained=false", f"model.freeze_blocks={FROZEN}"]
    cfg = validate_config(compose([*overrides, f"train.layer_decay={DECAY}"]))
    assert cfg.model.name == timm_name
    network = build_network(cfg, len(ACTION_CLASSES))
    model = network.model

    # timm's data config of the model as built: the pretrained config's, at the size the model takes.
    pretrained = get_pretrained_cfg(timm_name).to_dict()
    assert network.data_config["input_size"] == [3, side, side]
    for key in ("interpolation", "mean", "std", "crop_pct", "crop_mode"):
        expected = pretrained[key]
        assert network.data_config[key] == (list(expected) if isinstance(expected, tuple) else expected), key  # type: ignore[literal-required]
    assert model_depth(model) == depth

    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    lrs = _one_step(model, network.frozen, cfg, side)
    moved = {n for n, p in model.named_parameters() if not torch.equal(p, before[n])}
    frozen_names = {n for n, p in model.named_parameters() if not p.requires_grad}
    assert frozen_names and not moved & frozen_names and set(lrs) == set(before) - frozen_names
    assert f"{head_name}.weight" in moved
    lowest = next(n for n, _ in model.named_parameters() if n in lrs)  # the first block left trainable
    assert f"blocks.{FROZEN}." in lowest
    assert lrs[lowest] == pytest.approx(lrs[f"{head_name}.weight"] * DECAY**decay_steps), lowest  # layer decay acts

    # The linear probe's split of the model: the head on timm's pooled features is the whole model.
    model.eval()
    pixels = torch.randn(1, 3, side, side)
    with torch.no_grad():
        logits = model(pixels)
        assert torch.allclose(classifier_head(model)(pooled_features(model, pixels)), logits, atol=1e-5)

    config = BundleConfig(model_name=timm_name, labels=list(ACTION_CLASSES), data_config=network.data_config)
    onnx_file = export_onnx(Bundle(model, config), tmp_path / "model.onnx", opset=18)
    session = onnxruntime.InferenceSession(str(onnx_file), providers=["CPUExecutionProvider"])
    (exported,) = session.run(None, {"pixels": pixels.numpy()})
    np.testing.assert_allclose(exported, logits.numpy(), atol=1e-3, rtol=1e-3)
    print(f"{conf_name}: {time.perf_counter() - started:.1f} s")


def test_local_weights_load_into_the_configured_size_and_the_bundle_keeps_it(tmp_path):
    """A hub-format DINOv2 file (518 px position grid, no head) loads for 224 px inputs with a new head, and the
    bundle rebuilds the model at 224 px, not at timm's default 518."""
    name = "vit_small_patch14_reg4_dinov2.lvd142m"  # the ViT-B's family at a quarter of the size
    source = timm.create_model(name, pretrained=False, num_classes=0)
    weights = tmp_path / "model.safetensors"
    safetensors.torch.save_file(source.state_dict(), str(weights))

    model = create_model(ModelConfig(name=name, weights=str(weights), img_size=224), num_classes=15)

    assert model.pos_embed.shape == (1, 16 * 16, 384) != source.pos_embed.shape  # resampled from 37 x 37
    assert torch.equal(model.blocks[5].mlp.fc1.weight, source.blocks[5].mlp.fc1.weight)
    assert model.head.weight.shape == (15, 384)

    data_config = model_data_config(model)
    assert data_config["input_size"] == [3, 224, 224]
    save_bundle(
        tmp_path / "models", model, BundleConfig(model_name=name, labels=list(ACTION_CLASSES), data_config=data_config)
    )
    bundle = load_bundle(tmp_path / "models")
    assert bundle.model.pos_embed.shape == model.pos_embed.shape and bundle.data_config == data_config


def test_an_input_size_off_the_patch_grid_is_a_config_error():
    with pytest.raises(ConfigError, match=r"img_size = 225 is not a multiple of .* patch size 14: choose e.g. 224"):
        create_model(ModelConfig(name="vit_small_patch14_reg4_dinov2", img_size=225), num_classes=15)


def test_freezing_a_family_without_blocks_or_stages_names_what_is_supported():
    model = create_model(ModelConfig(name="resnet18"), num_classes=15)  # layer1..layer4: neither layout
    with pytest.raises(ConfigError, match=r"ResNet has neither `blocks` .* or `stages\[i\].blocks` \(ConvNeXt\)"):
        freeze_blocks(model, 1)
    assert freeze_blocks(model, 0) == []  # it still trains whole
