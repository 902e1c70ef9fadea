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
from posevit.core.metrics import TEST_METRIC_KEYS
from posevit.core.paths import CONFIG_DIR, PARAMS_FILE

CONFIG_NAME = "config"

Fraction = Annotated[float, Field(gt=0.0, lt=1.0)]
Backend = Literal["torch", "onnx", "onnx-int8"]  # what serves a model: PyTorch, or ONNX Runtime on an export
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
    # Unknown keys are typos until proven otherwise.
    model_config = ConfigDict(extra="forbid", frozen=True)


class DemoDataConfig(Schema):
    images_per_class: Annotated[int, Field(ge=3, le=100_000)] = 400
    image_size: Annotated[int, Field(ge=32, le=1024)] = 96
    seed: int = 0


class DataConfig(Schema):
    name: Annotated[str, Field(min_length=1)]
    revision: str | None = None
    image_column: str = "image"
    label_column: str = "labels"
    test_size: Fraction = 0.2
    validation_size: Fraction = 0.2
    seed: int = 42
    max_image_pixels: Annotated[int, Field(ge=1)] = 40_000_000
    num_proc: PositiveInt = 2
    demo: DemoDataConfig = DemoDataConfig()


class ModelConfig(Schema):
    name: Annotated[str, Field(min_length=1)]
    pretrained: bool = False
    weights: str | None = None
    freeze_blocks: Annotated[int, Field(ge=0)] = 0
    drop_path_rate: Annotated[float, Field(ge=0.0, lt=1.0)] = 0.0


class AugmentConfig(Schema):
    scale: tuple[Annotated[float, Field(gt=0.0, le=1.0)], Annotated[float, Field(gt=0.0, le=1.0)]] = (0.7, 1.0)
    hflip: Annotated[float, Field(ge=0.0, le=1.0)] = 0.5
    color_jitter: Annotated[float, Field(ge=0.0, le=1.0)] = 0.0
    auto_augment: Annotated[str, Field(pattern=AUTO_AUGMENT)] | None = None
    re_prob: Probability = 0.0  # random erasing

    @model_validator(mode="after")
    def _scale_ordered(self) -> AugmentConfig:
        if self.scale[0] > self.scale[1]:
            raise ValueError(f"scale must be [low, high] with low <= high, got {list(self.scale)}")
        return self


class TrainConfig(Schema):
    seed: int = 0
    epochs: PositiveInt = 16
    batch_size: PositiveInt = 32
    lr: Annotated[float, Field(gt=0.0, lt=1.0)] = 5e-4
    weight_decay: Annotated[float, Field(ge=0.0, lt=1.0)] = 0.05
    warmup_epochs: Annotated[int, Field(ge=0)] = 1
    label_smoothing: Annotated[float, Field(ge=0.0, lt=1.0)] = 0.1
    num_workers: Annotated[int, Field(ge=0)] | Literal["auto"] = 2
    augment: AugmentConfig = AugmentConfig()
    layer_decay: Annotated[float, Field(gt=0.0, le=1.0)] | None = None
    mixup: Annotated[float, Field(ge=0.0)] = 0.0  # Beta(alpha, alpha); 0 = off
    cutmix: Annotated[float, Field(ge=0.0)] = 0.0
    mixup_prob: Probability = 1.0
    mixup_switch_prob: Probability = 0.5
    ema_decay: Annotated[float, Field(gt=0.0, lt=1.0)] | None = None
    ema_warmup: bool = True
    early_stopping_patience: PositiveInt | None = None
    grad_clip: Annotated[float, Field(gt=0.0)] | None = None
    accumulate_grad_batches: PositiveInt = 1

    @property
    def mixes(self) -> bool:
        return (self.mixup > 0 or self.cutmix > 0) and self.mixup_prob > 0

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
    devices: PositiveInt | Literal["auto"] = 1
    strategy: str = "auto"
    num_nodes: PositiveInt = 1
    precision: Literal["auto"] | TrainingPrecision = "auto"
    compile: bool = False
    fused_attention: bool | Literal["auto"] = "auto"
    limit_train_batches: BatchLimit = 1.0
    limit_val_batches: BatchLimit = 1.0


class EvaluateConfig(Schema):
    batch_size: PositiveInt = 128
    confidence_level: Fraction = 0.95


class ExportConfig(Schema):
    opset: Annotated[int, Field(ge=17, le=23)] = 18
    int8: bool = True
    batch_size: PositiveInt = 64
    min_top1_agreement: Annotated[float, Field(ge=0.0, le=1.0)] = 0.995
    max_int8_accuracy_drop: Annotated[float, Field(ge=0.0, le=1.0)] = 0.01


class PushCondition(Schema):
    metric: Annotated[str, Field(min_length=1)]
    threshold: float

    @field_validator("metric")
    @classmethod
    def _known_metric(cls, metric: str) -> str:
        if metric not in TEST_METRIC_KEYS:
            raise ValueError(f"unknown metric; choose a key of metrics/test.json: {', '.join(TEST_METRIC_KEYS)}")
        return metric


class PushConfig(Schema):
    bucket: Annotated[str, Field(min_length=3, max_length=63, pattern=r"^[a-z0-9][a-z0-9.-]+[a-z0-9]$")]
    prefix: str = "registry"
    model_name: Annotated[str, Field(min_length=1, pattern=r"^[A-Za-z0-9._-]+$")] = "posevit"
    endpoint_url: str | None = None
    region: str = "us-east-1"
    conditions: list[PushCondition]
    always: bool = False  # an empty `conditions` publishes every model only when this says so
    from_experiments: bool = False

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
            description="auto (the registry's latest, else models/) | registry[:version] | dvc:<rev> | <bundle folder>",
        ),
    ] = "auto"
    device: Annotated[str, Field(pattern=r"^(cpu|cuda(:\d+)?|mps)$", description="cpu, cuda, cuda:N or mps")] = "cpu"
    backend: Annotated[
        Backend, Field(description="torch (bf16 where fast), or onnx / onnx-int8 (the export stage's files, no torch)")
    ] = "torch"
    precision: Annotated[
        Precision,
        Field(description="backend torch: auto (bf16 where native), bf16, or fp32 (answers exact whatever the batch)"),
    ] = "auto"
    max_pixels: Annotated[
        int, Field(ge=1, description="largest image, read from its header before decoding (decompression bombs)")
    ] = 40_000_000
    top_k: Annotated[int, Field(ge=1, description="labels per image, most probable first (the API's default)")] = 5


class ServeConfig(InferenceSettings):
    """`posevit serve`: where it listens, which model, how it batches, what it accepts."""

    section: ClassVar[str] = "serve"

    host: Annotated[str, Field(min_length=1, description="interface to bind (0.0.0.0 exposes it)")] = "127.0.0.1"
    port: Annotated[int, Field(ge=1, le=65535, description="TCP port")] = 7860
    max_batch_size: Annotated[int, Field(ge=1, le=1024, description="most images per forward pass")] = 16
    max_wait_ms: Annotated[float, Field(ge=0, le=1000, description="longest wait for a batch to fill")] = 5.0
    max_queue: Annotated[int, Field(ge=1, description="images waiting before requests get 503")] = 64
    timeout_s: Annotated[float, Field(gt=0, description="a request waiting longer gets 504")] = 30.0
    max_file_mb: Annotated[float, Field(gt=0, description="largest upload, per file (bigger bodies get 413)")] = 20.0
    max_files: Annotated[int, Field(ge=1, le=256, description="most files in one /v1/predict/batch request")] = 16
    api_keys_file: Annotated[
        str | None, Field(description="file of API keys, one per line (with keys, the API and the page need one)")
    ] = None
    metrics_require_key: Annotated[bool, Field(description="whether /metrics needs an API key too")] = False


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


class PipelineConfig(Schema):
    data: DataConfig
    model: ModelConfig
    train: TrainConfig
    trainer: TrainerConfig
    evaluate: EvaluateConfig
    export: ExportConfig
    push: PushConfig
    serve: ServeConfig


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
    if field is None:
        return ""
    bounds = {name: getattr(m, name) for m in field.metadata for name in ("gt", "ge", "lt", "le") if hasattr(m, name)}
    low = f"{bounds['gt']} < " if "gt" in bounds else f"{bounds['ge']} <= " if "ge" in bounds else ""
    high = f" < {bounds['lt']}" if "lt" in bounds else f" <= {bounds['le']}" if "le" in bounds else ""
    return f"{low}value{high}" if low or high else ""


def _field_path(loc: tuple[Any, ...]) -> tuple[Any, ...]:
    """`loc` without the tags pydantic adds for union members (`constrained-int`, `literal['auto']`)."""
    return tuple(part for part in loc if isinstance(part, int) or str(part).isidentifier())


def _describe(errors: list[ErrorDetails]) -> str:
    """One line for the errors of one key (several when a value fits no member of a union)."""
    error = errors[0]
    key = ".".join(str(part) for part in _field_path(error["loc"])) or "<root>"
    if error["type"] == "extra_forbidden":
        return f"{key}: unknown key (misspelt? see the config reference in README.md)"
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

    try:
        write_params(overrides)
        load_params()
    except ConfigError as exc:
        fail(str(exc))
    print(f"wrote {PARAMS_FILE} from {CONFIG_DIR}/ {' '.join(overrides)}".rstrip())
    return 0


if __name__ == "__main__":  # `python -m posevit.core.config [override ...]`, as `make params` runs it
    sys.exit(params_command(sys.argv[1:]))
