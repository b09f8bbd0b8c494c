"""commands/power.py: `medadapt power` plans items and seeds from a pilot run's per-item results."""

from __future__ import annotations

import json

import pytest

from medadapt.commands import power as power_command
from medadapt.params import load_params
from medadapt.scoring import power

from conftest import REPO


def write_run(folder, method: str, scores: dict[str, dict[str, float]]) -> None:
    (folder / method / "reports").mkdir(parents=True)
    (folder / method / "reports/eval_items.json").write_text(json.dumps({"method": method, "items": scores}))


def test_power_command_plans_from_the_pilot(tmp_path, capsys):
    ids = [f"pubmedqa-{i}" for i in range(100)]
    a = {i: float(k < 50) for k, i in enumerate(ids)}
    b = {i: float(10 <= k < 70) for k, i in enumerate(ids)}  # 30 discordant items, 10 vs 20
    write_run(tmp_path / "runs", "base", {"pubmedqa.accuracy": a})
    write_run(tmp_path / "runs", "sft", {"pubmedqa.accuracy": b})
    before = sorted(tmp_path.rglob("*"))
    result = power_command.main(load_params(REPO / "params.yaml", ["compare.primary=[PubMedQA acc]"]), tmp_path,
                                runs="runs")
    assert sorted(tmp_path.rglob("*")) == before  # prints, writes nothing
    assert result["family_size"] == 1  # one primary metric with per-item scores here, one pair
    entry = next(m for m in result["metrics"] if m["metric"] == "PubMedQA acc")
    (pair,) = entry["pairs"]
    assert pair["discordance"] == 0.3 and pair["mde"] == pytest.approx(power.mcnemar_mde(100, 0.3))
    assert entry["needed"][0]["items"]["0.05"][0] == power.mcnemar_items_needed(0.05, 0.3)
    assert "PubMedQA acc" in capsys.readouterr().out
    power_command.main(load_params(REPO / "params.yaml", ["compare.primary=[PubMedQA acc]"]), tmp_path, "out/power",
                       "runs")
    assert json.loads((tmp_path / "out/power.json").read_text())["family_size"] == 1
