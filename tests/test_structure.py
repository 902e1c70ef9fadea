"""The layout as a contract: imports point one way along the pipeline, serving stays light, every DVC
stage depends on exactly the code it runs, and every declared output path is named once in the library."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from posevit.core import paths
from tests.helpers import ROOT

PACKAGE = ROOT / "src" / "posevit"
# The data's way through the pipeline; a subpackage may import its own rank or lower, never higher.
RANKS = {
    "core": 0,
    "data": 1,
    "models": 2,
    "train": 3,
    "evaluate": 4,
    "export": 5,
    "publish": 6,
    "infer": 7,
    "serve": 8,
    "monitor": 9,
    "sweep": 10,
    "devtools": 11,
    "cli": 12,
}
STAGES = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]


def loaded_modules(statement: str) -> dict[str, str | None]:
    """{module name: source file} after running `statement` in a fresh interpreter in the project root."""
    probe = (
        f"{statement}\nimport json, sys\n"
        "print(json.dumps({n: getattr(m, '__file__', None) for n, m in list(sys.modules.items())}))"
    )
    result = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.splitlines()[-1])


def project_files(modules: dict[str, str | None]) -> set[Path]:
    files = {Path(f).resolve() for f in modules.values() if f and Path(f).is_absolute()}
    return {f.relative_to(ROOT) for f in files if f.is_relative_to(ROOT) and ".venv" not in f.parts}


def rank_of(module: Path) -> int:
    relative = module.relative_to(PACKAGE)
    return (
        RANKS[relative.parts[0].removesuffix(".py")] if len(relative.parts) > 1 or relative.stem != "__init__" else -1
    )


def imported_names(tree: ast.AST) -> set[str]:
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def test_imports_point_one_way_along_the_pipeline():
    wrong = []
    for module in sorted(PACKAGE.rglob("*.py")):
        rank = rank_of(module)
        for name in imported_names(ast.parse(module.read_text())):
            parts = name.split(".")
            if parts[0] != "posevit" or len(parts) < 2:
                continue
            if RANKS[parts[1]] > rank >= 0:
                wrong.append(f"{module.relative_to(ROOT)} imports {name}")
    assert not wrong, "imports against the pipeline's direction:\n" + "\n".join(wrong)


def module_name(path: Path, root: Path = PACKAGE) -> str:
    """posevit.infer.predictor for src/posevit/infer/predictor.py, posevit.infer for its __init__.py."""
    parts = ("posevit", *path.relative_to(root).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(tree: ast.AST, known: set[str]) -> set[str]:
    """The modules of `known` this source imports anywhere, in functions too: `import a.b`, `from a.b import c`
    and `from a import b` (b a module) all count."""
    submodules = {
        f"{node.module}.{alias.name}"
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and node.module
        for alias in node.names
    }
    return (imported_names(tree) | submodules) & known


def import_cycles(sources: dict[str, str]) -> list[list[str]]:
    """Every set of modules of one subpackage that import each other in a ring ({module name: source})."""
    graph = {name: imported_modules(ast.parse(text), set(sources)) - {name} for name, text in sources.items()}

    def package(name: str) -> str:
        return ".".join(name.split(".")[:2])

    for name, targets in graph.items():
        graph[name] = {target for target in targets if package(target) == package(name)}
    # Tarjan's strongly connected components: a component of two or more modules is a cycle.
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    cycles = []

    def visit(name: str) -> None:
        index[name] = low[name] = len(index)
        stack.append(name)
        for target in sorted(graph[name]):
            if target not in index:
                visit(target)
                low[name] = min(low[name], low[target])
            elif target in stack:
                low[name] = min(low[name], index[target])
        if low[name] == index[name]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == name:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for name in sorted(graph):
        if name not in index:
            visit(name)
    return sorted(cycles)


def test_the_cycle_check_sees_lazy_imports_and_every_import_form():
    def cycle(a: str, b: str) -> list[list[str]]:
        return import_cycles({"posevit.pkg.a": a, "posevit.pkg.b": b, "posevit.pkg.c": "import json"})

    assert cycle("from posevit.pkg.b import B", "def f():\n    from posevit.pkg.a import A") == [
        ["posevit.pkg.a", "posevit.pkg.b"]
    ]
    assert cycle("import posevit.pkg.b", "from posevit.pkg import a") == [["posevit.pkg.a", "posevit.pkg.b"]]
    assert cycle("from posevit.pkg.b import B", "import json") == []
    # Across subpackages the ranks decide, not this check.
    assert import_cycles({"posevit.one.a": "import posevit.two.b", "posevit.two.b": "import posevit.one.a"}) == []


def test_no_two_modules_of_a_package_import_each_other_even_lazily():
    """A lazy import inside a function hides a cycle from the interpreter, not from the design: a module
    that a module it imports imports back belongs with it, or the shared part belongs below both."""
    sources = {module_name(path): path.read_text() for path in sorted(PACKAGE.rglob("*.py"))}
    cycles = import_cycles(sources)
    assert not cycles, "modules that import each other:\n" + "\n".join(" <-> ".join(c) for c in cycles)


def test_every_workbook_is_written_through_the_one_workbook_helper():
    """Reproducible bytes and one style live in posevit.evaluate.xlsx; no other module opens xlsxwriter."""
    writers = sorted(
        str(module.relative_to(ROOT))
        for module in PACKAGE.rglob("*.py")
        if any(name.split(".")[0] == "xlsxwriter" for name in imported_names(ast.parse(module.read_text())))
    )
    assert writers == ["src/posevit/evaluate/xlsx.py"], writers


def test_the_top_level_stays_small_and_every_subpackage_says_what_it_owns():
    top = sorted(p.name for p in PACKAGE.glob("*.py"))
    assert len(top) <= 8, top
    for init in PACKAGE.glob("*/__init__.py"):
        assert ast.get_docstring(ast.parse(init.read_text())), f"{init.relative_to(ROOT)} has no docstring"
    assert not list(PACKAGE.rglob("stage.py"))


def test_stages_holds_only_the_dvc_stage_entry_points():
    entry_points = {p.stem for p in (ROOT / "stages").glob("*.py")} - {"__init__"}
    commands = {stage["cmd"].removeprefix("python -m stages.") for stage in STAGES.values()}
    assert entry_points == commands == set(STAGES)


def test_serving_and_predicting_load_without_training_data_or_dvc_libraries():
    modules = loaded_modules(
        "import posevit.serve.app, posevit.serve.page, posevit.infer.model_source, "
        "posevit.infer.predictor, posevit.infer.folders, posevit.serve.examples, posevit.cli"
    )
    heavy = sorted({name.split(".")[0] for name in modules} & {"pytorch_lightning", "lightning", "datasets", "dvc"})
    assert heavy == [], heavy


def test_the_serving_image_path_loads_no_torch():
    """The server's modules, the predictor's ONNX backends among them, import neither torch nor timm:
    the default image installs requirements/serve.txt, which has neither (test_export serves from it)."""
    modules = loaded_modules(
        "import posevit.serve.app, posevit.serve.api, posevit.serve.page, posevit.serve.service, "
        "posevit.infer.predictor, posevit.infer.model_source, posevit.serve.examples"
    )
    heavy = sorted({name.split(".")[0] for name in modules} & {"torch", "torchvision", "timm", "safetensors"})
    assert heavy == [], heavy


def test_the_config_schema_does_not_import_publishing_or_stage_code():
    modules = loaded_modules("import posevit.core.config")
    assert sorted(n for n in modules if n.startswith("posevit.") and not n.startswith("posevit.core")) == []
    assert "boto3" not in modules and "torch" not in modules


@pytest.mark.parametrize("stage", sorted(STAGES))
def test_each_stage_depends_on_all_the_code_it_loads_and_no_other(stage):
    """Import the stage's entry module as DVC's `python -m` would; every project file it loads must be
    covered by a dep of the stage (else edits leave stale outputs), and every code dep must be loaded
    (else edits rerun it for nothing)."""
    deps = [Path(dep) for dep in STAGES[stage]["deps"]]
    code_deps = [dep for dep in deps if dep.parts[0] in ("src", "stages")]
    loaded = {f for f in project_files(loaded_modules(f"import stages.{stage}")) if f.suffix == ".py"}
    uncovered = sorted(str(f) for f in loaded if not any(f == dep or f.is_relative_to(dep) for dep in deps))
    assert not uncovered, f"stage {stage!r} loads files none of its deps cover: {uncovered}"
    unused = sorted(str(dep) for dep in code_deps if not any(f == dep or f.is_relative_to(dep) for f in loaded))
    assert not unused, f"stage {stage!r} depends on code it never loads: {unused}"


def test_every_declared_output_is_a_path_the_library_names():
    named = {value.as_posix() for value in vars(paths).values() if isinstance(value, Path)}
    declared = set()
    for stage in STAGES.values():
        for section in ("outs", "metrics", "plots"):
            for entry in stage.get(section, []):
                declared.add(next(iter(entry)) if isinstance(entry, dict) else entry)
    live = paths.LIVE_DIR.as_posix()
    unnamed = sorted(p for p in declared if p not in named and not p.startswith(live + "/"))
    assert not unnamed, f"dvc.yaml outputs not named in posevit.core.paths: {unnamed}"


def test_a_stage_run_by_an_interpreter_without_posevit_says_how_to_fix_it():
    # -S: no site-packages, so neither the venv's posevit nor anything else is importable.
    result = subprocess.run(
        [sys.executable, "-S", "-m", "stages.train"], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert result.returncode != 0
    assert result.stderr.strip().count("\n") == 0, result.stderr
    assert "make setup" in result.stderr and ".venv/bin/activate" in result.stderr


@pytest.mark.parametrize("stage", ["preprocess", "train"])
def test_a_gpu_config_on_a_machine_without_one_stops_before_any_work(tmp_path, stage):
    from posevit.core.config import write_params

    write_params(["experiment=seed_repro"], output=tmp_path / "params.yaml", config_dir=ROOT / "conf")
    env = {
        "PATH": str(Path(sys.executable).parent),
        "CUDA_VISIBLE_DEVICES": "",
        "HF_HUB_OFFLINE": "1",
        "PYTHONPATH": str(ROOT),
    }
    result = subprocess.run(
        [sys.executable, "-m", f"stages.{stage}"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 2, result.stderr
    errors = [line for line in result.stderr.splitlines() if "ERROR" in line]
    assert len(errors) == 1 and "Traceback" not in result.stderr, result.stderr
    assert "trainer.accelerator=gpu" in errors[0] and "trainer=cpu" in errors[0]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["params.yaml"]  # nothing was written


PICKLERS = {"pickle", "cPickle", "_pickle", "dill", "joblib", "cloudpickle"}


def unpickling_uses(tree: ast.AST) -> list[str]:
    """Every import of a pickling library and every use of torch.load, however it was imported."""
    torch_names, load_names, found = set(), set(), []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] in PICKLERS:
                    found.append(f"import {alias.name}")
                if alias.name in ("torch", "torch.serialization"):
                    torch_names.add(alias.asname or alias.name.split(".")[0])
        elif isinstance(node, ast.ImportFrom) and node.module:
            if node.module.split(".")[0] in PICKLERS:
                found.append(f"from {node.module} import ...")
            for alias in node.names:
                if alias.name.split(".")[0] in PICKLERS:
                    found.append(f"from {node.module} import {alias.name}")
                if node.module in ("torch", "torch.serialization") and alias.name == "load":
                    load_names.add(alias.asname or "load")
                if node.module == "torch" and alias.name == "serialization":
                    torch_names.add(alias.asname or "serialization")
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and node.attr == "load":
            chain = node.value
            while isinstance(chain, ast.Attribute) and chain.attr == "serialization":
                chain = chain.value
            if isinstance(chain, ast.Name) and chain.id in torch_names:
                found.append(f"{ast.unparse(node)} (line {node.lineno})")
        elif isinstance(node, ast.Name) and node.id in load_names:
            found.append(f"{node.id} = torch.load (line {node.lineno})")
    return found


def test_the_unpickle_check_sees_every_way_in():
    for source in (
        "import pickle",
        "from joblib import load",
        "import dill.settings",
        "torch.load(p)",
        "import torch as t\nt.load(p)",
        "from torch import load as read\nread(p)",
        "from torch import serialization\nserialization.load(p)",
        "torch.serialization.load(p)",
    ):
        tree = ast.parse(source if "import torch" in source or "torch." not in source else "import torch\n" + source)
        assert unpickling_uses(tree), source
    assert unpickling_uses(ast.parse("import safetensors.torch\nsafetensors.torch.load_file(p)")) == []


def test_no_module_unpickles_anything():
    """Weights are safetensors and configs JSON everywhere: no pickle, dill, joblib or torch.load in any module."""
    modules = [
        *PACKAGE.rglob("*.py"),
        *(ROOT / "stages").glob("*.py"),
        *(ROOT / "benchmarks").glob("*.py"),
        ROOT / "app.py",
    ]
    found = {str(m.relative_to(ROOT)): uses for m in modules if (uses := unpickling_uses(ast.parse(m.read_text())))}
    assert found == {}
