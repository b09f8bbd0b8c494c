"""`medadapt compare`: the comparison key, one table per key, paired tests on shared items with
their n and Holm's correction, output written only when asked, and the chart's labels."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from medadapt.commands import _experiments, compare
from medadapt.params import load_params
from medadapt.scoring import reports
from medadapt.scoring.stats import holm, rate

from conftest import REPO

IDS = {"medqa": [f"medqa-{i}" for i in range(6)], "pubmedqa": [f"pubmedqa-{i}" for i in range(6)]}


def params(*overrides: str):
    return load_params(REPO / "params.yaml", list(overrides))


def key(*overrides: str, ids: dict | None = None) -> dict:
    return reports.comparison_key(params(*overrides), ids or IDS)


# ---- the comparison key ------------------------------------------------------------------------


def test_comparison_key_is_what_defines_a_comparison():
    reference = key()
    assert key("method=dpo", "icl.k=5") == reference  # what a method is, is not in the key
    shuffled = {name: ids[::-1] for name, ids in IDS.items()}
    assert key(ids=shuffled) == reference  # the items, not their order
    assert reference["data"]["eval_ids"]["medqa"]["n"] == 6
    assert "medqa-0" not in json.dumps(reference)  # ids enter as a hash
    for override, field in [("model.base=builtin:tiny-llama", "model.base"),
                            ("model.quantization=4bit", "model.quantization"),
                            ("data.source=hub", "data.source"),
                            ("evaluate.max_new_tokens=64", "prompt.max_new_tokens"),
                            ("evaluate.consistency_variants=2", "prompt.consistency_variants"),
                            ("evaluate.safety_prompts=3", "prompt.safety_prompts"),
                            ("seed=1", "seed")]:
        differences = compare.key_differences(reference, key(override))
        assert len(differences) == 1 and differences[0].startswith(f"{field}: "), (override, differences)
    other_items = {**IDS, "medqa": IDS["medqa"][:5] + ["medqa-99"]}
    assert [d.split(":")[0] for d in compare.key_differences(reference, key(ids=other_items))] == [
        "data.eval_ids.medqa.sha256"]


# ---- grouping and the tests ---------------------------------------------------------------------


def result(method: str, scores: dict[str, float], comparison: dict | None, source: str = "run",
           varies: list[str] = ()) -> dict:
    metrics = {"method": method, "medqa": {"accuracy": rate(list(scores.values()))}}
    if comparison is not None:
        metrics["comparison"] = comparison
    return {"method": method, "metrics": metrics, "items": {"medqa.accuracy": scores}, "source": source,
            "key": comparison, "varies": list(varies)}


def scores(values: list[int], prefix: str = "medqa") -> dict[str, float]:
    return {f"{prefix}-{i}": float(v) for i, v in enumerate(values)}


def test_group_separates_keys_and_puts_keyless_results_last():
    a, b = key(), key("model.base=builtin:tiny-llama")
    results = [result("icl", scores([1] * 6), None, "workspace"), result("base", scores([0] * 6), a, "HEAD"),
               result("dpo", scores([1] * 6), b, "exp-1"), result("base", scores([1, 0] * 3), a, "exp-2")]
    groups = _experiments.group(results)
    assert [g["key"] for g in groups] == [a, b, None]
    assert list(groups[0]["results"]) == ["base"] and groups[0]["results"]["base"]["source"] == "HEAD"
    assert groups[0]["left_out"] == ["exp-2 (base): older than HEAD, the result of that method shown"]
    assert list(groups[1]["results"]) == ["dpo"] and list(groups[2]["results"]) == ["icl"]


def test_group_shows_each_method_at_heads_params():
    """A grid point (another train size, another k) is not the method's row: the newest result
    that differs from HEAD's params in `method` alone is, and the grid point is listed as left out."""
    a = key()
    results = [result("sft", scores([1] * 6), a, "all-items", ["data.train_size.medqa", "data.train_size.medmcqa",
                                                                "data.train_size.pubmedqa", "icl.k"]),
               result("sft", scores([1, 0] * 3), a, "sweep"), result("base", scores([0] * 6), a, "HEAD")]
    groups = _experiments.group(results)
    assert groups[0]["results"]["sft"]["source"] == "sweep"
    assert groups[0]["left_out"] == ["all-items (sft): its params differ from HEAD's in data.train_size.medqa, "
                                     "data.train_size.medmcqa, data.train_size.pubmedqa and 1 more "
                                     "(budget grids: `medadapt scaling`)"]


def test_varied_reads_dotted_keys_and_ignores_method():
    from medadapt.commands._experiments import varied

    head = {"method": "base", "icl": {"k": 3}, "data": {"train_size": {"medqa": 12}}}
    assert varied({"method": "sft", "icl": {"k": 3}, "data": {"train_size": {"medqa": 12}}}, head) == set()
    assert varied({"method": "icl", "icl": {"k": 8}, "data": {"train_size": {"medqa": 12}}}, head) == {"icl.k"}


def test_group_drops_an_identical_copy_silently():
    same = result("base", scores([1, 0] * 3), key(), "workspace")
    groups = _experiments.group([same, {**same, "source": "HEAD"}])
    assert len(groups) == 1 and groups[0]["left_out"] == []


def test_paired_test_uses_the_shared_items_and_says_how_many():
    base = result("base", scores([0] * 10), None, "a")  # 10 items
    icl = result("icl", scores([1] * 6), None, "b")  # 6 of them
    rows = compare.table({"base": base, "icl": icl})
    cell = rows[1]["metrics"]["MedQA acc"]
    assert cell["n"] == 6
    test = cell["vs_base"]
    # 6-0 discordant on the 6 shared items: exact McNemar 0.03125
    assert test["n"] == 6 and test["diff"] == 1.0 and test["p_value"] == pytest.approx(0.03125)
    text = compare.markdown(rows)
    assert "(+1.00, p=0.031*, n=6)" in text  # the only test: Holm leaves it as it is
    base_short = result("base", scores([0] * 4), None, "a")
    text = compare.markdown(compare.table({"base": base_short, "icl": icl}))
    assert "1.00 [0.61, 1.00] n=6 (+1.00, p=0.125, n=4)" in text  # the value's own n where it differs
    assert "n per metric: MedQA acc 4-6" in text


def test_holm_across_every_test_of_the_table():
    both = {"medqa.accuracy": scores([1] * 6), "pubmedqa.accuracy": scores([1] * 3 + [0] * 3, "pubmedqa")}
    base = {"method": "base", "source": "a", "items": {k: {i: 0.0 for i in v} for k, v in both.items()},
            "metrics": {"method": "base", "medqa": {"accuracy": rate([0] * 6)},
                        "pubmedqa": {"accuracy": rate([0] * 6)}}}
    runs = {"base": base}
    for method in ("icl", "sft"):
        runs[method] = {"method": method, "source": method, "items": both,
                        "metrics": {"method": method, "medqa": {"accuracy": rate([1] * 6)},
                                    "pubmedqa": {"accuracy": rate([1] * 3 + [0] * 3)}}}
    tests = [cell["vs_base"] for row in compare.table(runs) for cell in row["metrics"].values() if "vs_base" in cell]
    assert [t["p_value"] for t in tests] == pytest.approx([0.03125, 0.25, 0.03125, 0.25])
    assert [t["p_holm"] for t in tests] == pytest.approx(holm([0.03125, 0.25, 0.03125, 0.25]))
    # 4 tests: 0.03125 * 4 = 0.125, no longer below 0.05
    assert not any(t["survives_holm"] for t in tests)


# ---- the command: print always, write only when asked -----------------------------------------


def git(root: Path, *args: str) -> None:
    subprocess.run(["git", *args], cwd=root, check=True, capture_output=True)


def save(root: Path, run: dict) -> None:
    (root / "metrics").mkdir(exist_ok=True)
    (root / "reports").mkdir(exist_ok=True)
    (root / "metrics/eval.json").write_text(json.dumps(run["metrics"]))
    (root / "reports/eval_items.json").write_text(json.dumps({"method": run["method"], "items": run["items"]}))


@pytest.fixture
def repo(tmp_path) -> Path:
    """HEAD holds a base result under the default key; the workspace an icl result under another model."""
    git(tmp_path, "init", "-q")
    git(tmp_path, "config", "user.email", "ci@example.invalid")
    git(tmp_path, "config", "user.name", "ci")
    save(tmp_path, result("base", scores([0] * 6), key()))
    git(tmp_path, "add", "-A")
    git(tmp_path, "commit", "-qm", "base")
    save(tmp_path, result("icl", scores([1] * 6), key("model.base=builtin:tiny-llama")))
    return tmp_path


def test_compare_prints_one_table_per_key_and_writes_nothing(repo, capsys):
    before = sorted(p.relative_to(repo) for p in repo.rglob("*") if ".git" not in p.parts)
    groups = compare.main(params(), repo)
    printed = capsys.readouterr().out
    assert sorted(p.relative_to(repo) for p in repo.rglob("*") if ".git" not in p.parts) == before
    assert [len(g["rows"]) for g in groups] == [1, 1]  # icl is never tested against another model's base
    assert "vs_base" not in groups[0]["rows"][0]["metrics"]["MedQA acc"]
    assert "### Table 1" in printed and "### Table 2" in printed
    assert "Model builtin:tiny-llama" in printed
    assert "Not comparable with table 1, whose runs differ in: model.base: builtin:tiny-llama vs builtin:smollm2-135m" \
        in printed


def test_compare_warns_about_results_without_a_key(repo, capsys):
    save(repo, result("icl", scores([1] * 6), None))
    compare.main(params(), repo)
    printed = capsys.readouterr().out
    table_2 = printed.split("### Table 2")[1]
    assert "WARNING: these results carry no comparison key" in table_2 and "| icl |" in table_2


def test_compare_writes_when_given_an_output_path(repo):
    groups = compare.main(params(), repo, "out/compare")
    written = json.loads((repo / "out/compare.json").read_text())
    assert [g["key"] for g in written["groups"]] == [g["key"] for g in groups]
    assert "### Table 2" in (repo / "out/compare.md").read_text()
    for name in ("compare.png", "compare-2.png"):
        assert (repo / "out" / name).stat().st_size > 1000
    assert not (repo / "reports/compare.md").exists()


# ---- the chart ----------------------------------------------------------------------------------


def test_chart_marks_direction_model_n_and_a_zero_value():
    comparison = key()
    runs = {}
    for method, hallucinated in (("base", [0] * 6), ("icl", [1, 0, 0, 0, 0, 0])):
        runs[method] = {"method": method, "source": method, "items": {},
                        "metrics": {"method": method, "medqa": {"accuracy": rate([1, 0] * 3)},
                                    "hallucination": {"per_answer": rate(hallucinated)}}}
    plot = compare.figure(compare.table(runs), comparison)
    higher, lower = plot.axes
    assert "higher is better" in higher.get_title() and "↑" in higher.get_title()
    assert "lower is better" in lower.get_title() and "↓" in lower.get_title()
    assert [t.get_text() for t in lower.get_xticklabels()] == ["Hallucination rate ↓\nn=6"]
    assert "builtin:smollm2-135m" in plot.get_suptitle()
    # base's hallucination rate is 0: a marker sits at 0, inside the visible range
    assert lower.get_ylim()[0] < 0
    markers = [line for line in lower.get_lines() if line.get_marker() == "o"]
    assert any(0.0 in line.get_ydata() for line in markers)


def test_the_title_names_a_data_folder_without_its_machine_path():
    """Issue 24.10: the reference chart's title read `data /tmp/data`."""
    comparison = key("data.source=/tmp/run-42/shared/data")
    runs = {"base": {"method": "base", "source": "base", "items": {},
                     "metrics": {"method": "base", "medqa": {"accuracy": rate([1, 0] * 3)}}}}
    title = compare.figure(compare.table(runs), comparison).get_suptitle()
    assert "data folder data," in title and "/tmp" not in title
    assert "data folder data," in compare.describe(comparison)
    assert "data sample," in compare.describe(key())
