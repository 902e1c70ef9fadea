"""The IR's token split: a timm ViT's per-token layers on the tokens filling whole 32-row blocks and, apart, on the
rest. It must compute what the model computes (PyTorch and OpenVINO), and say why where it cannot apply."""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch
from timm.models.vision_transformer import ResPostBlock, VisionTransformer

from posevit.export.onnx import FP32_FILE, export_onnx
from posevit.export.openvino_ir import write_fp32_ir
from posevit.export.token_split import split_point, token_split_model
from posevit.models.bundle import load_bundle
from posevit.models.openvino_runtime import OpenVinoModel
from tests.helpers.bundles import tiny_bundle

pytestmark = pytest.mark.timeout(300)

SMALL = dict(img_size=64, patch_size=8, embed_dim=32, depth=2, num_heads=2, num_classes=15)  # 64 patches


def small_vit(**changes) -> VisionTransformer:
    torch.manual_seed(0)
    return VisionTransformer(**{**SMALL, **changes}).eval()


@pytest.mark.parametrize(
    ("tokens", "first"), [(197, 192), (577, 576), (261, 256), (36, 32), (64, None), (20, None), (32, None)]
)
def test_the_split_leaves_the_ragged_row_block_apart(tokens, first):
    assert split_point(tokens) == first


@pytest.mark.parametrize(
    ("changes", "groups"),
    [
        ({}, (64, 1)),  # class token + 64 patches
        ({"class_token": False, "global_pool": "avg", "img_size": 72}, (64, 17)),  # 81 patches, mean of all
        ({"reg_tokens": 4, "no_embed_class": True}, (64, 5)),  # registers, as DINOv2's
        ({"global_pool": "map"}, (64, 1)),  # attention pooling over every token, as SigLIP's
        ({"qk_norm": True, "init_values": 0.1}, (64, 1)),  # q/k norms and LayerScale, as newer ViTs
    ],
)
def test_the_split_model_computes_what_the_model_computes(changes, groups):
    model = small_vit(**changes)
    side = changes.get("img_size", 64)
    split = token_split_model(model, (3, side, side))
    assert not isinstance(split, str), split
    assert split.groups == groups
    pixels = torch.randn(3, 3, side, side)
    with torch.no_grad():
        torch.testing.assert_close(split(pixels), model(pixels), atol=1e-5, rtol=1e-5)
        assert split(pixels[:1]).shape == (1, 15)


def multiply_adds(model: torch.nn.Module, side: int = 64) -> int:
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        model(torch.zeros(1, 3, side, side))
    return counter.get_total_flops() // 2


def test_where_the_head_reads_the_class_token_the_last_block_computes_only_what_reaches_it():
    """Keys and values of every token, the rest of the last block for the class token alone: of a 2-block ViT over
    65 tokens, the last block's queries, attention, proj and MLP for the 64 other tokens are left out (timm's
    unfused attention, whose products PyTorch's counter counts as it counts the split model's)."""
    model = small_vit()
    for block in model.blocks:
        block.attn.fused_attn = False
    split = token_split_model(model, (3, 64, 64))
    assert not isinstance(split, str) and split.class_token_only
    per_token = 2 * 32 * 32 + 2 * 32 * 128  # q, proj, fc1, fc2 of one token (width 32, MLP 128)
    per_query = 2 * 65 * 32  # its scores over the 65 tokens and their mix of values
    assert multiply_adds(model) - multiply_adds(split) == 64 * (per_token + per_query)
    pooled = small_vit(class_token=False, global_pool="avg", img_size=72)
    for block in pooled.blocks:
        block.attn.fused_attn = False
    averaged = token_split_model(pooled, (3, 72, 72))
    assert not isinstance(averaged, str) and not averaged.class_token_only  # the mean needs every token
    assert multiply_adds(averaged, 72) == multiply_adds(pooled, 72)


@pytest.mark.parametrize(
    ("model", "reason"),
    [
        (torch.nn.Sequential(torch.nn.Flatten(), torch.nn.LazyLinear(15)), "Sequential is not a plain timm"),
        (small_vit(block_fn=ResPostBlock), "not all timm's plain Block with Attention (ResPostBlock)"),
        (small_vit(class_token=False, global_pool="avg"), "its 64 tokens leave no ragged row block"),
    ],
)
def test_a_model_the_split_does_not_fit_keeps_one_group_and_says_why(model, reason):
    assert reason in token_split_model(model, (3, 64, 64))


def test_the_split_ir_answers_as_pytorch_and_as_the_ir_of_one_group(tmp_path):
    """The stage's IR of the demo's model (36 tokens: 32 + 4) against the plain IR, on one image and on eight."""
    scratch_before = set(Path(tempfile.gettempdir()).glob("posevit-ir-*"))
    bundle = load_bundle(tiny_bundle(tmp_path / "models", seed=5, head_scale=40.0))
    onnx_file = export_onnx(bundle, tmp_path / FP32_FILE, opset=18)
    assert write_fp32_ir(bundle, onnx_file, tmp_path / "split/model.xml", 18, token_split=True) == (32, 4)
    off = write_fp32_ir(bundle, onnx_file, tmp_path / "one/model.xml", 18, token_split=False)
    assert off == "export.openvino_token_split is off"
    split, one = (OpenVinoModel(tmp_path / f"{name}/model.xml", "f32") for name in ("split", "one"))
    pixels = np.random.default_rng(0).standard_normal((8, 3, 96, 96), dtype=np.float32)
    with torch.no_grad():
        reference = bundle.model(torch.from_numpy(pixels)).numpy()
    for batch in (pixels[:1], pixels):
        np.testing.assert_allclose(split.logits(batch), one.logits(batch), atol=1e-4)
        np.testing.assert_allclose(split.logits(batch), reference[: len(batch)], atol=1e-3)
    assert (tmp_path / "split/model.xml").read_bytes() != (tmp_path / "one/model.xml").read_bytes()
    assert set(Path(tempfile.gettempdir()).glob("posevit-ir-*")) == scratch_before  # its ONNX was a scratch file


def test_a_conv_stem_counts_its_tokens_from_a_real_pass():
    """The demo's students (HybridEmbed over a conv stem): their tokens come from a pass, not from a patch grid."""
    from posevit.core.config import ModelConfig
    from posevit.models.factory import create_model

    model = create_model(ModelConfig(name="vit_convstem_micro"), num_classes=15).eval()
    split = token_split_model(model, (3, 96, 96))
    assert not isinstance(split, str) and split.groups == (32, 4)
    pixels = torch.randn(2, 3, 96, 96)
    with torch.no_grad():
        torch.testing.assert_close(split(pixels), model(pixels), atol=1e-5, rtol=1e-5)


def test_the_split_ir_joins_its_groups_in_place_and_feeds_attention_without_copies(tmp_path):
    """Tokens first, the groups are two halves of one buffer: OpenVINO joins q, k, v and splits attention's output
    in place, not with reference kernels copying them (one of each per block, with the tokens second). And q, k, v
    are linear layers of their own, each a [0, 2, 1, 3] transpose from attention's layout: no split of a joint qkv
    output, and where OpenVINO fuses attention into one kernel, one transpose copy per block (the keys') where the
    plain IR makes two (qkv's, then the keys')."""
    import openvino as ov

    bundle = load_bundle(tiny_bundle(tmp_path / "models", seed=5, head_scale=40.0))
    onnx_file = export_onnx(bundle, tmp_path / FP32_FILE, opset=18)
    write_fp32_ir(bundle, onnx_file, tmp_path / "model.xml", 18, token_split=True)
    config = {"INFERENCE_PRECISION_HINT": "f32", "INFERENCE_NUM_THREADS": 2, "PERF_COUNT": True}
    request = ov.Core().compile_model(tmp_path / "model.xml", "CPU", config).create_infer_request()
    for batch in (1, 8):
        request.infer({0: np.zeros((batch, 3, 96, 96), np.float32)})
        executed = [layer for layer in request.profiling_info if layer.status.name == "EXECUTED"]
        copies = [
            (layer.node_type, layer.exec_type)
            for layer in executed
            if layer.node_type in ("Concat", "Split", "VariadicSplit")
            and (layer.exec_type.startswith("ref") or layer.node_type == "Split")
            and layer.exec_type != "ref_i32"  # shapes, not tokens
        ]
        assert copies == []
        transposes = [layer.node_name for layer in executed if layer.node_type == "Transpose"]
        if not any(layer.node_type == "MatMul" for layer in executed):  # attention in one fused kernel (its MHA
            # snippet, which OpenVINO builds on AVX-512 CPUs): it reads the [0, 2, 1, 3] transposes itself
            assert len(transposes) == len(bundle.model.blocks) + 2  # + patches to tokens, and tokens first
