"""The docs say only what is true: the generated pages are current, and every command they show exists.

The two generated pages (docs/configuration.md from the config schema, docs/benchmarks.md from
benchmarks/results/) are regenerated in memory and compared with the committed files. Every `posevit`,
`python -m` and `make` command in a shell code block of README.md or docs/ is checked: each distinct
`posevit <command>` and `python -m <module>` answers `--help` (all of them in one interpreter, so torch and
friends load once), and each `make <target>` is a target of the Makefile.
"""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys

import pytest

from tests.helpers import ROOT

PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.S | re.M)
INLINE = re.compile(r"`((?:posevit|make|python -m) [^`]+)`")  # a command quoted in the prose

# Runs each command's --help in this one interpreter and reports {command: [exit code, output]} as JSON.
HELP_DRIVER = """
import contextlib, io, json, runpy, sys
results = {}
for command in json.loads(sys.argv[1]):
    words = command.split()
    out = io.StringIO()
    code = 0
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
        try:
            if words[0] == "posevit":
                from posevit.cli import main
                code = main([words[1], "--help"]) or 0
            else:
                sys.argv = [words[2], "--help"]
                runpy.run_module(words[2], run_name="__main__", alter_sys=True)
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        except Exception as exc:
            code, _ = 1, print(f"{type(exc).__name__}: {exc}")
    results[command] = [code, out.getvalue()[:2000]]
print(json.dumps(results))
"""


def shell_commands(text: str) -> list[list[str]]:
    """Each command of the shell code blocks and inline command spans in `text` (continuations joined, split at
    && ; |, comments dropped)."""
    commands = []
    blocks = [body for language, body in FENCE.findall(text) if language in ("", "bash", "sh", "console")]
    for body in [*blocks, *INLINE.findall(FENCE.sub("", text))]:
        for line in body.replace("\\\n", " ").splitlines():
            for part in re.split(r"&&|;|\|\|?", line):
                try:
                    words = shlex.split(part, comments=True)
                except ValueError:  # an unbalanced quote: a diagram or output, not a command
                    continue
                if words:
                    commands.append(words)
    return commands


def documented() -> dict[str, set[str]]:
    """The distinct commands the docs show, by kind: `posevit X`, `python -m M`, and make targets."""
    found: dict[str, set[str]] = {"help": set(), "make": set()}
    for page in PAGES:
        for words in shell_commands(page.read_text(encoding="utf-8")):
            if words[0] == "posevit" and len(words) > 1:
                found["help"].add(f"posevit {words[1]}")
            elif words[:2] == ["python", "-m"] and len(words) > 2 and "<" not in words[2]:
                found["help"].add(f"python -m {words[2]}")
            elif words[0] == "make":
                found["make"].update(word for word in words[1:] if "=" not in word and not word.startswith("-"))
    return found


def test_the_docs_show_commands_of_each_kind():
    """The extraction itself works: the README's two commands and the serving lines are found."""
    found = documented()
    assert {"demo", "test", "serve"} <= found["make"]
    assert {"posevit serve", "posevit predict", "python -m posevit.sweep.report"} <= found["help"]
    block = (
        "```bash\nmake serve SERVE_ARGS='--model x' && source .s3/env  # a comment\nposevit predict a \\\n -o b\n```"
    )
    assert shell_commands(block) == [
        ["make", "serve", "SERVE_ARGS=--model x"],
        ["source", ".s3/env"],
        ["posevit", "predict", "a", "-o", "b"],
    ]


def test_every_make_target_the_docs_show_exists():
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    targets = set(re.findall(r"^([A-Za-z0-9_.-]+)\s*:(?!=)", makefile, re.M))
    missing = sorted(documented()["make"] - targets)
    assert not missing, f"the docs show make targets the Makefile lacks: {missing}"


def test_every_posevit_and_python_m_command_the_docs_show_answers_help():
    commands = sorted(documented()["help"])
    done = subprocess.run(
        [sys.executable, "-c", HELP_DRIVER, json.dumps(commands)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    results = json.loads(done.stdout.strip().splitlines()[-1])
    failed = {command: output for command, (code, output) in results.items() if code != 0}
    assert not failed, f"these documented commands do not answer --help: {failed}"
    silent = [command for command, (_, output) in results.items() if not re.search(r"usage|help|Hydra", output, re.I)]
    assert not silent, f"these ran without printing any help (did they do work instead?): {silent}"


def test_the_configuration_reference_is_generated_from_the_schema():
    from posevit.devtools.config_reference import PAGE, render

    assert (ROOT / PAGE).read_text(encoding="utf-8") == render(), (
        "docs/configuration.md is stale: run `python -m posevit.devtools.config_reference`"
    )


def test_the_benchmarks_page_is_rendered_from_the_results():
    from benchmarks.render_docs import PAGE, render

    assert PAGE.read_text(encoding="utf-8") == render(), (
        "docs/benchmarks.md is stale: run `python -m benchmarks.render_docs`"
    )


def test_every_benchmark_result_says_where_its_figures_come_from():
    results = sorted((ROOT / "benchmarks" / "results").glob("*.json"))
    assert results
    for path in results:
        record = json.loads(path.read_text(encoding="utf-8"))
        assert record["name"] == path.stem and record["command"].startswith("python -m benchmarks.")
        assert record["source"] and record["commit"] and record["machine"], path.name
        # A figure is either measured by the command on a recorded date, or says which earlier session it is from.
        assert record["date"] or "re-run" in record["source"], path.name


@pytest.mark.parametrize("stale", ["configuration", "benchmarks"])
def test_a_stale_generated_page_is_caught(stale, tmp_path):
    """The --check of each generator fails on an edited page, so the comparison above can fail."""
    if stale == "configuration":
        from posevit.devtools import config_reference as generator

        page = tmp_path / "configuration.md"
        page.write_text(generator.render().replace("Seed of both stratified splits", "Seed of one split"))
        assert generator.main(["--check", "--output", str(page)]) == 1
        generator.main(["--output", str(page)])
        assert generator.main(["--check", "--output", str(page)]) == 0
    else:
        import benchmarks.render_docs as generator

        page = tmp_path / "benchmarks.md"
        page.write_text(generator.render().replace("MFU", "mfu"))
        assert generator.main(["--check", "--output", str(page)]) == 1
        generator.main(["--output", str(page)])
        assert generator.main(["--check", "--output", str(page)]) == 0
