"""The README is the newcomer's page and docs/ the reference (issue 24.11): the README stays short,
its first screen goes from clone to the verdict, every link of the README and docs/ lands on a file
(and a heading) that exists, every page of docs/ is linked from the README, and the commands CI and
the tests replay are the README's."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from conftest import REPO

README = REPO / "README.md"
DOCS = sorted((REPO / "docs").glob("*.md"))
MAX_LINES = 250  # a newcomer reads it through; references go to docs/
FIRST_SCREEN = 60  # lines
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")


def lines(path: Path) -> list[str]:
    return path.read_text(encoding="utf-8").splitlines()


def without_code(text: list[str]) -> list[str]:
    """The lines outside fenced code blocks: a `[x](y)` inside code is no link, nor `# x` a heading."""
    kept, fenced = [], False
    for line in text:
        if line.startswith("```"):
            fenced = not fenced
        elif not fenced:
            kept.append(line)
    return kept


def code_lines(text: list[str]) -> list[str]:
    """The lines inside fenced code blocks."""
    kept, fenced = [], False
    for line in text:
        if line.startswith("```"):
            fenced = not fenced
        elif fenced:
            kept.append(line)
    return kept


def anchor(heading: str) -> str:
    """GitHub's anchor of a heading: lower case, punctuation but `-` and `_` dropped, spaces to `-`."""
    text = heading.lstrip("#").strip().lower()
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors(path: Path) -> set[str]:
    return {anchor(line) for line in without_code(lines(path)) if line.startswith("#")}


def links(path: Path) -> list[str]:
    return [target for line in without_code(lines(path)) for target in LINK.findall(line)]


def test_anchor_is_githubs():
    assert anchor("## Speed on a GPU (Llama-3.1-8B shapes, one H200, 2026-11-29)") == \
        "speed-on-a-gpu-llama-31-8b-shapes-one-h200-2026-11-29"
    assert anchor("## 2. A preset for your GPU") == "2-a-preset-for-your-gpu"
    assert anchor("# What each metric means (`metrics/eval.json`)") == "what-each-metric-means-metricsevaljson"


def test_the_readme_is_short():
    assert len(lines(README)) <= MAX_LINES, f"README.md has {len(lines(README))} lines: move reference to docs/"


def test_the_first_screen_goes_from_clone_to_the_verdict():
    """Issue 24: the set-up, `dvc repro`, the method sweep and `medadapt compare` within the first
    screen, as commands (inside a code block), in that order."""
    screen = lines(README)[:FIRST_SCREEN]
    code = [line.split("#")[0].strip() for line in code_lines(screen)]
    order = [next((i for i, line in enumerate(code) if line.startswith(start)), None)
             for start in ("pip install torch==2.13.0", "pip install -e", "dvc repro",
                           "dvc exp run --queue -S method=", "medadapt compare")]
    assert None not in order and order == sorted(order), (order, code)


@pytest.mark.parametrize("page", [README, *DOCS], ids=lambda p: p.relative_to(REPO).as_posix())
def test_every_relative_link_lands_on_a_file_and_heading(page):
    for target in links(page):
        if re.match(r"[a-z]+:", target):  # https:, mailto:
            continue
        file, _, fragment = target.partition("#")
        path = (page.parent / file).resolve() if file else page
        assert path.is_file(), f"{page.name}: {target} names no file"
        if fragment:
            assert path.suffix == ".md" and fragment in anchors(path), f"{page.name}: {target} names no heading"


def test_every_page_of_docs_is_linked_from_the_readme():
    assert DOCS, "docs/ holds no page"
    linked = {(README.parent / target.partition("#")[0]).resolve() for target in links(README)}
    assert [page.name for page in DOCS if page.resolve() not in linked] == []


def test_ci_runs_the_readmes_set_up_and_test_command():
    """.ci/run installs as the README's set-up says and runs its test command (`pytest`)."""
    ci = (REPO / ".ci/run").read_text()
    readme = README.read_text()
    setup = next(line for line in ci.splitlines() if line.startswith("pip install torch=="))
    for command in setup.split(" && "):
        assert command in readme, command
    assert ci.rstrip().endswith("\npytest") and "```bash\npytest\n```" in readme


@pytest.mark.parametrize("command", [
    "dvc repro",
    "dvc exp run -S method=dp",                      # tests/stages/test_check.py: the undo, literally
    "git checkout params.yaml",
    "dvc exp apply <experiment>",                    # tests/test_pipeline.py: the other way back
    "dvc exp run --queue -S method=icl -S 'icl.k=0,1,3,5,8'",  # the scaling grid (test_pipeline)
    "dvc exp run --run-all -j 1 && medadapt scaling",
    "medadapt costs reports/cost",
    "medadapt results",
    "medadapt power",
    "dvc exp run --queue -S train.seed=1,2,3",       # the seed grid
    "dvc exp run --queue $(medadapt preset llama-3.1-8b) -S method=base,icl,sft,dpo,grpo && dvc queue start -j 1",
], ids=lambda command: command[:48])
def test_the_commands_the_tests_replay_are_in_the_readme(command):
    assert command in README.read_text()


def test_the_presets_recommend_the_readmes_gpu_command():
    """Issue 24.6: a preset's recommended command is the one the README gives."""
    readme = README.read_text()
    for path in sorted((REPO / "presets").glob("*.yaml")):
        for line in lines(path):
            if line.startswith("#") and "$(medadapt preset" in line and "--queue" in line:
                command = line.lstrip("#").strip()
                assert command in readme, (path.name, command)
