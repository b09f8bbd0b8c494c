"""DVCLive and W&B set-up, shared by every trainer.

DVCLive writes `dvclive/<stage>/metrics.json` and `dvclive/<stage>/plots/metrics/...tsv`, which
`dvc.yaml` declares as the stage's metrics and plots, from the trainer's log once it finished. W&B runs when `tracking.wandb` is
`offline` (writes `./wandb/offline-run-*`, no network) or `online`; the API key, if any, comes
from the environment and is never written anywhere by this project.

With W&B on, a stage also logs its outputs to its run: a training stage calls
`log_stage_artifacts` after writing its adapter and metrics (artifacts of type `model` and
`metrics`), `evaluate` calls `log_eval_table` with its per-item samples (a `wandb.Table`) and
`log_stage_artifacts` with its metrics file; each then calls `finish_wandb`.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from . import paths
from .artifacts import atomic_dir
from .params import dump_params


def dvclive_dir(stage: str, root: Path = Path(".")) -> Path:
    return root / paths.dvclive_dir(stage)


def run_name(stage: str, params) -> str:
    return f"{stage}-{params.method}-{params.model.base.replace('/', '_')}-seed{params.train.seed}"


def report_to(params) -> list[str]:
    """Integrations for the trainer's `report_to`; DVCLive goes in as a callback instead."""
    return [] if params.tracking.wandb == "disabled" else ["wandb"]


def configure_wandb(params) -> None:
    """W&B reads its mode and project from the environment when the trainer starts: set them."""
    if params.tracking.wandb == "disabled":
        return
    os.environ["WANDB_MODE"] = params.tracking.wandb
    os.environ.setdefault("WANDB_PROJECT", params.tracking.wandb_project)
    os.environ.setdefault("WANDB_SILENT", "true")


# Figures that differ between identical runs stay out of the curves git tracks.
NOISY = ("runtime", "_per_second", "preparation_time", "step_time")  # step_time: GRPOTrainer's wall seconds per step


def write_curves(stage: str, history: list[dict], root: Path = Path(".")) -> None:
    """`dvclive/<stage>/`: every logged figure per trainer step, written with DVCLive from the
    trainer's whole log history once training finished. Written at the end (not live), so that a
    resumed run's curve is whole, a failed run leaves the last one in place, and re-runs of the
    same run, resumed or not, are byte-identical."""
    from dvclive.plots import Metric
    from dvclive.utils import standardize_metric_name

    from dvclive import Live

    with atomic_dir(dvclive_dir(stage, root)) as folder:
        # dvcyaml=None: dvc.yaml declares these files itself; the stage must not rewrite it.
        live = Live(dir=str(folder), dvcyaml=None, save_dvc_exp=False, report=None)
        for row in history:
            live.step = row.get("step", 0)
            # Sorted: rows restored from a checkpoint come with sorted keys, new rows in logging
            # order, and the summary's key order follows the first row that logs each figure.
            for key, value in sorted(row.items()):
                if key != "step" and Metric.could_log(value) and not any(n in key for n in NOISY):
                    live.log_metric(standardize_metric_name(key, "dvclive.huggingface"), value)
            live.make_summary()
        live.end()


def finish_wandb() -> None:
    import sys

    if "wandb" in sys.modules:
        import wandb

        if wandb.run is not None:
            wandb.finish()


def wandb_run(stage: str, params):
    """The open W&B run (the trainer's), or a new one for a stage without a trainer; None when
    W&B is off, and on every rank but the first (one writer under several GPUs)."""
    from .runtime import is_main_process

    if params.tracking.wandb == "disabled" or not is_main_process():
        return None
    configure_wandb(params)
    import wandb

    if wandb.run is None:
        wandb.init(project=params.tracking.wandb_project, name=run_name(stage, params), job_type=stage,
                   mode=params.tracking.wandb, config=dump_params(params))
    return wandb.run


def log_stage_artifacts(stage: str, adapter_dir: Path | None, metrics_file: Path, params) -> None:
    """The stage's adapter folder (artifact `<stage>-adapter`, type `model`) and metrics file
    (`<stage>-metrics`, type `metrics`); W&B numbers the versions of each name."""
    run = wandb_run(stage, params)
    if run is None:
        return
    import wandb

    metadata = {"stage": stage, "method": params.method, "base": params.model.base,
                "quantization": params.model.quantization, "seed": params.train.seed}
    if adapter_dir is not None:
        model = wandb.Artifact(f"{stage}-adapter", type="model", metadata=metadata)
        model.add_dir(str(adapter_dir))
        run.log_artifact(model)
    metrics = wandb.Artifact(f"{stage}-metrics", type="metrics", metadata=metadata)
    metrics.add_file(str(metrics_file))
    run.log_artifact(metrics)


def log_eval_table(samples: list[dict], params) -> None:
    """`evaluate`'s per-item samples (`reports/eval_samples.jsonl`) as the table `eval_samples`,
    one row per item, one column per key; nested values as JSON text."""
    run = wandb_run("evaluate", params)
    if run is None:
        return
    import wandb

    columns = list(dict.fromkeys(key for sample in samples for key in sample))
    rows = [[table_cell(sample.get(column)) for column in columns] for sample in samples]
    # Safety prompts and questions fill different columns: a column may hold None and a value.
    run.log({"eval_samples": wandb.Table(columns=columns, data=rows, allow_mixed_types=True)})


def table_cell(value):
    return json.dumps(value, sort_keys=True) if isinstance(value, (dict, list)) else value
