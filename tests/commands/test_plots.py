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


# ---- issue 24.10: what each PNG must tell a reader ---------------------------------------------


def test_identical_lines_are_one_line_with_every_name(project):
    """learning_rate.png: the three SFT stages share a schedule; drawn apart, two hid under the
    third and still stood in the legend."""
    (project / "dvclive/c/plots/metrics").mkdir(parents=True)
    (project / "dvclive/c/plots/metrics/loss.tsv").write_text((project / "dvclive/a/plots/metrics/loss.tsv").read_text())
    props = {"template": "linear", "x": "step", "y": {f"dvclive/{run}/plots/metrics/loss.tsv": "loss"
                                                      for run in "abc"}}
    axis = plots.figure("lines", props, project).axes[0]
    assert [text.get_text() for text in axis.get_legend().get_texts()] == ["a = c", "b"]
    assert len(axis.get_lines()) == 2


def test_fields_sharing_an_axis_name_it(project):
    """rm_train.png and dpo_logps.png: loss and accuracy on one axis had no y label."""
    props = dict(plots.definitions(project / "dvc.yaml"))["two_fields"]
    assert plots.figure("two_fields", props, project).axes[0].get_ylabel() == "loss, acc"
    labelled = plots.figure("two_fields", {**props, "y_label": "loss, accuracy (one axis)"}, project)
    assert labelled.axes[0].get_ylabel() == "loss, accuracy (one axis)"


def test_a_long_title_stays_inside_the_figure(project):
    """headline_metrics.png: its title ran past the figure's edge."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.text import Text

    title = "Headline metrics of the evaluated method (compare across experiments), a long title indeed"
    props = {**dict(plots.definitions(project / "dvc.yaml"))["headline"], "title": title}
    figure = plots.figure("headline", props, project)
    FigureCanvasAgg(figure).draw()
    shown = [text for text in figure.findobj(Text) if text.get_text().replace("\n", " ") == title]
    box = shown[0].get_window_extent()
    assert box.x0 >= 0 and box.x1 <= figure.bbox.width and box.y0 >= 0 and box.y1 <= figure.bbox.height


def test_the_repos_plots_name_their_axes_and_directions():
    """dvc.yaml: each plot whose fields share an axis labels it; the headline bars name their
    direction (evaluate writes it into each metric's name, scoring/reports.headline_rows)."""
    from conftest import REPO

    found = dict(plots.definitions(REPO / "dvc.yaml"))
    for plot_id in ("rm_train", "dpo_logps", "dpo_loss"):
        assert found[plot_id].get("y_label"), plot_id
    assert "↑" in found["headline_metrics"]["title"] and "↓" in found["headline_metrics"]["title"]
    assert found["reports/plots/pubmedqa_confusion.csv"]["y_label"] == "gold"
