"""`medadapt compare`: the comparison key locks provenance, groups keep one configuration and order
duplicates by time, training seeds are replicates, the verdict and its Holm family, position
bias, output written only when asked, and the chart's labels."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from medadapt.commands import _experiments, compare
from medadapt.data.records import Record
from medadapt.params import load_params
from medadapt.scoring import reports
from medadapt.scoring.stats import rate

from conftest import REPO

IDS = {"medqa": [f"medqa-{i}" for i in range(6)], "pubmedqa": [f"pubmedqa-{i}" for i in range(6)]}


def params(*overrides: str):
    return load_params(REPO / "params.yaml", list(overrides))


def records(gold: str = "A") -> dict[str, list[Record]]:
    return {name: [Record(i, name, f"question {i}?", None, ["a", "b", "c", "d"], gold, None) for i in ids]
            for name, ids in IDS.items()}


def key(*overrides: str, root: Path = Path("no-project"), items: dict | None = None) -> dict:
    return reports.comparison_key(params(*overrides), root, items or records(), [])


# ---- the comparison key ------------------------------------------------------------------------


def test_comparison_key_locks_code_items_models_and_every_param_evaluate_reads(tmp_path):
    reference = key()
    # what a method is, and how it was trained (its replicates), is not in the key
    assert key("method=dpo", "icl.k=5", "train.seed=7", "train.learning_rate=0.1") == reference
    assert key(items={n: rows[::-1] for n, rows in records().items()}) == reference  # the items, not their order
    assert reference["items"]["medqa"]["n"] == 6 and "medqa-0" not in json.dumps(reference)
    assert len(reference["code"]) == 16  # the digest of evaluate's code (sources.code_digest)
    for override, field in [("model.base=builtin:tiny-llama", "params.model.base"),
                            ("model.quantization=4bit", "params.model.quantization"),
                            ("evaluate.max_new_tokens=64", "params.evaluate.max_new_tokens"),
                            ("data.seed=1", "params.data.seed"),
                            ("icl.shuffle_permutations=3", "params.icl.shuffle_permutations"),
                            ("train.max_length=512", "params.train.max_length")]:
        differences = compare.key_differences(reference, key(override))
        assert len(differences) == 1 and differences[0].startswith(f"{field}: "), (override, differences)
    # a gold label: the same ids, other content
    assert [d.split(":")[0] for d in compare.key_differences(reference, key(items=records(gold="B")))] == [
        "items.medqa.sha256", "items.pubmedqa.sha256"]
    (tmp_path / "models/base").mkdir(parents=True)
    (tmp_path / "models/base/config.json").write_text("{}")
    (tmp_path / "models/rm").mkdir(parents=True)
    (tmp_path / "models/rm/adapter_model.safetensors").write_text("x")
    trained = key(root=tmp_path)
    assert {d.split(":")[0] for d in compare.key_differences(reference, trained)} == {"base", "reward_model"}
    (tmp_path / "models/rm/adapter_model.safetensors").write_text("y")
    assert [d.split(":")[0] for d in compare.key_differences(trained, key(root=tmp_path))] == ["reward_model"]


def test_the_key_reads_the_params_dvc_yaml_gives_evaluate():
    import yaml

    declared = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]["evaluate"]["params"]
    assert set(declared) - {"method"} == set(reports.EVALUATE_PARAMS)


# ---- grouping -------------------------------------------------------------------------------------


def result(method: str, values: list[int], comparison: dict | None, source: str = "run", time: float = 0.0,
           params_tree: dict | None = None, train_seed: int | None = None, prefix: str = "medqa") -> dict:
    scores = {f"{prefix}-{i}": float(v) for i, v in enumerate(values)}
    metrics = {"method": method, prefix: {"accuracy": rate(values)}, "replicate": {"train_seed": train_seed}}
    if comparison is not None:
        metrics["comparison"] = comparison
    return {"method": method, "metrics": metrics, "items": {f"{prefix}.accuracy": scores}, "source": source,
            "key": comparison, "root": Path("."), "time": time, "params": params_tree, "train_seed": train_seed}


def test_group_separates_keys_and_puts_keyless_results_last():
    a, b = key(), key("model.base=builtin:tiny-llama")
    results = [result("icl", [1] * 6, None, "workspace", 4), result("base", [0] * 6, a, "HEAD", 3),
               result("dpo", [1] * 6, b, "exp-1", 2), result("base", [1, 0] * 3, a, "exp-2", 1)]
    groups = _experiments.group(results)
    assert [g["key"] for g in groups] == [a, b, None]
    assert [r["source"] for r in groups[0]["results"]["base"]] == ["HEAD"]
    assert groups[0]["left_out"][0].startswith("exp-2 (base) of ") and "older than HEAD of " in groups[0]["left_out"][0]
    assert groups[0]["left_out"][0].endswith("its scores differ")


def test_duplicates_are_ordered_by_time_not_by_name():
    a = key()
    results = [result("sft", [1] * 6, a, "a-first-name", 1), result("sft", [0] * 6, a, "z-last-name", 2)]
    (shown,) = _experiments.group(results)[0]["results"]["sft"]
    assert shown["source"] == "z-last-name"  # the newer, whatever the folder names say


def test_a_result_of_another_configuration_is_left_out_saying_what_differs():
    a = key()
    head = {"method": "base", "train": {"learning_rate": 0.0003, "seed": 42}, "data": {"train_size": {"medqa": 12}}}
    other = {**head, "train": {"learning_rate": 0.001, "seed": 42}}
    results = [result("sft", [1] * 6, a, "lr-grid", 2, other), result("sft", [1, 0] * 3, a, "sweep", 1, head)]
    groups = _experiments.group(results, reference=head)
    assert [r["source"] for r in groups[0]["results"]["sft"]] == ["sweep"]
    assert groups[0]["left_out"] == ["lr-grid (sft): its params differ in train.learning_rate (budget grids: "
                                     "`medadapt scaling`)"]


def test_training_seeds_are_replicates_not_duplicates():
    a = key()
    head = {"method": "sft", "train": {"seed": 1}}
    results = [result("sft", [1, 1, 0, 0, 1, 1], a, f"seed-{s}", s, {**head, "train": {"seed": s}}, train_seed=s)
               for s in (1, 2, 3)]
    groups = _experiments.group(results, reference=head)
    assert [r["train_seed"] for r in groups[0]["results"]["sft"]] == [1, 2, 3] and groups[0]["left_out"] == []


def test_group_drops_an_identical_copy_silently():
    same = result("base", [1, 0] * 3, key(), "workspace", 2)
    groups = _experiments.group([same, {**same, "source": "HEAD", "time": 1}])
    assert len(groups) == 1 and groups[0]["left_out"] == []


# ---- the table, the family, replicates ----------------------------------------------------------


def test_vs_base_is_the_primary_familys_test_with_its_star(monkeypatch):
    base = [result("base", [0] * 10, key())]
    icl = [result("icl", [1] * 10, key())]
    settings = params("compare.primary=[MedQA acc]").compare
    decided = compare.decide({"base": base, "icl": icl}, settings, None, 0)
    rows = compare.table({"base": base, "icl": icl}, decided["family"])
    test = rows[1]["metrics"]["MedQA acc"]["vs_base"]
    # 10-0 discordant: exact McNemar 0.00195, the family's only test, survives
    assert test["diff"] == 1.0 and test["p_value"] == pytest.approx(2 / 1024) and test["survives"]
    assert decided["metrics"][0]["best"] == "icl"
    text = compare.markdown(rows, ["MedQA acc"], decided["family_size"], 0.05)
    assert "MedQA acc (primary)" in text and "(+1.00, p=0.002*, n=10)" in text


def test_a_secondary_metric_gets_a_p_and_never_a_star():
    base = [result("base", [0] * 10, key())]
    icl = [result("icl", [1] * 10, key())]
    rows = compare.table({"base": base, "icl": icl}, family=[])  # MedQA acc is not primary here
    test = rows[1]["metrics"]["MedQA acc"]["vs_base"]
    assert test["p_value"] == pytest.approx(2 / 1024) and "survives" not in test
    assert "p=0.002," in compare.markdown(rows, [], 0, 0.05)


def test_a_method_under_several_seeds_is_one_row_with_its_spread_and_two_level_tests():
    base = [result("base", [0, 1] * 5, key())]
    sft = [result("sft", values, key(), f"s{s}", train_seed=s)
           for s, values in ((1, [1] * 10), (2, [1] * 8 + [0] * 2), (3, [1] * 6 + [0] * 4))]
    settings = params("compare.primary=[MedQA acc]").compare
    decided = compare.decide({"base": base, "sft": sft}, settings, None, 0)
    (test,) = decided["family"]
    assert test["test"] == "two_level_bootstrap" and sorted(test["seeds"]) == [1, 3]
    rows = compare.table({"base": base, "sft": sft}, decided["family"])
    value = rows[1]["metrics"]["MedQA acc"]
    assert value["value"] == pytest.approx(0.8) and value["seeds"] == 3 and value["seed_sd"] == pytest.approx(0.2)
    assert value["low"] < 0.8 < value["high"]
    assert "sd 0.20/3 seeds" in compare.markdown(rows, ["MedQA acc"], 1, 0.05)


def test_a_position_biased_accuracy_is_marked_with_its_circular_accuracy():
    base = result("base", [1, 0, 0, 0, 0], key())
    base["metrics"]["medqa"].update(predicted_letters={"A": 5}, circular_accuracy=rate([0] * 5))
    icl = result("icl", [1, 1, 0, 0, 0], key())
    icl["metrics"]["medqa"].update(predicted_letters={"A": 2, "B": 1, "C": 1, "D": 1}, circular_accuracy=rate([0] * 5))
    results = {"base": [base], "icl": [icl]}
    decided = compare.decide(results, params("compare.primary=[MedQA acc]").compare, None, 0)
    assert decided["position_bias"] == {"MedQA acc": {"base": {"letter": "A", "share": 1.0}}}
    rows = compare.table(results, decided["family"])
    assert "⚑A 100%" in compare.markdown(rows, ["MedQA acc"], 1, 0.05)
    (line,) = compare.bias_lines(decided, rows)
    assert "MedQA acc is position-biased for base (A 100%)" in line and "base 0.00" in line


def test_an_unknown_primary_metric_names_the_valid_ones():
    from medadapt.errors import UserError

    with pytest.raises(UserError, match="compare.primary: unknown metric 'Accuracy'; valid: MedMCQA acc"):
        compare.decide({"base": [result("base", [0], key())]}, params("compare.primary=[Accuracy]").compare, None, 0)


# ---- the command: print always, write only when asked -----------------------------------------


def git(root: Path, *args: str) -> None:
    subprocess.run(["git", *args], cwd=root, check=True, capture_output=True)


def save(root: Path, run: dict) -> None:
    (root / "metrics").mkdir(parents=True, exist_ok=True)
    (root / "reports").mkdir(parents=True, exist_ok=True)
    (root / "metrics/eval.json").write_text(json.dumps(run["metrics"]))
    (root / "reports/eval_items.json").write_text(json.dumps({"method": run["method"], "items": run["items"]}))


@pytest.fixture
def repo(tmp_path) -> Path:
    """HEAD holds a base result under the default key; the workspace an icl result under another model."""
    git(tmp_path, "init", "-q")
    git(tmp_path, "config", "user.email", "ci@example.invalid")
    git(tmp_path, "config", "user.name", "ci")
    save(tmp_path, result("base", [0] * 6, key()))
    git(tmp_path, "add", "-A")
    git(tmp_path, "commit", "-qm", "base")
    save(tmp_path, result("icl", [1] * 6, key("model.base=builtin:tiny-llama")))
    return tmp_path


def test_compare_prints_one_table_per_key_and_writes_nothing(repo, capsys):
    before = sorted(p.relative_to(repo) for p in repo.rglob("*") if ".git" not in p.parts)
    groups = compare.main(params(), repo)
    printed = capsys.readouterr().out
    assert sorted(p.relative_to(repo) for p in repo.rglob("*") if ".git" not in p.parts) == before
    assert [len(g["rows"]) for g in groups] == [1, 1]  # icl is never tested against another model's base
    assert "vs_base" not in groups[0]["rows"][0]["metrics"]["MedQA acc"]
    assert "### Table 1" in printed and "### Table 2" in printed and "Base builtin:tiny-llama" in printed
    assert "params.model.base: builtin:tiny-llama vs builtin:smollm2-135m" in printed


def test_compare_warns_about_results_without_a_key(repo, capsys):
    save(repo, result("icl", [1] * 6, None))
    compare.main(params(), repo)
    table_2 = capsys.readouterr().out.split("### Table 2")[1]
    assert "WARNING: these results carry no full comparison key" in table_2 and "| icl |" in table_2


def test_compare_writes_when_given_an_output_path(repo):
    groups = compare.main(params(), repo, "out/compare")
    written = json.loads((repo / "out/compare.json").read_text())
    assert [g["key"] for g in written["groups"]] == [g["key"] for g in groups]
    assert "### Table 2" in (repo / "out/compare.md").read_text()
    for name in ("compare.png", "compare-2.png"):
        assert (repo / "out" / name).stat().st_size > 1000
    assert not (repo / "reports/compare.md").exists()


def test_compare_runs_applies_the_key_and_works_outside_git(tmp_path, capsys):
    """Run folders are checked like experiments: the same predictions scored on other gold labels
    (e.g. medmcqa_cop_base 0 vs 1) carry another key and never share a table."""
    runs = tmp_path / "runs"
    save(runs / "base", result("base", [0] * 6, key()))
    save(runs / "sft", result("sft", [1] * 6, key(items=records(gold="B"))))
    save(runs / "icl", result("icl", [1] * 6, key()))
    assert subprocess.run(["git", "rev-parse"], cwd=tmp_path, capture_output=True).returncode != 0
    groups = compare.main(params(), tmp_path, runs="runs")
    assert [sorted(r["method"] for r in g["rows"]) for g in groups] == [["base", "icl"], ["sft"]]
    assert "items.medqa.sha256" in capsys.readouterr().out


def test_the_verdict_opens_the_report(repo, capsys):
    os.utime(repo / "metrics/eval.json")
    save(repo, result("icl", [1] * 6, key()))
    compare.main(params("compare.primary=[MedQA acc]"), repo)
    printed = capsys.readouterr().out
    assert printed.index("**Verdict**") < printed.index("| method |")
    assert "Every pair of methods on the primary metrics" in printed


# ---- the chart ----------------------------------------------------------------------------------


def test_chart_marks_direction_model_n_and_a_zero_value():
    runs = {}
    for method, hallucinated in (("base", [0] * 6), ("icl", [1, 0, 0, 0, 0, 0])):
        run = result(method, [1, 0] * 3, key())
        run["metrics"]["hallucination"] = {"per_answer": rate(hallucinated)}
        runs[method] = [run]
    plot = compare.figure(compare.table(runs, []), key())
    higher, lower = plot.axes
    assert "higher is better" in higher.get_title() and "↑" in higher.get_title()
    assert "lower is better" in lower.get_title() and "↓" in lower.get_title()
    assert [t.get_text() for t in lower.get_xticklabels()] == ["Hallucination rate ↓\nn=6"]
    assert "builtin:smollm2-135m" in plot.get_suptitle()
    # base's hallucination rate is 0: a marker sits at 0, inside the visible range
    assert lower.get_ylim()[0] < 0
    markers = [line for line in lower.get_lines() if line.get_marker() == "o"]
    assert any(0.0 in line.get_ydata() for line in markers)


def test_a_judged_metric_says_its_judges_j_and_warns_below_chance(tmp_path):
    quality = {"Hallucination rate": {"J": 0.33, "low": 0.11, "high": 0.5, "better_than_chance": True,
                                      "judge": "hallucination", "n": 80},
               "Unsafe rate (RM)": {"J": -0.47, "low": -0.7, "high": -0.17, "better_than_chance": False,
                                    "judge": "reward model", "n": 30}}
    lines = compare.judge_lines(quality, ["Hallucination rate", "Unsafe rate (RM)", "Unsafe rate (rule)", "MedQA acc"])
    assert lines[0] == "- Hallucination rate: hallucination judge, J 0.33 [0.11, 0.50] on 80 held-out labelled answers."
    assert "⚠ not shown better than chance" in lines[1]
    assert "Unsafe rate (rule): ⚠ its judge was not measured here" in lines[2] and len(lines) == 3


# ---- files of two evaluate runs (issue 23) ---------------------------------------------------------


def write_run(folder: Path, method: str, values: list[int], run: str | None, items_run: str | None = None) -> Path:
    """A run folder as `compare --runs` reads it: metrics/eval.json, reports/eval_items.json and
    reports/eval_details.json, each naming `run` (the items `items_run`, where given)."""
    one = result(method, values, key(), folder.name)
    for path, data, name in [("metrics/eval.json", {"method": method, "medqa": one["metrics"]["medqa"]}, run),
                             ("reports/eval_details.json", {"comparison": key()}, run),
                             ("reports/eval_items.json", {"method": method, "items": one["items"]},
                              items_run or run)]:
        (folder / path).parent.mkdir(parents=True, exist_ok=True)
        (folder / path).write_text(json.dumps({**data, **({"run": name} if name else {})}))
    return folder


def test_files_of_two_evaluate_runs_are_left_out_not_compared(tmp_path):
    """A kill between evaluate's writes left eval.json of `base` beside icl's per-item scores, and
    compare tabled icl against base as +0.00, p = 1.000."""
    write_run(tmp_path / "runs/a-base", "base", [0] * 6, "r1")
    write_run(tmp_path / "runs/b-icl", "icl", [1] * 6, "r2")
    write_run(tmp_path / "runs/c-mixed", "base", [1] * 6, "r3", items_run="r4")
    write_run(tmp_path / "runs/d-old", "dpo", [1, 0] * 3, None)  # before run ids: nothing to check
    groups = _experiments.group(_experiments.collect(tmp_path, tmp_path / "runs"))
    assert sorted(groups[0]["results"]) == ["base", "dpo", "icl"]
    assert [r["source"] for r in groups[0]["results"]["base"]] == ["a-base"]
    assert groups[0]["left_out"] == [
        ("c-mixed (base): its files come from different evaluate runs (metrics/eval.json: r3, "
         "reports/eval_items.json: r4, reports/eval_details.json: r3); run `medadapt evaluate` "
         "(or `dvc repro evaluate`) again")]


def test_the_title_names_no_machine_path():
    """Issue 24.10: the reference chart's title read `data /tmp/data`."""
    comparison = key("data.source=/tmp/run-42/shared/data")
    run = result("base", [1, 0] * 3, comparison)
    title = compare.figure(compare.table({"base": [run]}, []), comparison).get_suptitle()
    assert "/tmp" not in title and "builtin:smollm2-135m" in title
