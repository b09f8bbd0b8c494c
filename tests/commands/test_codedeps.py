"""commands/codedeps.py: the import graph behind dvc.yaml's code deps."""

from __future__ import annotations

import shutil

from medadapt.commands.codedeps import rewrite_deps
from medadapt.sources import closure, code_digest, imported_modules, stage_code


def test_import_graph_follows_function_level_and_relative_imports():
    assert "medadapt.artifacts" in imported_modules("medadapt.entry")  # imported inside a function
    assert "medadapt.paths" in imported_modules("medadapt.stages.sft")  # `from .. import paths`
    assert "medadapt.scoring.safety" in closure("medadapt.stages.evaluate")  # through scoring/judges.py


def test_package_data_a_module_reads_is_a_dependency():
    assert "src/medadapt/scoring/drug_names.txt" in stage_code("evaluate")
    assert "src/medadapt/data/pubmedqa_test_pmids.txt" in stage_code("prepare")


def test_rewrite_replaces_only_the_src_lines_of_each_stage():
    text = ("stages:\n  icl:\n    cmd: python -m medadapt.stages.icl\n    deps:\n      - .params-checked\n"
            "      - src/medadapt/old.py\n      - data/prepared\n    params:\n      - icl.k\n")
    rewritten = rewrite_deps(text)
    assert "src/medadapt/old.py" not in rewritten
    assert "      - src/medadapt/stages/icl.py" in rewritten
    assert rewritten.index(".params-checked") < rewritten.index("src/medadapt/stages/icl.py") < rewritten.index(
        "data/prepared")
    assert rewritten.endswith("params:\n      - icl.k\n")


def test_code_digest_follows_the_stage_code_and_nothing_else(tmp_path, monkeypatch):
    from medadapt import sources

    before = code_digest("evaluate")
    assert code_digest("check") != before
    copy = tmp_path / "src"
    shutil.copytree(sources.SRC / "medadapt", copy / "medadapt")
    monkeypatch.setattr(sources, "SRC", copy)
    assert code_digest("evaluate") == before  # the same files in another checkout
    (copy / "medadapt/training/run.py").write_text("# training code: not evaluate's\n")
    assert code_digest("evaluate") == before
    (copy / "medadapt/scoring/drug_names.txt").write_text("aspirin\n")  # package data it reads
    assert code_digest("evaluate") != before
