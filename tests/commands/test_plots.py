"""plots.py: dvc.yaml's plot definitions drawn to PNG files from TSV, CSV and JSON data, offline."""

from __future__ import annotations

import json

import pytest
from PIL import Image

from medadapt import cli
from medadapt.commands import plots

DVC_YAML = """
plots:
  - train_loss:
      title: train loss
      template: linear
      x: step
      y:
        dvclive/a/plots/metrics/loss.tsv: loss
        dvclive/b/plots/metrics/loss.tsv: loss
  - two_fields:
      template: scatter
      y:
        dvclive/a/plots/metrics/loss.tsv: loss
        dvclive/a/plots/metrics/acc.tsv: acc
  - reports/plots/confusion.csv:
      title: confusion
      template: confusion
      x: predicted
      y: actual
  - headline:
      template: bar_horizontal
      x: value
      y:
        reports/plots/headline.json: metric
  - not_yet_written:
      y:
        dvclive/c/loss.tsv: loss
  - reports/figure.png
"""


@pytest.fixture
def project(tmp_path):
    (tmp_path / "dvc.yaml").write_text(DVC_YAML)
    for name, text in {
        "dvclive/a/plots/metrics/loss.tsv": "step\tloss\n0\t2.0\n1\t1.5\n2\t1.2\n",
        "dvclive/b/plots/metrics/loss.tsv": "step\tloss\n0\t3.0\n1\t2.5\n",
        "dvclive/a/plots/metrics/acc.tsv": "step\tacc\n0\t0.2\n1\t0.4\n",
        "reports/plots/confusion.csv": "actual,predicted\nyes,yes\nno,yes\nmaybe,no\nyes,yes\n",
        "reports/plots/headline.json": json.dumps({"headline": [{"metric": "acc", "value": 0.5},
                                                                 {"metric": "f1", "value": 0.0}]}),
        "reports/plots_png/removed_plot.png": "stale",
    }.items():
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return tmp_path


def test_definitions_in_both_dvc_forms(project):
    found = dict(plots.definitions(project / "dvc.yaml"))
    assert found["reports/figure.png"] == {}
    assert found["headline"]["template"] == "bar_horizontal"


def test_series_read_each_file_and_field(project):
    props = dict(plots.definitions(project / "dvc.yaml"))["two_fields"]
    drawn = plots.series("two_fields", props, project)
    assert [(file.split("/")[-1], x, y, len(rows)) for file, x, y, rows in drawn] == [
        ("loss.tsv", "step", "loss", 3), ("acc.tsv", "step", "acc", 2)]
    assert drawn[0][3][2] == {"step": 2.0, "loss": 1.2}  # numbers, not text


def test_labels_name_what_differs():
    drawn = [("dvclive/sft_a/plots/loss.tsv", "step", "loss", []), ("dvclive/sft_b/plots/loss.tsv", "step", "loss", [])]
    assert plots.line_labels(drawn) == ["sft_a", "sft_b"]


def test_every_data_plot_becomes_a_png(project, capsys):
    written = plots.main(None, project)
    names = sorted(path.name for path in written)
    assert names == ["headline.png", "reports_plots_confusion.png", "train_loss.png", "two_fields.png"]
    for path in written:
        with Image.open(path) as image:
            assert image.format == "PNG" and image.size == (700, 450)
    assert not (project / "reports/plots_png/removed_plot.png").exists()
    out = capsys.readouterr().out
    assert "not_yet_written: not drawn: FileNotFoundError" in out
    assert "reports/figure.png: already an image" in out


def test_the_cli_command(project, monkeypatch, capsys):
    from conftest import make_project

    make_project(project)  # a params.yaml: every command validates it first
    monkeypatch.chdir(project)
    assert cli.main(["plots"]) == 0
    assert "medadapt plots: 4 PNG files in reports/plots_png/" in capsys.readouterr().out
