"""The fine-tuning knobs, each shown to act (and shown not to when it is off): layer-wise LR decay under the
warm-up + cosine schedule, mixup/CutMix, RandAugment and random erasing, EMA weights in the bundle,
early stopping, gradient clipping and accumulation, torch.compile, loader workers, batch limits."""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest
import pytorch_lightning as pl
import safetensors.torch
import torch
from pytorch_lightning.callbacks import Callback
from torch.utils.data import DataLoader

from posevit.core.config import (
    ModelConfig,
    PipelineConfig,
    TrainConfig,
    TrainerConfig,
    compose_config,
    load_params,
    validate_config,
)
from posevit.core.errors import ConfigError
from posevit.core.labels import ACTION_CLASSES
from posevit.core.precision import resolve_fused_attention
from posevit.data.store import LABELS, PIXELS
from posevit.models.factory import create_model, set_fused_attention
from posevit.models.freeze import freeze_blocks
from posevit.models.transforms import model_data_config
from posevit.train.augment import train_transform
from posevit.train.lightning_module import ActionClassifier, warmup_cosine
from posevit.train.loop import TrainPaths, loader_workers, train
from tests.helpers.dvc_project import preprocessed_smoke_project

TINY = ModelConfig(name="vit_convstem_tiny")
DEPTH = 3  # blocks of vit_convstem_tiny


def random_batches(count: int, batch_size: int = 4, seed: int = 0) -> DataLoader:
    generator = torch.Generator().manual_seed(seed)
    items = [
        {PIXELS: torch.randn(3, 96, 96, generator=generator), LABELS: torch.randint(0, 15, (), generator=generator)}
        for _ in range(count * batch_size)
    ]
    return DataLoader(items, batch_size=batch_size)  # type: ignore[arg-type]


class Probe(Callback):
    """Records, after each optimiser step: every parameter's learning rate, the gradient norm the step used."""

    def __init__(self) -> None:
        self.lrs: list[dict[str, float]] = []
        self.grad_norms: list[float] = []

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        optimizer = trainer.optimizers[0]
        names = {id(p): n for n, p in pl_module.model.named_parameters()}

        def after_step(opt, args, kwargs) -> None:
            # Lightning runs backward (and clipping) inside step(), so the gradients are there only now.
            grads = [p.grad for group in opt.param_groups for p in group["params"] if p.grad is not None]
            self.grad_norms.append(float(torch.linalg.vector_norm(torch.stack([g.norm() for g in grads]))))
            self.lrs.append({names[id(p)]: group["lr"] for group in opt.param_groups for p in group["params"]})

        optimizer.register_step_post_hook(after_step)


def fit(
    train_cfg: TrainConfig, freeze: int = 0, batches: int = 2, **trainer_args: Any
) -> tuple[ActionClassifier, Probe]:
    torch.manual_seed(0)
    model = create_model(TINY, num_classes=len(ACTION_CLASSES))
    module = ActionClassifier(model, len(ACTION_CLASSES), train_cfg, freeze_blocks(model, freeze))
    probe = Probe()
    trainer = pl.Trainer(
        max_epochs=1,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        callbacks=[probe],
        **trainer_args,
    )
    trainer.fit(module, train_dataloaders=random_batches(batches))
    return module, probe


@pytest.mark.parametrize("freeze", [0, 2])
def test_layer_decay_scales_each_depth_through_warmup_and_cosine(freeze):
    cfg = TrainConfig(lr=1e-3, warmup_epochs=0, layer_decay=0.5, epochs=1)
    _, probe = fit(cfg, freeze=freeze, batches=4)
    lrs = probe.lrs[1]  # the rates of the second optimiser step: the schedule has moved once
    head = cfg.lr * warmup_cosine(0, 4)(1)
    assert lrs["head.weight"] == pytest.approx(head)
    # Embeddings lowest (decay^(depth+1)), block i at decay^(depth-i), the head at 1.
    expected = {f"blocks.{DEPTH - 1}.attn.qkv.weight": 0.5}
    if freeze == 0:
        expected |= {"blocks.0.attn.qkv.weight": 0.5**DEPTH, "patch_embed.proj.weight": 0.5 ** (DEPTH + 1)}
    for name, scale in expected.items():
        assert lrs[name] == pytest.approx(head * scale), name
    if freeze:
        assert not any(name.startswith(("patch_embed", "blocks.0.", "blocks.1.")) for name in lrs)
    # The ratios hold at every later step of the schedule.
    for step in probe.lrs[1:]:
        assert step[f"blocks.{DEPTH - 1}.attn.qkv.weight"] == pytest.approx(step["head.weight"] * 0.5)


def test_without_layer_decay_every_parameter_shares_one_rate():
    _, probe = fit(TrainConfig(lr=1e-3, warmup_epochs=0, epochs=1))
    assert len(set(probe.lrs[0].values())) == 1


def test_adamw_runs_fused():
    module, _ = fit(TrainConfig(lr=1e-3, warmup_epochs=0, epochs=1))
    optimizer = module.trainer.optimizers[0]
    assert isinstance(optimizer, torch.optim.AdamW) and optimizer.defaults["fused"] is True


def test_fused_attention_auto_is_the_kernel_on_gpus_and_matmuls_on_cpus():
    assert resolve_fused_attention(TrainerConfig(accelerator="cpu")) is False
    assert resolve_fused_attention(TrainerConfig(accelerator="gpu")) is True
    assert resolve_fused_attention(TrainerConfig(accelerator="cpu", fused_attention=True)) is True
    assert resolve_fused_attention(TrainerConfig(accelerator="gpu", fused_attention=False)) is False
    torch.manual_seed(0)
    model = create_model(TINY, num_classes=15).eval()
    pixels = torch.randn(2, 3, 96, 96)
    assert set_fused_attention(model, True) == DEPTH
    fused = model(pixels)
    assert set_fused_attention(model, False) == DEPTH
    assert all(not block.attn.fused_attn for block in model.blocks)
    torch.testing.assert_close(model(pixels), fused, rtol=1e-4, atol=1e-5)  # the same maths, another kernel


def test_mixup_and_cutmix_mix_the_inputs_and_train_acc_counts_hard_labels():
    for mixup in (0.0, 0.8):
        seen: list[torch.Tensor] = []
        torch.manual_seed(0)
        model = create_model(TINY, num_classes=len(ACTION_CLASSES))
        model.register_forward_pre_hook(lambda _module, args, seen=seen: seen.append(args[0].detach().clone()))
        module = ActionClassifier(model, len(ACTION_CLASSES), TrainConfig(mixup=mixup, cutmix=1.0 if mixup else 0.0))
        batch = next(iter(random_batches(1)))
        module.training_step(batch, 0)
        assert (module.mixup is not None) == bool(mixup)
        assert torch.equal(seen[0], batch[PIXELS].contiguous(memory_format=torch.channels_last)) == (not mixup)
        with torch.no_grad():
            hard = (model(seen[0]).argmax(1) == batch[LABELS]).float().mean()
        assert float(module.train_acc.compute()) == pytest.approx(float(hard))


def test_mixing_needs_an_even_batch_size():
    with pytest.raises(ConfigError, match="train.batch_size"):
        validate_config(compose_config(["train.mixup=0.8", "train.batch_size=31"]))
    assert validate_config(compose_config(["train.cutmix=1.0", "train.batch_size=32"])).train.mixes


def test_rand_augment_and_random_erasing_come_from_timm():
    data_config = model_data_config(create_model(TINY, num_classes=15))
    plain = repr(train_transform(data_config, TrainConfig().augment))
    augmented = TrainConfig.model_validate({"augment": {"auto_augment": "rand-m9-mstd0.5-inc1", "re_prob": 0.25}})
    text = repr(train_transform(data_config, augmented.augment))
    assert "RandAugment" in text and "RandomErasing" in text
    assert "RandAugment" not in plain and "RandomErasing" not in plain


def test_gradient_clipping_and_accumulation_reach_the_optimiser():
    _, free = fit(TrainConfig(epochs=1), batches=4)
    _, clipped = fit(TrainConfig(epochs=1), batches=4, gradient_clip_val=1e-3)
    assert max(free.grad_norms) > 1e-2 and max(clipped.grad_norms) <= 1e-3 * 1.01
    _, accumulated = fit(TrainConfig(epochs=1), batches=4, accumulate_grad_batches=2)
    assert len(free.lrs) == 4 and len(accumulated.lrs) == 2


@pytest.mark.parametrize(
    "override",
    [
        "train.layer_decay=1.5",
        "train.mixup=-1",
        "train.augment.auto_augment=rand_m9",
        "train.augment.re_prob=2",
        "train.ema_decay=1.0",
        "train.num_workers=many",
        "train.early_stopping_patience=0",
        "train.grad_clip=0",
        "train.accumulate_grad_batches=0",
        "trainer.limit_train_batches=0",
        "trainer.compile=maybe",
        "trainer.fused_attention=sometimes",
    ],
)
def test_every_new_key_is_validated_with_a_message_that_names_it(override):
    with pytest.raises(ConfigError, match=override.split("=")[0].replace(".", r"\.")):
        validate_config(compose_config([override]))


def test_num_workers_auto_is_the_cores_each_device_gets():
    import os

    cfg = validate_config(compose_config([]))
    auto = cfg.model_copy(update={"train": cfg.train.model_copy(update={"num_workers": "auto"})})
    cores = len(os.sched_getaffinity(0))
    assert loader_workers(auto) == cores
    two = auto.model_copy(update={"trainer": auto.trainer.model_copy(update={"devices": 2})})
    assert loader_workers(two) == max(1, cores // 2)
    assert loader_workers(cfg) == cfg.train.num_workers


# The stage's own loop on a processed demo split: EMA weights in the bundle, early stopping, compile, limits.


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    return preprocessed_smoke_project(tmp_path_factory, tmp_path_factory.mktemp("finetune") / "posevit")


def run_train(project, tmp_path, name: str, train: dict | None = None, trainer: dict | None = None):
    with project.inside():
        cfg: PipelineConfig = load_params()
        cfg = cfg.model_copy(
            update={
                "train": cfg.train.model_copy(update=train or {}),
                "trainer": cfg.trainer.model_copy(update=trainer or {}),
            }
        )
        paths = TrainPaths.under(tmp_path / name)
        return train_fn(cfg, paths), paths


train_fn = train


def test_ema_weights_are_validated_and_shipped(project, tmp_path):
    # A decay so close to 1 without warm-up that the average stays at the initial weights.
    _, ema = run_train(project, tmp_path, "ema", train={"epochs": 2, "ema_decay": 0.999999, "ema_warmup": False})
    _, raw = run_train(project, tmp_path, "raw", train={"epochs": 2})
    torch.manual_seed(0)
    config = json.loads((ema.models / "config.json").read_text())
    assert config["ema_decay"] == 0.999999 and "ema_decay" not in json.loads((raw.models / "config.json").read_text())
    shipped = safetensors.torch.load_file(str(ema.models / "model.safetensors"))
    trained = safetensors.torch.load_file(str(raw.models / "model.safetensors"))
    initial = _initial_weights(project, parameters_only=True)  # the EMA copies buffers (BatchNorm statistics)
    drift = max(float((shipped[k].float() - initial[k].float()).abs().max()) for k in initial)
    moved = max(float((trained[k].float() - initial[k].float()).abs().max()) for k in initial)
    assert drift < 1e-3 < moved


def _initial_weights(project, parameters_only: bool = False) -> dict[str, torch.Tensor]:
    """The weights training started from: the same seed, the same model."""
    with project.inside():
        cfg = load_params()
    pl.seed_everything(cfg.train.seed, workers=True)
    model = create_model(cfg.model, num_classes=len(ACTION_CLASSES))
    return {n: p.detach() for n, p in model.named_parameters()} if parameters_only else model.state_dict()


def test_early_stopping_ends_a_run_that_stopped_improving(project, tmp_path):
    stalled = {"epochs": 6, "lr": 1e-12, "warmup_epochs": 0}  # val/acc cannot move
    stopped, _ = run_train(project, tmp_path, "stop", train={**stalled, "early_stopping_patience": 1})
    assert stopped["epochs"] == 2 and stopped["best_epoch"] == 1
    full, _ = run_train(project, tmp_path, "full", train=stalled)
    assert full["epochs"] == 6


def test_compile_and_batch_limits_train_a_bundle(project, tmp_path, caplog):
    torch._dynamo.reset()
    with caplog.at_level(logging.INFO, logger="posevit"):
        metrics, paths = run_train(
            project, tmp_path, "compiled", trainer={"compile": True, "limit_train_batches": 2, "limit_val_batches": 1}
        )
    assert "attention matmuls" in caplog.text  # trainer.fused_attention=auto on a CPU
    assert metrics["epochs"] == 1 and (paths.models / "model.safetensors").is_file()
    names = set(safetensors.torch.load_file(str(paths.models / "model.safetensors")))
    assert names == set(_initial_weights(project))  # no `_orig_mod.` prefixes: the bundle loads anywhere
    assert torch._dynamo.utils.counters["stats"]["unique_graphs"] > 0  # the model really went through compile
    rows = (paths.live / "plots/metrics/train/loss.tsv").read_text().splitlines()
    assert rows[1].split("\t")[0] == "1"  # logged at step 1: two optimiser steps (of 8 unlimited), zero-based


def test_the_har_finetune_recipe_runs_end_to_end_on_the_demo_split(project, tmp_path):
    """Every knob of experiment=har_finetune at once (on the tiny model: the real one needs the hub)."""
    recipe = validate_config(compose_config(["experiment=har_finetune"])).train
    assert recipe.layer_decay and recipe.mixes and recipe.ema_decay and recipe.augment.auto_augment
    knobs = {name: getattr(recipe, name) for name in TrainConfig.model_fields if name not in ("epochs", "batch_size")}
    metrics, paths = run_train(
        project, tmp_path, "recipe", train={**knobs, "epochs": 2, "batch_size": 16}, trainer={"limit_train_batches": 3}
    )
    config = json.loads((paths.models / "config.json").read_text())
    assert config["ema_decay"] == recipe.ema_decay and config["params"]["train"]["layer_decay"] == 0.75
    assert metrics["epochs"] == 2 and config["temperature"] > 0
