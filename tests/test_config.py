"""conf/ is the one source of values; params.yaml is its composition; bad values fail early."""

from __future__ import annotations

import copy

import pytest
import yaml
from pydantic import BaseModel

from posevit.core.config import PipelineConfig, compose_config, load_params, validate_config, write_params
from posevit.core.errors import ConfigError
from tests.helpers import ROOT

CONF = ROOT / "conf"


def test_params_yaml_is_the_composition_of_conf(tmp_path):
    committed = (ROOT / "params.yaml").read_text(encoding="utf-8")
    regenerated = tmp_path / "params.yaml"
    write_params(output=regenerated, config_dir=CONF)
    assert regenerated.read_text(encoding="utf-8") == committed, "params.yaml is stale: run `make params`"
    assert yaml.safe_load(committed) == compose_config(config_dir=CONF)


@pytest.mark.parametrize(
    "overrides",
    [
        [],
        ["experiment=demo"],
        ["experiment=smoke"],
        ["experiment=seed_repro"],
        ["data=imagefolder"],
        ["data=human_action_recognition"],
        ["trainer=gpu"],
        ["trainer=ddp"],
        ["model=vit_base_patch16_224"],
    ],
)
def test_every_shipped_config_validates(overrides):
    validate_config(compose_config(overrides, config_dir=CONF))


def test_seed_repro_is_the_replaced_systems_recipe():
    cfg = validate_config(compose_config(["experiment=seed_repro"], config_dir=CONF))
    assert cfg.data.name == "Bingsu/Human_Action_Recognition"
    assert (cfg.data.test_size, cfg.data.validation_size, cfg.data.seed) == (0.2, 0.2, 42)
    assert cfg.model.name.startswith("vit_base_patch16_224") and "in21k" in cfg.model.name
    assert cfg.model.pretrained and cfg.model.freeze_blocks == 2
    assert (cfg.train.lr, cfg.train.batch_size, cfg.train.epochs) == (1e-4, 16, 15)


@pytest.mark.parametrize(
    ("key", "value", "expected"),
    [
        ("data.test_size", 1.5, "allowed: 0.0 < value < 1.0"),
        ("data.test_size", 0.0, "greater than 0"),
        ("data.validation_size", 1.0, "less than 1"),
        ("data.validation_size", -0.1, "greater than 0"),
        ("train.epochs", 0, "greater than or equal to 1"),
        ("train.lr", "fast", "valid number"),
        ("model.freeze_blocks", -1, "greater than or equal to 0"),
        ("trainer.precision", "fp8", "'auto'"),
        ("push.bucket", "Bad_Bucket", "should match pattern"),
    ],
)
def test_bad_value_names_key_value_and_allowed_range(key, value, expected):
    raw = copy.deepcopy(compose_config(config_dir=CONF))
    section, name = key.split(".")
    raw[section][name] = value
    with pytest.raises(ConfigError) as error:
        validate_config(raw)
    message = str(error.value)
    assert key in message and repr(value) in message and expected in message


def test_unknown_and_missing_keys_are_reported_together():
    raw = copy.deepcopy(compose_config(config_dir=CONF))
    raw["data"]["tset_size"] = 0.2
    del raw["model"]["name"]
    with pytest.raises(ConfigError) as error:
        validate_config(raw)
    assert "data.tset_size: unknown key" in str(error.value)
    assert "model.name: missing" in str(error.value)


def test_augment_scale_must_be_ordered():
    raw = copy.deepcopy(compose_config(config_dir=CONF))
    raw["train"]["augment"]["scale"] = [0.9, 0.5]
    with pytest.raises(ConfigError, match=r"train\.augment.*low <= high"):
        validate_config(raw)


def test_missing_params_file_says_how_to_make_it(tmp_path):
    with pytest.raises(ConfigError, match="make params"):
        load_params(tmp_path / "params.yaml")


def test_an_empty_quality_bar_must_be_meant():
    raw = copy.deepcopy(compose_config(config_dir=CONF))
    raw["push"]["conditions"] = []
    with pytest.raises(ConfigError, match=r"push: conditions is empty.*push\.always=true"):
        validate_config(raw)
    raw["push"]["always"] = True
    assert validate_config(raw).push.always


def schema_defaults(model: type[BaseModel], prefix: str = "") -> dict[str, object]:
    """{dotted key: default} for every field of the schema that has a default."""
    found: dict[str, object] = {}
    for name, field in model.model_fields.items():
        if isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel):
            found |= schema_defaults(field.annotation, f"{prefix}{name}.")
        elif not field.is_required():
            default = field.get_default(call_default_factory=True)
            found[prefix + name] = default.model_dump(mode="json") if isinstance(default, BaseModel) else default
    return found


def test_the_schema_defaults_agree_with_conf():
    """conf/ is the one source of values: a default in the schema may only repeat what conf/ says."""
    composed = compose_config(config_dir=CONF)
    disagree = {}
    for key, default in schema_defaults(PipelineConfig).items():
        value = composed
        for part in key.split("."):
            value = value[part]
        if isinstance(default, tuple):
            default = list(default)
        if isinstance(default, list):
            default = [d.model_dump(mode="json") if isinstance(d, BaseModel) else d for d in default]
        if value != default:
            disagree[key] = (default, value)
    assert disagree == {}, "schema default vs conf/: " + str(disagree)
