"""`medadapt plots`: every plot of dvc.yaml's `plots:` drawn to a PNG file, offline.

`dvc plots show` writes HTML whose vega library loads from a CDN, so it stays blank without a
network. This reads the same definitions and data files (TSV, CSV, JSON, YAML) and draws each
plot with matplotlib to `reports/plots_png/<plot id>.png` (git-ignored: it is a view of files
git already tracks; run it again after `dvc repro` or `dvc exp apply`). Templates: the line
family (`linear`, `simple`, `smooth`, `scatter`), `bar_horizontal(_sorted)` and
`confusion(_normalized)`. An entry that is already an image is left as it is.
"""

from __future__ import annotations

import csv
import json
import os
import textwrap
from collections import Counter
from pathlib import Path

import yaml

from ..artifacts import remove
from ..paths import REPORTS

OUT = REPORTS / "plots_png"
IMAGES = {".png", ".jpg", ".jpeg", ".gif", ".svg"}
LINES = {"linear", "simple", "smooth", "scatter"}
BARS = {"bar_horizontal", "bar_horizontal_sorted"}
CONFUSIONS = {"confusion", "confusion_normalized"}


def definitions(dvc_yaml: Path) -> list[tuple[str, dict]]:
    """(plot id, properties) of each top-level plot: DVC allows a bare path or `{id: props}`."""
    entries = (yaml.safe_load(dvc_yaml.read_text()) or {}).get("plots") or []
    if isinstance(entries, dict):
        entries = [entries]
    found = []
    for entry in entries:
        if isinstance(entry, str):
            found.append((entry, {}))
        else:
            found.extend((plot_id, props or {}) for plot_id, props in entry.items())
    return found


def number(value):
    """CSV and TSV cells are text: numbers as floats, labels as they are."""
    try:
        return float(value)
    except (TypeError, ValueError):
        return value


def read_rows(path: Path) -> list[dict]:
    """The records of a plot data file; in JSON or YAML, a list or the first list in an object."""
    if path.suffix in (".csv", ".tsv"):
        with path.open(newline="") as handle:
            reader = csv.DictReader(handle, delimiter="\t" if path.suffix == ".tsv" else ",")
            return [{key: number(value) for key, value in row.items()} for row in reader]
    data = json.loads(path.read_text()) if path.suffix == ".json" else yaml.safe_load(path.read_text())
    if isinstance(data, dict):
        data = next((value for value in data.values() if isinstance(value, list)), [])
    return data


def as_list(value) -> list:
    return value if isinstance(value, list) else [value]


def series(plot_id: str, props: dict, root: Path) -> list[tuple[str, str, str, list[dict]]]:
    """(file, x field, y field, rows) of every line or bar set the plot draws; `y` is a field
    (or fields) of the file named by the id, or `{file: field(s)}`; `x` likewise or a field."""
    y = props.get("y")
    pairs = ([(file, field) for file, fields in y.items() for field in as_list(fields)]
             if isinstance(y, dict) else [(plot_id, field) for field in as_list(y)])
    found = []
    for file, field in pairs:
        rows = read_rows(root / file)
        x = props.get("x", "step")
        x = x.get(file, "step") if isinstance(x, dict) else x
        # DVC's default y is the file's last column
        found.append((file, x, field or list(rows[0])[-1], rows))
    return found


def distinct_parts(files: list[str]) -> list[str]:
    """What tells the files apart: each path without the folders and names all of them share,
    e.g. `sft_medqa` for `dvclive/sft_medqa/plots/metrics/loss.tsv` among the SFT stages."""
    parts = [Path(file).parts for file in files]
    head = len(os.path.commonprefix(parts))
    tail = len(os.path.commonprefix([p[::-1] for p in parts]))
    return ["/".join(p[head:len(p) - tail]) or file for p, file in zip(parts, files)]


def line_labels(drawn: list) -> list[str]:
    """The field where the files agree, the file part where the fields agree, else both."""
    fields = [y for _, _, y, _ in drawn]
    files = distinct_parts([file for file, *_ in drawn])
    if len(set(fields)) == 1:
        return files
    if len({file for file, *_ in drawn}) == 1:
        return fields
    return [f"{field} ({file})" for field, file in zip(fields, files)]


def distinct_lines(drawn: list) -> list[tuple[list, list, str]]:
    """(xs, ys, label) of each distinct line: lines with the same points are drawn once under their
    labels joined by " = " (drawn apart, the later would hide the earlier and leave it a legend entry)."""
    lines: dict[tuple, list[str]] = {}
    for (file, x, y, rows), label in zip(drawn, line_labels(drawn)):
        points = (tuple(row.get(x, index) for index, row in enumerate(rows)), tuple(row[y] for row in rows))
        lines.setdefault(points, []).append(label)
    return [(list(xs), list(ys), " = ".join(labels)) for (xs, ys), labels in lines.items()]


def draw_lines(axis, drawn: list, template: str) -> None:
    lines = distinct_lines(drawn)
    for xs, ys, label in lines:
        if template == "scatter":
            axis.scatter(xs, ys, s=12, label=label)
        else:
            axis.plot(xs, ys, marker="." if len(xs) < 30 else None, label=label)
    axis.set_xlabel(drawn[0][1])
    axis.set_ylabel(", ".join(dict.fromkeys(y for _, _, y, _ in drawn)))  # every field the axis carries
    if len(lines) > 1 or len(drawn) > 1:
        axis.legend(fontsize=8)


def draw_bars(axis, drawn: list, template: str) -> None:
    """`x` is the value, `y` the category (DVC's bar_horizontal)."""
    file, x, y, rows = drawn[0]
    if template.endswith("_sorted"):
        rows = sorted(rows, key=lambda row: row[x])
    labels = [str(row[y]) for row in rows]
    values = [row[x] for row in rows]
    axis.barh(labels, values)
    for position, value in enumerate(values):  # a zero bar would be invisible without its number
        axis.annotate(f"{value:.3g}", (value, position), xytext=(3, 0), textcoords="offset points",
                      va="center", fontsize=8)
    axis.set_xlabel(x)


def draw_confusion(axis, drawn: list, template: str) -> None:
    """Counts of (`y` actual, `x` predicted), rows normalised for `confusion_normalized`."""
    file, x, y, rows = drawn[0]
    counts = Counter((row[y], row[x]) for row in rows)
    actual = sorted({a for a, _ in counts})
    predicted = sorted({p for _, p in counts} | set(actual))
    cells = [[counts[a, p] for p in predicted] for a in actual]
    if template.endswith("_normalized"):
        cells = [[c / (sum(line) or 1) for c in line] for line in cells]
    image = axis.imshow(cells, cmap="Blues")
    top = max(max(line) for line in cells) or 1
    for i, line in enumerate(cells):
        for j, value in enumerate(line):
            # white on the dark half of the colour scale, black on the light half
            axis.text(j, i, f"{value:.2g}", ha="center", va="center",
                      color="white" if value > top / 2 else "black")
    axis.set_xticks(range(len(predicted)), predicted)
    axis.set_yticks(range(len(actual)), actual)
    axis.set_xlabel(x)
    axis.set_ylabel(y)
    axis.figure.colorbar(image, ax=axis)


DRAW = {**{t: draw_lines for t in LINES}, **{t: draw_bars for t in BARS}, **{t: draw_confusion for t in CONFUSIONS}}


TITLE_CHARACTERS = 70  # a title line that fits the 7-inch figure at font size 10


def figure(plot_id: str, props: dict, root: Path):
    """The matplotlib figure of one plot definition."""
    from matplotlib.figure import Figure

    template = props.get("template", "linear")
    if template not in DRAW:
        raise ValueError(f"template {template!r} is not drawn here; drawn: {', '.join(sorted(DRAW))}")
    drawn = series(plot_id, props, root)
    plot = Figure(figsize=(7, 4.5), layout="constrained")  # room for long labels and the whole title
    axis = plot.add_subplot()
    DRAW[template](axis, drawn, template)
    # over the figure, not the axis, which long tick labels push right: the title stays whole
    plot.suptitle(textwrap.fill(props.get("title", plot_id), TITLE_CHARACTERS), fontsize=10)
    if "x_label" in props:
        axis.set_xlabel(props["x_label"])
    if "y_label" in props:
        axis.set_ylabel(props["y_label"])
    return plot


def render(plot_id: str, props: dict, root: Path, out: Path) -> Path:
    """One plot to `out/<id>.png` (the id's slashes become underscores)."""
    path = out / (Path(plot_id).with_suffix("").as_posix().replace("/", "_") + ".png")
    figure(plot_id, props, root).savefig(path, dpi=100, metadata={"Software": None})
    return path


def main(params, root: Path = Path(".")) -> list[Path]:
    """Every data plot of `dvc.yaml` to a PNG; a plot whose data is missing is named and skipped."""
    out = root / OUT
    remove(out)  # only this run's plots: none left over from a plot since removed
    out.mkdir(parents=True)
    written = []
    for plot_id, props in definitions(root / "dvc.yaml"):
        if Path(plot_id).suffix in IMAGES:
            print(f"  {plot_id}: already an image")
            continue
        try:
            written.append(render(plot_id, props, root, out))
            print(f"  {plot_id} -> {written[-1]}")
        except (OSError, KeyError, IndexError, ValueError) as error:
            print(f"  {plot_id}: not drawn: {type(error).__name__}: {error}")
    print(f"medadapt plots: {len(written)} PNG files in {out}/")
    return written
