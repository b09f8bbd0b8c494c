"""What each method costs beside what it scores, from the `cost` the stages record.

    results = group(collect(root))[0]["results"]   # method -> {metrics, items, source}
    costs = method_costs(results, root)              # method -> its training and eval cost
    cost_chart(results, costs, Path("reports/cost.png"))  # accuracy against training cost, per method
    medadapt costs [reports/cost]                    # both; with a prefix, also writes .md and .png

A method's training cost is the sum over the stages that made its model (`training_stages`):
none for `base` and `icl` (the `icl` stage only picks demonstrations, in seconds, and records no
cost), the curriculum up to its stage for `sft_*` and `sft`, and for `dpo` the curriculum (with
`dpo.init: sft`) plus `dpo`, plus `rm` and `pairs` when it trained on on-policy pairs (they
ranked and sampled them); for `grpo` the curriculum (with `grpo.init: sft`), `rm` when the reward
model was one of its rewards (`weights` in `metrics/grpo.json`), and `grpo`. Figures read, per stage: `train_seconds` (`seconds` for `pairs`),
`train_tokens` (tokens the trainer processed), `gpus` (0 on a CPU) and `peak_memory_mb` (GPU
allocator peak, or process RSS on a CPU); from `evaluate`: `questions_per_second` (answering
only, not judging) and `peak_memory_mb`. GPU-seconds are seconds x GPUs; they are None where a
stage's cost predates the `gpus` field, and stages with no recorded cost are listed as `missing`
(their share is not in the sums). Each result's costs are read at the revision its
`metrics/eval.json` came from, so a method's training and eval figures belong to one run.
"""

from __future__ import annotations

from pathlib import Path

from ..paths import METHOD_STAGES, SFT_STAGES, cost_file, metrics_file
from ..scoring.reports import HEADLINE, metric_at
from ._experiments import collect, group, json_at, revisions

ACCURACIES = [(label, path) for label, path, _, _ in HEADLINE if path[-1] == "accuracy"]


def stage_metrics(stage: str, rev: str | None = None, root: Path = Path(".")) -> dict:
    return json_at(rev, metrics_file(stage).as_posix(), root) or {}


def stage_cost(stage: str, rev: str | None = None, root: Path = Path(".")) -> dict:
    """The cost a stage recorded at `rev` (None: the workspace) in `reports/cost/<stage>.json`;
    {} when absent. The one reader of cost figures."""
    return json_at(rev, cost_file(stage).as_posix(), root) or {}


def training_stages(method: str, rev: str | None = None, root: Path = Path(".")) -> list[str]:
    """The stages whose training made the method's model, in pipeline order."""
    stage = METHOD_STAGES[method]
    if stage in SFT_STAGES:
        return list(SFT_STAGES[: SFT_STAGES.index(stage) + 1])
    if stage == "grpo":  # the curriculum it starts from, the reward model that scored its answers
        grpo = stage_metrics("grpo", rev, root)
        return ([*SFT_STAGES] if grpo.get("init", "sft") == "sft" else []) + \
            (["rm"] if "reward_model" in grpo.get("weights", {"reward_model": 1}) else []) + ["grpo"]
    if stage != "dpo":
        return []
    dpo = stage_metrics("dpo", rev, root)
    on_policy = "on_policy" in dpo.get("train_pairs", {})
    return ([*SFT_STAGES] if dpo.get("init", "sft") == "sft" or on_policy else []) + \
        (["rm", "pairs"] if on_policy else []) + ["dpo"]


def seconds(cost: dict) -> float:
    return cost.get("train_seconds", cost.get("seconds", 0.0))


def gpu_seconds(costs: list[dict]) -> float | None:
    """Seconds x GPUs summed; None when a cost does not say how many GPUs it used."""
    if any("gpus" not in c for c in costs):
        return None
    return round(sum(seconds(c) * c["gpus"] for c in costs), 2)


def cost_of(method: str, metrics: dict, rev: str | None, root: Path) -> dict:
    """One method's training cost (its stages summed) and evaluation cost."""
    stages = training_stages(method, rev, root)
    recorded = {s: stage_cost(s, rev, root) for s in stages}
    train = [c for c in recorded.values() if c]
    answering = stage_cost("evaluate", rev, root)
    per_question = 1 / answering["questions_per_second"] if answering.get("questions_per_second") else None
    return {
        "stages": stages,
        "missing": [s for s, c in recorded.items() if not c],
        "train_seconds": round(sum(seconds(c) for c in train), 2),
        "train_tokens": sum(c.get("train_tokens", 0) for c in train),
        "train_gpu_seconds": gpu_seconds(train),
        "train_peak_memory_mb": max((c.get("peak_memory_mb", 0) for c in train), default=None),
        "eval_seconds_per_question": round(per_question, 4) if per_question else None,
        "eval_gpu_seconds_per_question": round(per_question * answering["gpus"], 4)
        if per_question and "gpus" in answering else None,
        "eval_peak_memory_mb": answering.get("peak_memory_mb"),
    }


def method_costs(results: dict[str, dict], root: Path = Path("."), in_git: bool = True) -> dict[str, dict]:
    """method -> its costs, for `_experiments.collect`'s results ({method: {metrics, source, ...}}),
    each read at the revision (workspace, HEAD or experiment) its result came from; with `in_git`
    False (run folders) from each result's own folder."""
    rev_of = {name: rev for rev, name in revisions(root)} if in_git else {}
    # A result read from a run folder (`compare --runs`) has its costs in that folder's files.
    return {method: cost_of(method, result["metrics"], rev_of.get(result["source"]), result.get("root", root))
            for method, result in results.items()}


def training_axis(costs: dict[str, dict]) -> tuple[str, dict[str, float]]:
    """GPU-hours when every method's training ran with a known GPU count and one used a GPU;
    else wall-clock training seconds (a CPU run)."""
    gpu = {m: c["train_gpu_seconds"] for m, c in costs.items()}
    if all(v is not None for v in gpu.values()) and any(gpu.values()):
        return "training GPU-hours", {m: v / 3600 for m, v in gpu.items()}
    return "training wall seconds", {m: c["train_seconds"] for m, c in costs.items()}


def points(results: dict[str, dict], xs: dict[str, float], metric_path: tuple) -> dict[tuple, list[str]]:
    """(training cost, value, low, high) -> the methods there, in METHOD_STAGES order: methods at one
    point share one marker and one legend entry ("base = icl"), none hidden under another."""
    found: dict[tuple, list[str]] = {}
    for method in [m for m in METHOD_STAGES if m in results and m in xs]:
        cell = metric_at(results[method]["metrics"], metric_path)
        if cell is not None:
            found.setdefault((xs[method], cell["value"], cell["low"], cell["high"]), []).append(method)
    return found


def cost_figure(results: dict[str, dict], costs: dict[str, dict]):
    """One panel per accuracy metric: each method at (training cost, accuracy) with its interval."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    label, xs = training_axis(costs)
    panels = [(name, p) for name, p in ACCURACIES if any(metric_at(r["metrics"], p) for r in results.values())]
    figure, axes = plt.subplots(1, max(len(panels), 1), figsize=(max(6.0, 4.2 * len(panels)), 3.8), squeeze=False)
    for axis, (name, metric_path) in zip(axes[0], panels):
        for (x, value, low, high), methods in points(results, xs, metric_path).items():
            colour = f"C{list(METHOD_STAGES).index(methods[0])}"  # a method keeps its colour in every panel
            axis.errorbar(x, value, yerr=[[value - low], [high - value]], fmt="o", capsize=3, color=colour,
                          label=" = ".join(methods))
        axis.set_ylim(0, 1)
        axis.set_xlabel(label)
        axis.set_ylabel(f"{name} (95% Wilson interval)")  # accuracies are rates of 0/1 items
        axis.legend(fontsize=7, loc="upper right")  # a legend, not labels by the points: close points overlap
    figure.suptitle("medadapt: accuracy against training cost, one point per method", fontsize=10)
    figure.tight_layout()
    return figure


def cost_chart(results: dict[str, dict], costs: dict[str, dict], path: Path) -> None:
    import matplotlib.pyplot as plt

    figure = cost_figure(results, costs)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=100, metadata={"Software": None})
    plt.close(figure)


COLUMNS = [("train s", "train_seconds"), ("train tokens", "train_tokens"), ("train GPU-s", "train_gpu_seconds"),
           ("train peak MB", "train_peak_memory_mb"), ("eval s/question", "eval_seconds_per_question"),
           ("eval GPU-s/question", "eval_gpu_seconds_per_question"), ("eval peak MB", "eval_peak_memory_mb")]


def shown(value) -> str:
    if value is None:
        return ""
    return str(value) if isinstance(value, int) else f"{value:g}"


def cost_markdown(costs: dict[str, dict]) -> str:
    """The cost table: a row per method, its training stages and every figure (blank: unknown)."""
    lines = ["| method | stages | " + " | ".join(label for label, _ in COLUMNS) + " |",
             "|---|---|" + "---|" * len(COLUMNS)]
    for method in [m for m in METHOD_STAGES if m in costs]:
        cost = costs[method]
        stages = ", ".join(cost["stages"]) or "none"
        if cost["missing"]:
            stages += f" (no cost recorded: {', '.join(cost['missing'])})"
        cells = [shown(cost[key]) for _, key in COLUMNS]
        lines.append(f"| {method} | {stages} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main(params, root: Path = Path("."), out: Path | str | None = None) -> dict[str, dict]:
    """Print the cost table of the first comparable group; with `out` (e.g. `reports/cost`), also
    write `out`.md and the chart `out`.png. Nothing is written without it, so the tracked
    `reports/cost.*` change only on purpose (as with `compare`)."""
    groups = group(collect(root))
    # the comparable runs of the first table; of a method trained under several seeds, the first
    results = {m: replicates[0] for m, replicates in groups[0]["results"].items()} if groups else {}
    if not results:
        print("no evaluated method found: run `dvc repro` (and the method sweep in the README) first")
        return {}
    costs = method_costs(results, root)
    text = cost_markdown(costs)
    print(text)
    if out:
        prefix = Path(root) / out
        prefix.parent.mkdir(parents=True, exist_ok=True)
        prefix.with_suffix(".md").write_text(text)
        cost_chart(results, costs, prefix.with_suffix(".png"))
    return costs
