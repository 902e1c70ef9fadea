"""Model construction, partial freezing, local pretrained weights and the bundle round trip."""

from __future__ import annotations

import json

import pytest
import safetensors.torch
import timm
import torch
from PIL import Image

from posevit.core.config import ModelConfig, TrainConfig
from posevit.core.errors import ConfigError
from posevit.models.bundle import load_bundle, save_bundle
from posevit.models.bundle_config import BundleConfig, BundleError
from posevit.models.factory import create_model
from posevit.models.freeze import freeze_blocks
from posevit.models.transforms import model_data_config
from posevit.train.lightning_module import ActionClassifier

EMBEDDINGS = ("patch_embed.", "pos_embed")


def _grads_after_backward(model: torch.nn.Module) -> dict[str, bool]:
    model(torch.randn(2, 3, 96, 96)).sum().backward()
    return {name: p.grad is not None for name, p in model.named_parameters()}


@pytest.mark.parametrize("n_frozen", [0, 2, 3])
def test_freeze_blocks_controls_which_parameters_learn(n_frozen):
    model = create_model(ModelConfig(name="vit_convstem_tiny"), num_classes=15)
    depth = len(model.blocks)
    frozen = freeze_blocks(model, n_frozen)
    grads = _grads_after_backward(model)
    for name, has_grad in grads.items():
        in_frozen_block = any(name.startswith(f"blocks.{i}.") for i in range(n_frozen))
        is_embedding = name.startswith(EMBEDDINGS)
        should_freeze = in_frozen_block or (n_frozen > 0 and is_embedding)
        assert has_grad is not should_freeze, name
    assert grads["head.weight"] and grads[f"blocks.{depth - 1}.attn.qkv.weight"] is (n_frozen < depth)

    module = ActionClassifier(model, 15, TrainConfig(), frozen).train()
    assert all(not m.training for m in frozen) and module.model.head.training
    assert all(not m.training for f in frozen for m in f.modules())  # BatchNorm in the stem keeps its statistics

    class _Trainer:  # configure_optimizers reads two numbers from its trainer
        estimated_stepping_batches, max_epochs = 10, 2

    module.trainer = _Trainer()  # type: ignore[assignment]  # a stand-in with only what the schedule reads
    optimiser = module.configure_optimizers()["optimizer"]
    optimised = {id(p) for group in optimiser.param_groups for p in group["params"]}
    assert optimised == {id(p) for p in model.parameters() if p.requires_grad}


def test_freezing_more_blocks_than_the_model_has_is_a_config_error():
    model = create_model(ModelConfig(name="vit_convstem_tiny"), num_classes=15)
    with pytest.raises(
        ConfigError, match=r"model.freeze_blocks = 4 is invalid: the model has 3 blocks \(allowed: 0 <= value <= 3\)"
    ):
        freeze_blocks(model, 4)


def test_unknown_model_name_is_a_config_error():
    with pytest.raises(ConfigError, match="not a timm model"):
        create_model(ModelConfig(name="vit_does_not_exist"), num_classes=15)


def test_local_weights_file_loads_like_hub_weights_with_a_new_head(tmp_path):
    # The same format as the hub's file for this model: safetensors, 21k-class in21k head.
    name = "vit_tiny_patch16_224.augreg_in21k"
    source = timm.create_model(name, pretrained=False)
    weights = tmp_path / "model.safetensors"
    safetensors.torch.save_file(source.state_dict(), str(weights))

    model = create_model(ModelConfig(name=name, weights=str(weights)), num_classes=15)

    assert model.head.weight.shape == (15, 192)
    saved = safetensors.torch.load_file(str(weights))
    assert saved["head.weight"].shape[0] == source.num_classes != 15
    for key, tensor in model.state_dict().items():
        if not key.startswith("head."):
            assert torch.equal(tensor, saved[key]), key


def test_missing_weights_file_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="no such file"):
        create_model(ModelConfig(name="vit_convstem_tiny", weights=str(tmp_path / "nope.safetensors")), num_classes=15)


def test_bundle_round_trip_and_corruption(tmp_path):
    model = create_model(ModelConfig(name="vit_convstem_tiny"), num_classes=15).eval()
    labels = [f"class_{i}" for i in range(15)]
    config = BundleConfig(model_name="vit_convstem_tiny", labels=labels, data_config=model_data_config(model))
    save_bundle(tmp_path / "models", model, config)
    assert sorted(p.name for p in (tmp_path / "models").iterdir()) == ["config.json", "model.safetensors"]
    bundle = load_bundle(tmp_path / "models")
    pixels = torch.randn(2, 3, 96, 96)
    assert torch.equal(bundle.model(pixels), model(pixels))
    assert bundle.labels == labels and bundle.data_config["input_size"] == [3, 96, 96]
    assert tuple(bundle.eval_transform()(Image.new("RGB", (200, 120))).shape) == (3, 96, 96)

    with pytest.raises(BundleError, match="not a model bundle"):
        load_bundle(tmp_path / "empty")
    weights = tmp_path / "models" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])
    with pytest.raises(BundleError, match="corrupt"):
        load_bundle(tmp_path / "models")
    (tmp_path / "models" / "config.json").write_text(json.dumps({"format": "something-else"}))
    with pytest.raises(BundleError, match="format"):
        load_bundle(tmp_path / "models")


def test_saving_a_bundle_swaps_the_whole_folder_in(tmp_path):
    """A bundle folder with sub-folders is replaced whole; a leftover half-written one is discarded."""
    model = create_model(ModelConfig(name="vit_convstem_tiny"), num_classes=15).eval()
    config = BundleConfig(
        model_name="vit_convstem_tiny", labels=[f"c{i}" for i in range(15)], data_config=model_data_config(model)
    )
    target = tmp_path / "models"
    (target / "extras" / "deep").mkdir(parents=True)
    (target / "extras" / "deep" / "notes.txt").write_text("old")
    (tmp_path / "models.partial").mkdir()  # left by a killed run
    (tmp_path / "models.partial" / "junk").write_text("half")
    save_bundle(target, model, config)
    assert sorted(p.name for p in target.iterdir()) == ["config.json", "model.safetensors"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["models"]
    assert load_bundle(target).labels == config.labels


def test_colour_jitter_is_only_in_the_train_transform_when_asked_for():
    from torchvision.transforms import ColorJitter

    from posevit.core.config import AugmentConfig
    from posevit.train.augment import train_transform

    data_config = model_data_config(create_model(ModelConfig(name="vit_convstem_tiny"), num_classes=15))

    def jitters(strength: float) -> list:
        return [
            t
            for t in train_transform(data_config, AugmentConfig(color_jitter=strength)).transforms
            if isinstance(t, ColorJitter)
        ]

    assert jitters(0.0) == []  # timm's own default would add ColorJitter(0.4)
    assert len(jitters(0.3)) == 1


def test_eval_transform_is_deterministic_and_train_transform_augments():
    from posevit.core.config import AugmentConfig
    from posevit.models.transforms import eval_transform
    from posevit.train.augment import train_transform

    model = create_model(ModelConfig(name="vit_convstem_tiny"), num_classes=15)
    data_config = model_data_config(model)
    image = Image.fromarray(torch.randint(0, 256, (120, 160, 3), dtype=torch.uint8).numpy())
    evaluate = eval_transform(data_config)
    assert torch.equal(evaluate(image), evaluate(image))
    augment = train_transform(data_config, AugmentConfig(scale=(0.3, 0.6)))
    torch.manual_seed(0)
    assert not torch.equal(augment(image), augment(image))
    assert augment(image).shape == evaluate(image).shape == (3, 96, 96)
