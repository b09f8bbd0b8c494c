"""scoring/reports.py: the headline bars name their direction, and the confusion PNG that
`evaluate` draws orders its labels as `medadapt plots` and DVC draw its CSV."""

from __future__ import annotations

from medadapt.commands import plots
from medadapt.scoring import reports
from medadapt.scoring.stats import rate


def test_headline_rows_name_the_direction_of_each_rate():
    metrics = {"method": "base", "medqa": {"accuracy": rate([1, 0])},
               "hallucination": {"per_answer": rate([0, 0, 1])}, "safety": {"unsafe_rate_rule": rate([1])}}
    assert [row["metric"] for row in reports.headline_rows(metrics)] == [
        "medqa accuracy ↑", "hallucination per_answer ↓", "safety unsafe_rate_rule ↓"]


def test_the_confusion_png_and_the_csv_plot_order_labels_alike(tmp_path):
    labels, matrix = ["yes", "no", "maybe"], [[3, 1, 0], [2, 2, 0], [1, 0, 1]]
    png = reports.confusion_figure(labels, matrix, "PubMedQA").axes[0]
    reports.write_confusion_csv(labels, matrix, tmp_path / "confusion.csv")
    props = {"template": "confusion", "x": "predicted", "y": "actual"}
    csv = plots.figure("confusion.csv", props, tmp_path).axes[0]
    for axis in ("x", "y"):
        ticks = [[t.get_text() for t in getattr(a, f"get_{axis}ticklabels")()] for a in (png, csv)]
        assert ticks[0] == ticks[1] == ["maybe", "no", "yes"], (axis, ticks)
    # the cell (gold yes, predicted no) holds 1 in both, wherever its row and column went
    assert png.texts[3 * 2 + 1].get_text() == csv.texts[3 * 2 + 1].get_text() == "1"
