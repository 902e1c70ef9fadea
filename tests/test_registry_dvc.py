"""DVC's own view of the model: dvc.yaml's `artifacts:` as DVC itself reads it (what `dvc artifacts get`,
DVC Studio's model registry and GTO see)."""

from __future__ import annotations

import yaml
from dvc.repo import Repo

from posevit.core.paths import MODELS_DIR
from tests.helpers import ROOT


def test_dvc_reads_the_model_artifact_and_it_is_the_train_stages_bundle():
    with Repo(str(ROOT)) as repo:
        artifacts = repo.artifacts.read()["dvc.yaml"]
    model = artifacts["posevit"]
    assert (model.type, model.path) == ("model", MODELS_DIR.as_posix())
    assert model.desc and "image-classification" in model.labels
    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    assert MODELS_DIR.as_posix() in stages["train"]["outs"]  # the path is what the pipeline produces
