"""One settings schema for `posevit serve` and `posevit predict`: flags, POSEVIT_ variables and help from the
same typed fields; shared ones named once; params.yaml's serve: section only where it is; one way to fail."""

from __future__ import annotations

import shutil

import pytest
import yaml

from posevit.core.config import InferenceSettings, PredictConfig, ServeConfig, Shard, params_command
from posevit.core.errors import ConfigError
from posevit.core.settings import env_name, flag, load_settings
from posevit.infer.command import main as predict_main
from posevit.serve.app import main as serve_main
from posevit.serve.settings import load_settings as load_serve_settings
from tests.helpers import ROOT

COMMANDS = {"serve": (serve_main, ServeConfig), "predict": (predict_main, PredictConfig)}


def test_the_shared_settings_are_one_field_each_in_both_commands():
    shared = set(InferenceSettings.model_fields)
    for schema in (ServeConfig, PredictConfig):
        assert not shared & set(vars(schema).get("__annotations__", {})), schema.__name__  # inherited, not redeclared
        for name, field in InferenceSettings.model_fields.items():
            assert repr(schema.model_fields[name]) == repr(field), name
    assert {"max_pixels", "device", "backend", "precision", "top_k", "model"} <= set(InferenceSettings.model_fields)
    for schema in (ServeConfig, PredictConfig):
        undescribed = [name for name, field in schema.model_fields.items() if not field.description]
        assert undescribed == [], schema.__name__


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_every_field_is_a_flag_with_its_description_and_variable_in_help(command, capsys):
    main, schema = COMMANDS[command]
    with pytest.raises(SystemExit) as done:
        main(["--help"])
    assert done.value.code == 0
    text = " ".join(capsys.readouterr().out.split())  # argparse wraps lines
    for name, field in schema.model_fields.items():
        assert flag(name) in text and env_name(name) in text, name
        assert " ".join(str(field.description).split()) in text, name


def test_flags_win_over_the_environment_which_wins_over_defaults(tmp_path):
    environ = {"POSEVIT_TOP_K": "2", "POSEVIT_BATCH_SIZE": "8", "POSEVIT_SHARD": "1/4", "POSEVIT_RESUME": "1"}
    settings = load_settings(PredictConfig, "predict", {"top_k": "3", "workers": "0"}, environ=environ)
    assert (settings.top_k, settings.batch_size, settings.workers) == (3, 8, 0)
    assert settings.shard == Shard(1, 4) and settings.resume is True and settings.model == "auto"
    assert load_settings(PredictConfig, "predict", {}, environ={}).workers == "auto"


def test_serve_reads_params_serve_section_only_where_it_is_and_nothing_else_of_it(tmp_path):
    params = tmp_path / "params.yaml"
    assert load_serve_settings({}, params, environ={}) == ServeConfig()  # no params.yaml: the schema's defaults
    params.write_text(yaml.safe_dump({"serve": {"port": 9000, "top_k": 3}, "data": {"name": None, "bogus": 1}}))
    settings = load_serve_settings({"top_k": "4"}, params, environ={"POSEVIT_PORT": "9001"})
    assert (settings.port, settings.top_k) == (9001, 4)  # the rest of the pipeline config is never validated
    assert load_serve_settings({}, params, environ={}).port == 9000


def test_a_bad_value_is_one_line_naming_the_key_its_source_and_the_range():
    with pytest.raises(ConfigError) as error:
        load_serve_settings({"max_batch_size": "0"}, environ={"POSEVIT_PORT": "99999"})
    message = str(error.value)
    assert "\n" not in message
    assert "serve.max_batch_size = '0' is invalid" in message and "from --max-batch-size" in message
    assert "serve.port = '99999' is invalid" in message and "1 <= value <= 65535" in message
    assert "from POSEVIT_PORT" in message
    with pytest.raises(ConfigError, match=r"predict.shard = '4/4' is invalid: must be I/N with 0 <= I < N"):
        load_settings(PredictConfig, "predict", {"shard": "4/4"}, environ={})


@pytest.mark.parametrize(
    ("command", "argv", "message"),
    [
        ("serve", ["--port", "0"], "error: invalid serve settings: serve.port = '0' is invalid"),
        ("serve", ["--no-such-flag"], "error: posevit serve: unrecognized arguments: --no-such-flag"),
        ("predict", ["x.jpg", "--workers", "many"], "error: invalid predict settings: predict.workers = 'many'"),
        ("predict", [], "error: posevit predict: the following arguments are required: PATH"),
        ("predict", ["x.jpg", "--resume"], "error: --resume continues an output file: add --output"),
        ("predict", ["x.jpg", "-o", "rows.txt"], "error: --output rows.txt: the name must end in one of"),
    ],
)
def test_every_command_reports_a_user_error_in_one_line_and_exits_2(command, argv, message, capsys, tmp_path):
    main, _ = COMMANDS[command]
    with pytest.raises(SystemExit) as done:
        main(argv)
    assert done.value.code == 2
    stderr = capsys.readouterr().err
    assert stderr.startswith(message) and stderr.count("\n") == 1, stderr


def test_params_reports_a_bad_override_the_same_way(tmp_path, monkeypatch, capsys):
    shutil.copytree(ROOT / "conf", tmp_path / "conf")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as done:
        params_command(["train.epochs=0"])
    assert done.value.code == 2
    stderr = capsys.readouterr().err
    assert stderr.startswith("error: invalid config: train.epochs = 0 is invalid") and stderr.count("\n") == 1
