"""benchmarks.openvino_profile: an IR's batch-1 time split by layer group from OpenVINO's own per-layer timings,
its linear layers' multiply-adds read from the compiled shapes, and the ceiling at the int8 peak."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
import torch

from benchmarks.openvino_profile import ATTENTION, LINEAR, PATCH_EMBEDDING, REST, layer_group, profile, summary
from posevit.export.openvino_ir import INT8_IR
from posevit.export.token_split import token_split_model
from posevit.models.bundle import load_bundle
from tests.helpers.bundles import tiny_bundle
from tests.helpers.openvino_exports import write_openvino_exports

pytestmark = pytest.mark.timeout(300)


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("profile")
    tiny_bundle(root / "models", seed=5)
    write_openvino_exports(root / "models", root / "exports", calibration_images=4)
    return root


def linear_multiply_adds(model: torch.nn.Module, side: int) -> int:
    """What PyTorch counts in the model's linear layers (addmm, mm; attention's products are batched, bmm)."""
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        model(torch.zeros(1, 3, side, side))
    counts = counter.get_flop_counts()["Global"]
    return sum(flops for op, flops in counts.items() if str(op) in ("aten.addmm", "aten.mm")) // 2


def test_the_profile_of_the_int8_ir_splits_its_time_and_counts_its_linear_layers(project):
    bundle = load_bundle(project / "models")
    side = bundle.data_config["input_size"][-1]
    split = token_split_model(bundle.model, tuple(bundle.data_config["input_size"]))
    assert not isinstance(split, str)
    result = profile(project / "exports" / INT8_IR, rounds=3, int8_peak_tops=1.0)
    assert result["linear_gmacs"] == pytest.approx(linear_multiply_adds(split, side) / 1e9, abs=1e-4)  # its work
    assert result["linear_gmacs"] > 0.01
    assert all(result["ms"][group] > 0 for group in (LINEAR, ATTENTION, PATCH_EMBEDDING, REST))
    assert sum(result["ms"].values()) == pytest.approx(result["total_ms"], abs=0.05)
    assert result["int8_peak_tops"] == 1.0 and result["linear_share_of_int8_peak"] > 0


def test_the_ceiling_keeps_every_other_layer_as_measured_and_runs_the_linear_ones_at_the_peak():
    seconds = Counter({LINEAR: 0.030, ATTENTION: 0.006, REST: 0.004})
    result = summary(seconds, macs=10**10, int8_peak_tops=1.0)  # 20 G ops: 20 ms at the peak
    assert result["linear_tops"] == pytest.approx(0.667, abs=1e-3)
    assert result["linear_share_of_int8_peak"] == pytest.approx(0.667, abs=1e-3)
    assert result["ceiling_ms"] == pytest.approx(30.0)
    assert result["share"] == {LINEAR: 0.75, ATTENTION: 0.15, PATCH_EMBEDDING: 0.0, REST: 0.1}
    assert "ceiling_ms" not in summary(seconds, macs=10**10, int8_peak_tops=None)


@pytest.mark.parametrize(
    ("node_type", "rank", "group"),
    [
        ("FullyConnected", 3, LINEAR),
        ("FullyConnectedQuantizedLegacy", 3, LINEAR),
        ("Subgraph", 4, ATTENTION),  # MatMul-Softmax-MatMul fused over heads
        ("Subgraph", 3, REST),  # fused elementwise work
        ("Convolution", 4, PATCH_EMBEDDING),
        ("Transpose", 5, REST),
    ],
)
def test_each_layer_counts_to_what_it_does(node_type, rank, group):
    assert layer_group(node_type, rank) == group
