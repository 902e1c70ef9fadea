"""Typed schema of the pipeline config, and the two ways to get one.

`conf/` is the only place a value is written. `params.yaml` is its composition (what DVC
tracks and what stages read); Hydra sweeps compose `conf/` directly. Either way the
result is validated here, so a bad value fails before any work starts, with a message
that names the key, the value and what is allowed.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal, NamedTuple

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_core import ErrorDetails

from posevit.core.errors import ConfigError
from posevit.core.evaluation_record import TEST_METRIC_KEYS
from posevit.core.paths import CONFIG_DIR, PARAMS_FILE
from posevit.core.settings import allowed_range

CONFIG_NAME = "config"

Fraction = Annotated[float, Field(gt=0.0, lt=1.0)]
# What serves a model: PyTorch, or ONNX Runtime or OpenVINO on an export of the export stage.
Backend = Literal["torch", "onnx", "onnx-int8", "openvino", "openvino-int8"]
Precision = Literal["auto", "bf16", "fp32"]  # what the torch backend computes in; auto: bf16 where native
TrainingPrecision = Literal["bf16-mixed", "16-mixed", "32-true", "bf16-true", "64-true"]  # Lightning's names
PositiveInt = Annotated[int, Field(ge=1)]
Probability = Annotated[float, Field(ge=0.0, le=1.0)]
# timm's auto-augment policies: rand-m9-mstd0.5-inc1, augmix-m5-w4-d2, trivialaugment, original, v0, 3a, ...
AUTO_AUGMENT = r"^(rand|augmix|trivialaugment|original|originalr|v0|v0r|3a)(-[a-z]+[0-9.]*)*$"


def _batch_limit(value: int | float) -> int | float:
    """Lightning's limit_*_batches: a fraction of the batches (float, 0 < f <= 1) or a number of them (int >= 1)."""
    fraction_ok = isinstance(value, float) and 0.0 < value <= 1.0
    if not (fraction_ok or (isinstance(value, int) and value >= 1)):
        raise ValueError("must be a fraction of the batches (0 < f <= 1.0) or a whole number of batches (>= 1)")
    return value


BatchLimit = Annotated[int | float, AfterValidator(_batch_limit)]


class Schema(BaseModel):
    # Unknown keys are typos until proven otherwise. The docstring under each field is its description
    # (the configuration reference in docs/ is generated from them); an explicit Field(description=...) wins.
    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True)


class DemoDataConfig(Schema):
    images_per_class: Annotated[int, Field(ge=3, le=100_000)] = 400
    """Demo dataset size per class."""
    image_size: Annotated[int, Field(ge=32, le=1024)] = 96
    """Demo image side in pixels."""
    seed: int = 0
    """Demo generator seed (same seed, byte-identical images)."""


class DataConfig(Schema):
    name: Annotated[str, Field(min_length=1)]
    """`demo`, a hub dataset id, or a local directory (hub-format copy, image folder, `save_to_disk`)."""
    revision: str | None = None
    """Hub revision (tag or commit) to pin a hub dataset."""
    image_column: str = "image"
    """Column holding the images."""
    label_column: str = "labels"
    """Column holding the class (ClassLabel or strings); `label` for image folders."""
    test_size: Fraction = 0.2
    """Share of train re-sampled as test (when the source has no usable test split)."""
    validation_size: Fraction = 0.2
    """Share of the remaining train used for validation."""
    seed: int = 42
    """Seed of both stratified splits."""
    max_image_pixels: Annotated[int, Field(ge=1)] = 40_000_000
    """Larger images are dropped and listed (decompression-bomb guard)."""
    num_proc: PositiveInt = 2
    """Processes decoding images."""
    demo: DemoDataConfig = DemoDataConfig()
    """The procedural demo dataset (`data.name=demo`)."""


class ModelConfig(Schema):
    name: Annotated[str, Field(min_length=1)]
    """timm model name (any timm ViT; `vit_convstem_tiny` is registered by posevit)."""
    pretrained: bool = False
    """Load pretrained weights from the hub."""
    weights: str | None = None
    """Load pretrained weights from a local safetensors file instead (offline clusters)."""
    freeze_blocks: Annotated[int, Field(ge=0)] = 0
    """Freeze the patch and position embedding, the class token and the first N blocks (0 trains everything)."""
    drop_path_rate: Annotated[float, Field(ge=0.0, lt=1.0)] = 0.0
    """Stochastic depth rate."""
    img_size: Annotated[int, Field(ge=16, le=2048)] | None = None
    """Square input side in pixels, when not the pretrained config's (e.g. 224 for DINOv2, trained at 518): timm
    resamples the position embedding once at load, and the data config follows."""


class AugmentConfig(Schema):
    scale: tuple[Annotated[float, Field(gt=0.0, le=1.0)], Annotated[float, Field(gt=0.0, le=1.0)]] = (0.7, 1.0)
    """Random-resized-crop area range [low, high]."""
    hflip: Annotated[float, Field(ge=0.0, le=1.0)] = 0.5
    """Horizontal flip probability."""
    color_jitter: Annotated[float, Field(ge=0.0, le=1.0)] = 0.0
    """Colour jitter strength."""
    auto_augment: Annotated[str, Field(pattern=AUTO_AUGMENT)] | None = None
    """timm policy, e.g. `rand-m9-mstd0.5-inc1` (RandAugment), `trivialaugment`, `augmix-m5-w4-d2`."""
    re_prob: Probability = 0.0
    """Random erasing probability."""

    @model_validator(mode="after")
    def _scale_ordered(self) -> AugmentConfig:
        if self.scale[0] > self.scale[1]:
            raise ValueError(f"scale must be [low, high] with low <= high, got {list(self.scale)}")
        return self


class DistillConfig(Schema):
    """Knowledge distillation (Hinton et al. 2015): the student also learns the teacher's softened outputs."""

    teacher: Annotated[str, Field(min_length=1)]
    """The teacher: a bundle folder, or a registry model (registry:VERSION or :ALIAS, s3://BUCKET/PREFIX/NAME@VERSION,
    dvc:REV); its labels must be the data's, in order."""
    alpha: Probability = 0.5
    """Weight of the soft-target loss: (1 - alpha) x label loss + alpha x KD loss; 0 = the labels alone (no teacher
    is loaded: a sweep's arm without distillation)."""
    temperature: Annotated[float, Field(gt=0.0, le=100.0)] = 2.0
    """Softmax temperature T of both sides: KL(softmax(teacher / T) || softmax(student / T)) x T^2."""

    @property
    def fetched(self) -> bool:
        """Whether `teacher` names a registry model or a DVC revision (fetched by the entry point), not a folder."""
        return self.teacher.startswith(("s3://", "dvc:", "registry:")) or self.teacher == "registry"


class TrainConfig(Schema):
    seed: int = 0
    """Training seed."""
    epochs: PositiveInt = 16
    """Epochs."""
    batch_size: PositiveInt = 32
    """Batch size per device."""
    lr: Annotated[float, Field(gt=0.0, lt=1.0)] = 5e-4
    """AdamW peak learning rate."""
    weight_decay: Annotated[float, Field(ge=0.0, lt=1.0)] = 0.05
    """AdamW weight decay."""
    warmup_epochs: Annotated[int, Field(ge=0)] = 1
    """Linear warm-up epochs before the cosine decay."""
    label_smoothing: Annotated[float, Field(ge=0.0, lt=1.0)] = 0.1
    """Cross-entropy label smoothing."""
    num_workers: Annotated[int, Field(ge=0)] | Literal["auto"] = 2
    """Data-loader worker processes per device; `auto` = the cores each device's process may use."""
    augment: AugmentConfig = AugmentConfig()
    """Training augmentation (timm's `create_transform`)."""
    layer_decay: Annotated[float, Field(gt=0.0, le=1.0)] | None = None
    """Layer-wise LR decay: block i learns at lr x decay^(depth - i), embeddings lowest, head at lr."""
    mixup: Annotated[float, Field(ge=0.0)] = 0.0  # Beta(alpha, alpha); 0 = off
    """mixup alpha, Beta(alpha, alpha); 0 = off (the batch size must then be even)."""
    cutmix: Annotated[float, Field(ge=0.0)] = 0.0
    """CutMix alpha; 0 = off (the batch size must then be even)."""
    mixup_prob: Probability = 1.0
    """Share of batches mixed."""
    mixup_switch_prob: Probability = 0.5
    """Share of mixed batches that use CutMix instead of mixup."""
    ema_decay: Annotated[float, Field(gt=0.0, lt=1.0)] | None = None
    """Validate and ship an exponential moving average of the weights (timm's ModelEmaV3)."""
    ema_warmup: bool = True
    """Ramp the EMA decay up from 0 (timm's warm-up)."""
    early_stopping_patience: PositiveInt | None = None
    """Stop after this many epochs without a better `val/acc`."""
    grad_clip: Annotated[float, Field(gt=0.0)] | None = None
    """Clip the gradient norm to this value."""
    accumulate_grad_batches: PositiveInt = 1
    """Optimiser step every N batches."""
    distill: DistillConfig | None = None
    """Distil from a teacher model's soft targets (null: off); see docs/distillation.md."""
    mode: Literal["finetune", "linear_probe"] = "finetune"
    """`finetune` trains the model on augmented images; `linear_probe` computes the frozen backbone's pooled features
    once per split (eval transform, no augmentation) and trains only the classifier head on them."""

    @property
    def mixes(self) -> bool:
        return (self.mixup > 0 or self.cutmix > 0) and self.mixup_prob > 0

    @model_validator(mode="after")
    def _linear_probe_trains_the_head_only(self) -> TrainConfig:
        if self.mode != "linear_probe":
            return self
        # Each of these acts on the backbone or on images, which a probe on cached features never sees again.
        conflicts = [
            f"{name}={value}"
            for name, value, off in (
                ("layer_decay", self.layer_decay, None),
                ("mixup", self.mixup, 0.0),
                ("cutmix", self.cutmix, 0.0),
                ("ema_decay", self.ema_decay, None),
                ("distill", self.distill, None),
            )
            if value != off
        ]
        if conflicts:
            raise ValueError(
                f"mode=linear_probe trains only the head on cached features, so {', '.join(conflicts)} cannot apply: "
                "set train.layer_decay=null train.mixup=0 train.cutmix=0 train.ema_decay=null train.distill=null"
            )
        return self

    @model_validator(mode="after")
    def _even_batches_to_mix(self) -> TrainConfig:
        if self.mixes and self.batch_size % 2:
            raise ValueError(
                f"batch_size={self.batch_size}: mixup/CutMix pair each image with another of its batch, "
                "so train.batch_size must be even"
            )
        return self


class TrainerConfig(Schema):
    accelerator: Literal["auto", "cpu", "gpu", "cuda", "mps", "tpu"] = "cpu"
    """Lightning accelerator."""
    devices: PositiveInt | Literal["auto"] = 1
    """Devices per node."""
    strategy: str = "auto"
    """Lightning strategy (`ddp` in `trainer=ddp`)."""
    num_nodes: PositiveInt = 1
    """Nodes."""
    precision: Literal["auto"] | TrainingPrecision = "auto"
    """`auto` = bf16-mixed where the CPU or GPU has native bf16, else 32-true."""
    compile: bool = False
    """`torch.compile` the model (in place: the bundle's parameter names do not change)."""
    fused_attention: bool | Literal["auto"] = "auto"
    """The fused SDPA attention kernel (`true`) or explicit matmuls (`false`); `auto`: the kernel on GPUs,
    matmuls on CPUs, where the kernel's backward is slow."""
    limit_train_batches: BatchLimit = 1.0
    """A fraction (float) or a number (int) of training batches per epoch: dry-run a recipe."""
    limit_val_batches: BatchLimit = 1.0
    """A fraction (float) or a number (int) of validation batches per epoch."""


class EvaluateConfig(Schema):
    batch_size: PositiveInt = 128
    """Evaluation batch size."""
    confidence_level: Fraction = 0.95
    """Level of the accuracy confidence interval (Wilson)."""
    error_pairs: PositiveInt = 6
    """Error gallery: the most confused (true, predicted) pairs drawn, by count (`plots/errors/`)."""
    errors_per_pair: PositiveInt = 12
    """Error gallery: misclassified images per pair, most confident first."""


class ExportConfig(Schema):
    opset: Annotated[int, Field(ge=17, le=23)] = 18
    """ONNX opset of the export."""
    int8: bool = True
    """Also export int8 models: ONNX dynamically quantized, and (with `openvino`) OpenVINO IR statically quantized."""
    openvino: bool = True
    """Also export OpenVINO IR (fp32, and with `int8` NNCF's static int8)."""
    calibration_size: PositiveInt = 300
    """Images of the train split (never the test split) that NNCF calibrates the static int8 scales on."""
    smooth_quant_alpha: Annotated[float, Field(ge=-1.0, le=1.0)] = 0.15
    """SmoothQuant's alpha for NNCF's MatMuls (0 to 1; negative: off); NNCF's ViT-B/16 reference uses 0.15."""
    openvino_token_split: bool = True
    """Make the IR of a timm ViT run its per-token layers on the tokens filling whole 32-row GEMM blocks and, apart,
    the rest (197 = 192 + 5): same answers, batch 1 faster on few cores; the ONNX files stay the plain model."""
    batch_size: PositiveInt = 64
    """Batch size of the parity check."""
    min_top1_agreement: Annotated[float, Field(ge=0.0, le=1.0)] = 0.995
    """Each fp32 export (ONNX, OpenVINO) must agree with PyTorch's top-1 on at least this share of the test split."""
    max_int8_accuracy_drop: Annotated[float, Field(ge=0.0, le=1.0)] = 0.01
    """Each int8 export may lose at most this much test accuracy against PyTorch fp32."""


class PushCondition(Schema):
    metric: Annotated[str, Field(min_length=1)]
    """A key of `metrics/test.json`."""
    threshold: float
    """The condition holds when the metric is >= this."""

    @field_validator("metric")
    @classmethod
    def _known_metric(cls, metric: str) -> str:
        if metric not in TEST_METRIC_KEYS:
            raise ValueError(f"unknown metric; choose a key of metrics/test.json: {', '.join(TEST_METRIC_KEYS)}")
        return metric


class PushConfig(Schema):
    bucket: Annotated[str, Field(min_length=3, max_length=63, pattern=r"^[a-z0-9][a-z0-9.-]+[a-z0-9]$")]
    """S3 bucket where models are published."""
    prefix: str = "registry"
    """Key prefix in the bucket."""
    model_name: Annotated[str, Field(min_length=1, pattern=r"^[A-Za-z0-9._-]+$")] = "posevit"
    """Model name in the registry."""
    endpoint_url: str | None = None
    """S3 endpoint; null = AWS (or the endpoint your AWS profile names)."""
    region: str = "us-east-1"
    """S3 region."""
    conditions: list[PushCondition]
    """List of {metric, threshold}: all must hold on `metrics/test.json` to publish."""
    always: bool = False  # an empty `conditions` publishes every model only when this says so
    """With an empty `conditions`: publish every model (otherwise an empty list is an error)."""
    from_experiments: bool = False
    """Whether a DVC experiment (`dvc exp run`, the queue) may publish."""
    alias: Annotated[str | None, Field(pattern=r"^[a-z][a-z0-9-]*$")] = None
    """Alias to move to what this push publishes (e.g. staging), gate-checked as `posevit registry promote` is;
    null: none (latest always moves). `latest` itself is not allowed here."""

    @field_validator("alias")
    @classmethod
    def _not_latest(cls, alias: str | None) -> str | None:
        if alias == "latest":
            raise ValueError("latest moves with every push already: name another alias (e.g. staging) or null")
        return alias

    @model_validator(mode="after")
    def _a_bar_or_always(self) -> PushConfig:
        if not self.conditions and not self.always:
            raise ValueError(
                "conditions is empty, so every model would be published: add a condition "
                "(e.g. {metric: accuracy, threshold: 0.85}) or set push.always=true to mean it"
            )
        return self


class InferenceSettings(Schema):
    """What every command that runs a model shares (`posevit serve`, `posevit predict`): which model, on what,
    in what precision, and the limits on what it reads and answers."""

    model: Annotated[
        str,
        Field(
            min_length=1,
            description="auto (the registry's latest, else models/) | s3://BUCKET/PREFIX/NAME@VERSION, :latest or "
            ":ALIAS | registry[:version|:alias] (inside the project) | dvc:<rev> | <bundle folder>",
        ),
    ] = "auto"
    device: Annotated[
        str,
        Field(
            pattern=r"^(cpu|cuda(:\d+)?|mps|gpu(\.\d+)?)$",
            description="cpu, cuda, cuda:N or mps; gpu or gpu.N: an Intel GPU OpenVINO lists (openvino backends)",
        ),
    ] = "cpu"
    backend: Annotated[
        Backend,
        Field(
            description="torch (bf16 where fast); or the export stage's files, no torch: onnx / onnx-int8 (ONNX "
            "Runtime, fp32 / dynamic int8), openvino / openvino-int8 (OpenVINO, fp32 / NNCF's static int8)"
        ),
    ] = "torch"
    precision: Annotated[
        Precision,
        Field(
            description="torch: auto (bf16 where native), bf16, or fp32 (answers exact whatever the batch); "
            "openvino-int8: the same for what stays unquantized; openvino: auto is fp32; onnx backends: auto only"
        ),
    ] = "auto"
    max_pixels: Annotated[
        int, Field(ge=1, description="largest image, read from its header before decoding (decompression bombs)")
    ] = 40_000_000
    top_k: Annotated[int, Field(ge=1, description="labels per image, most probable first (the API's default)")] = 5
    fast_decode: Annotated[
        bool,
        Field(
            description="decode JPEGs at a reduced scale (PIL's draft mode, never below the model's resize) and "
            "resize in two steps (a box reduce, then the model's filter): cheaper, a little different from the exact "
            "transform (docs/serving.md has the measured cost and agreement)",
            json_schema_extra={"switch": True},
        ),
    ] = False


class ServeConfig(InferenceSettings):
    """`posevit serve`: where it listens, which model, how it batches, what it accepts."""

    section: ClassVar[str] = "serve"

    host: Annotated[str, Field(min_length=1, description="interface to bind (0.0.0.0 exposes it)")] = "127.0.0.1"
    port: Annotated[int, Field(ge=1, le=65535, description="TCP port")] = 7860
    follow: Annotated[
        float | None,
        Field(
            gt=0,
            description="seconds between polls of the model's alias (a model named NAME:ALIAS); a new version is "
            "fetched, verified, loaded and warmed in the background, then swapped in between batches (null: off)",
        ),
    ] = None
    max_batch_size: Annotated[int, Field(ge=1, le=1024, description="most images per forward pass")] = 16
    batch_limit: Annotated[
        Annotated[int, Field(ge=1, le=1024)] | Literal["auto"],
        Field(
            description="most images the batcher gathers for one forward pass: auto (timed at warm-up at batch "
            "1, 2, 4, ... up to max_batch_size; batches only where the time per image pays), or a number "
            "(at most max_batch_size)"
        ),
    ] = "auto"
    streams: Annotated[
        Annotated[int, Field(ge=1, le=64)] | Literal["auto"],
        Field(
            description="forward passes computing at once, the cores split between them (backends openvino, "
            "openvino-int8): auto (each of 1, 2, 4, ... up to the cores timed at warm-up under full load; more "
            "only where they pay in images per second), or a number; the other backends run 1"
        ),
    ] = "auto"
    max_wait_ms: Annotated[float, Field(ge=0, le=1000, description="longest wait for a batch to fill")] = 5.0
    max_queue: Annotated[int, Field(ge=1, description="images waiting before requests get 503")] = 64
    timeout_s: Annotated[float, Field(gt=0, description="a request waiting longer gets 504")] = 30.0
    max_file_mb: Annotated[float, Field(gt=0, description="largest upload, per file (bigger bodies get 413)")] = 20.0
    max_files: Annotated[int, Field(ge=1, le=256, description="most files in one /v1/predict/batch request")] = 16
    api_keys_file: Annotated[
        str | None, Field(description="file of API keys, one per line (with keys, the API and the page need one)")
    ] = None
    metrics_require_key: Annotated[bool, Field(description="whether /metrics needs an API key too")] = False
    prediction_log: Annotated[
        str | None,
        Field(
            min_length=1,
            description="log every prediction as Parquet to this folder or s3://BUCKET/PREFIX (off when null)",
        ),
    ] = None
    prediction_log_max_records: Annotated[
        int, Field(ge=1, description="records per file of the prediction log; a full file is closed, a new one begun")
    ] = 10_000
    prediction_log_max_age_s: Annotated[
        float, Field(gt=0, description="a file of the prediction log open this long is closed, even if not full")
    ] = 600.0
    prediction_log_queue: Annotated[
        int, Field(ge=1, description="records waiting for the log writer; past this, records are dropped and counted")
    ] = 10_000
    log_images: Annotated[
        Literal["none", "low_confidence"],
        Field(description="none, or low_confidence: keep the images answered below serve.low_confidence, by label"),
    ] = "none"
    log_client_address: Annotated[
        bool, Field(description="whether prediction log records name the client's address")
    ] = False
    low_confidence: Annotated[
        float, Field(gt=0, lt=1, description="top probability under which an answer counts as of low confidence")
    ] = 0.5

    @model_validator(mode="after")
    def _batch_limit_within_the_largest_batch(self) -> ServeConfig:
        if self.batch_limit != "auto" and self.batch_limit > self.max_batch_size:
            raise ValueError(
                f"batch_limit = {self.batch_limit} is above max_batch_size = {self.max_batch_size}: lower "
                "serve.batch_limit, raise serve.max_batch_size, or set batch_limit to auto"
            )
        if self.streams not in ("auto", 1) and not self.backend.startswith("openvino"):
            raise ValueError(
                f"streams = {self.streams} with backend {self.backend}, which runs one forward pass at a time (it "
                "uses every core): use backend openvino or openvino-int8, or set streams to auto or 1"
            )
        return self

    @model_validator(mode="after")
    def _images_need_the_log(self) -> ServeConfig:
        if self.log_images != "none" and self.prediction_log is None:
            raise ValueError("log_images keeps images beside the prediction log: set serve.prediction_log too")
        return self


class Shard(NamedTuple):
    """Shard `number` of `total` (from 0): the inputs whose path hashes to `number` modulo `total`."""

    number: int
    total: int

    def __str__(self) -> str:
        return f"{self.number}/{self.total}"


def _parse_shard(value: object) -> object:
    if not isinstance(value, str):
        return value
    index, slash, count = value.partition("/")
    if not (slash and index.isdigit() and count.isdigit() and int(index) < int(count)):
        raise ValueError("must be I/N with 0 <= I < N (shard I of N, counted from 0), e.g. 0/4")
    return Shard(int(index), int(count))


class PredictConfig(InferenceSettings):
    """`posevit predict`: how many images per forward pass, how many decode at once, where the rows go,
    and which part of the inputs this process takes."""

    section: ClassVar[str] = "predict"

    batch_size: Annotated[int, Field(ge=1, description="images per forward pass")] = 32
    workers: Annotated[
        Annotated[int, Field(ge=0)] | Literal["auto"],
        Field(
            description="decoding threads: auto (one a core, at most 8; more hide S3's latency), or 0 (decode "
            "between forward passes)"
        ),
    ] = "auto"
    output: Annotated[
        Path | None, Field(description="FILE.csv, FILE.jsonl or FILE.parquet (default: CSV on stdout)")
    ] = None
    shard: Annotated[
        Annotated[Shard, BeforeValidator(_parse_shard)] | None,
        Field(
            description="I/N: only the inputs whose path hashes to I modulo N, for array jobs "
            "(e.g. $SLURM_ARRAY_TASK_ID/$SLURM_ARRAY_TASK_COUNT)"
        ),
    ] = None
    resume: Annotated[
        bool,
        Field(
            description="skip the inputs already in --output (or its .partial) and append the rest",
            json_schema_extra={"switch": True},
        ),
    ] = False


class MonitorConfig(Schema):
    """`posevit monitor`: what the prediction log is compared with, and how far it may move before it alerts.

    A change alerts when it is both significant (a p value under min_p_value) and large (over its own bar), so
    a big log does not alert on differences too small to matter, nor a small one on noise."""

    section: ClassVar[str] = "monitor"

    reference: Annotated[
        str | None,
        Field(
            min_length=1,
            description="the version's own test split predictions: a model URI (s3://BUCKET/PREFIX/NAME@VERSION, "
            ":latest, registry[:version]) whose metrics/predictions.csv is fetched, or a predictions.csv file",
        ),
    ] = None
    version: Annotated[
        str | None, Field(description="the logged version to judge (default: the reference's, or the log's only one)")
    ] = None
    report_dir: Annotated[Path, Field(description="folder for the report (report.md) and its plot (drift.png)")] = Path(
        "reports/monitor"
    )
    low_confidence: Annotated[
        float, Field(gt=0, lt=1, description="top probability under which an answer counts as of low confidence")
    ] = 0.5
    max_psi: Annotated[
        float, Field(gt=0, description="alert when the class distribution's population stability index passes this")
    ] = 0.25
    min_p_value: Annotated[
        float,
        Field(gt=0, lt=1, description="alert when a chi square or Kolmogorov Smirnov p value falls under this"),
    ] = 0.001
    max_ks_statistic: Annotated[
        float,
        Field(gt=0, le=1, description="alert when the confidences' Kolmogorov Smirnov statistic passes this"),
    ] = 0.1
    max_low_confidence_increase: Annotated[
        float, Field(gt=0, le=1, description="alert when the share of low confidence answers rises by more than this")
    ] = 0.10
    min_records: Annotated[
        int, Field(ge=1, description="a day with fewer records is reported but not judged (too few to tell)")
    ] = 100


class PipelineConfig(Schema):
    data: DataConfig
    """Where the images come from and how they are split (`preprocess`)."""
    model: ModelConfig
    """The network (`train`)."""
    train: TrainConfig
    """The training recipe (`train`)."""
    trainer: TrainerConfig
    """Lightning's trainer: hardware, precision, scale-out (`train`)."""
    evaluate: EvaluateConfig
    """The test-split evaluation (`evaluate`)."""
    export: ExportConfig
    """ONNX export and its parity check (`export`)."""
    push: PushConfig
    """Publishing to the S3 model registry (`push`)."""
    serve: ServeConfig
    """`posevit serve` settings."""


def _allowed_range(loc: tuple[Any, ...]) -> str:
    """'0 < value < 1' from the schema's bounds on the field at `loc`, or ''."""
    model: Any = PipelineConfig
    field = None
    for part in loc:
        fields = getattr(model, "model_fields", None)
        if fields is None or part not in fields:
            break
        field = fields[part]
        model = field.annotation
    return allowed_range(field)


def _field_path(loc: tuple[Any, ...]) -> tuple[Any, ...]:
    """`loc` without the tags pydantic adds for union members (`constrained-int`, `literal['auto']`)."""
    return tuple(part for part in loc if isinstance(part, int) or str(part).isidentifier())


def _describe(errors: list[ErrorDetails]) -> str:
    """One line for the errors of one key (several when a value fits no member of a union)."""
    error = errors[0]
    key = ".".join(str(part) for part in _field_path(error["loc"])) or "<root>"
    if error["type"] == "extra_forbidden":
        return f"{key}: unknown key (misspelt? see the configuration reference, docs/configuration.md)"
    if error["type"] == "missing":
        return f"{key}: missing (set it in conf/ or override it with {key}=...)"
    problem = "; or ".join(e["msg"].removeprefix("Value error, ") for e in errors)
    if isinstance(error["input"], dict):  # a rule across keys of one group: the group's dump would only blur it
        return f"{key}: {problem}"
    allowed = _allowed_range(_field_path(error["loc"]))
    allowed = f" (allowed: {allowed})" if allowed else ""
    return f"{key} = {error['input']!r} is invalid: {problem}{allowed}. Override it with {key}=<value>."


def _describe_all(errors: list[ErrorDetails]) -> list[str]:
    """One line per bad key, in the order pydantic reports them."""
    by_key: dict[tuple[Any, ...], list[ErrorDetails]] = {}
    for error in errors:
        by_key.setdefault(_field_path(error["loc"]), []).append(error)
    return [_describe(group) for group in by_key.values()]


def validate_config(raw: object) -> PipelineConfig:
    """Validate a plain config mapping, raising ConfigError listing every bad key."""
    try:
        return PipelineConfig.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError("invalid config:\n  " + "\n  ".join(_describe_all(exc.errors()))) from None


def compose_config(overrides: list[str] | tuple[str, ...] = (), config_dir: Path = CONFIG_DIR) -> dict[str, Any]:
    """Compose `conf/` with Hydra overrides into a plain resolved mapping (no validation)."""
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    with initialize_config_dir(str(config_dir.resolve()), version_base=None):
        cfg = compose(config_name=CONFIG_NAME, overrides=list(overrides))
    return OmegaConf.to_container(cfg, resolve=True)  # type: ignore[return-value]  # a DictConfig gives a dict


def write_params(
    overrides: list[str] | tuple[str, ...] = (), output: Path = PARAMS_FILE, config_dir: Path = CONFIG_DIR
) -> None:
    """Write params.yaml exactly as `dvc exp run -S` would (DVC's own Hydra composition)."""
    from dvc.utils.hydra import compose_and_dump

    compose_and_dump(output, str(config_dir.resolve()), None, CONFIG_NAME, str(Path.cwd()), list(overrides))


def load_params(path: Path = PARAMS_FILE) -> PipelineConfig:
    """Read and validate params.yaml, the config every DVC stage runs with."""
    if not path.exists():
        raise ConfigError(f"{path} not found: run `make params` (composes conf/) from the project root")
    raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    return validate_config(raw)


def params_command(overrides: list[str]) -> int:
    """`posevit params [override ...]`: regenerate params.yaml from conf/ and validate it."""
    from posevit.core.entrypoint import fail

    if overrides[:1] in (["-h"], ["--help"]):  # not a Hydra override: answer it rather than fail to parse it
        print(
            "usage: posevit params [override ...]\n\ncompose conf/ (+ Hydra overrides, e.g. experiment=seed_repro) "
            f"into {PARAMS_FILE} and validate it"
        )
        return 0
    try:
        write_params(overrides)
        load_params()
    except ConfigError as exc:
        fail(str(exc))
    print(f"wrote {PARAMS_FILE} from {CONFIG_DIR}/ {' '.join(overrides)}".rstrip())
    return 0


if __name__ == "__main__":  # `python -m posevit.core.config [override ...]`, as `make params` runs it
    sys.exit(params_command(sys.argv[1:]))
