"""commands/codedeps.py: the import graph behind dvc.yaml's code deps."""

from __future__ import annotations

from medadapt.commands.codedeps import closure, imported_modules, rewrite_deps, stage_code


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
