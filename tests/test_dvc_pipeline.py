"""The real `dvc` on a copy of the project: repro is incremental, hashes are deterministic,
and `dvc exp run -S` rewrites params.yaml through the Hydra integration."""

from __future__ import annotations

import json

import pytest

from tests.helpers.dvc_project import preprocessed_smoke_project

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    return preprocessed_smoke_project(tmp_path_factory, tmp_path_factory.mktemp("dvc") / "posevit")


def test_preprocess_writes_splits_metrics_and_contact_sheet(project):
    for split in ("train", "val", "test"):
        assert (project.root / "data/processed" / split / "state.json").exists()
    summary = json.loads((project.root / "metrics/data.json").read_text())
    assert sum(s["total"] for s in summary["splits"].values()) == 12 * 15
    assert all(min(s["per_class"].values()) >= 1 for s in summary["splits"].values())
    assert summary["dropped"]["count"] == 0
    assert (project.root / "plots/demo_samples.png").stat().st_size > 10_000


def test_second_repro_does_nothing_and_forced_rerun_gives_identical_hashes(project):
    again = project.dvc("repro", "preprocess")
    assert "Running stage" not in again.stdout and "didn't change" in again.stdout, again.stdout
    before = project.lock_md5("preprocess", "data/processed")
    project.dvc("repro", "--force", "preprocess")
    assert project.lock_md5("preprocess", "data/processed") == before
    assert "up to date" in project.dvc("status", "preprocess").stdout


def test_exp_run_set_param_recomposes_params_yaml(project):
    project.commit("preprocessed")
    # DVC recomposes conf/ with exactly the -S overrides given (conf/ is the one source).
    project.dvc("exp", "run", "-S", "experiment=smoke", "-S", "data.test_size=0.25", "preprocess")
    assert project.params()["data"]["test_size"] == 0.25
    assert project.params()["data"]["demo"]["images_per_class"] == 12
    summary = json.loads((project.root / "metrics/data.json").read_text())
    assert summary["splits"]["test"]["total"] == 45
    shown = json.loads(project.dvc("exp", "show", "--json").stdout)
    assert "0.25" in json.dumps(shown)


def test_exp_show_leads_with_the_test_scores_and_leaves_the_data_counts_out(project):
    """The collapsed table shows the first metric column only: it must be test accuracy, not a class count."""
    header = project.dvc("exp", "show", "--csv").stdout.splitlines()[0].split(",")
    first_metric = header[header.index("parent") + 1]
    assert first_metric == "accuracy", header[:10]
    assert not [name for name in header if name.startswith(("splits.", "image_size.", "dropped."))], header
    assert "uri" not in header and "best_val_acc" in header and "onnx_int8.accuracy" in header
    assert "per_class" in project.dvc("metrics", "show", "metrics/data.json").stdout  # still there when asked


def test_dvc_plots_show_leaves_git_clean(project):
    project.dvc("plots", "show")
    assert (project.root / "dvc_plots/index.html").is_file()
    assert "dvc_plots" not in project.run("git", "status", "--porcelain", "--untracked-files=all").stdout
