"""DVCLive and W&B set-up, shared by every trainer.

DVCLive writes `dvclive/<stage>/metrics.json` and `dvclive/<stage>/plots/metrics/...tsv`, which
`dvc.yaml` declares as the stage's metrics and plots, from the trainer's log once it finished. W&B runs when `tracking.wandb` is
`offline` (writes `./wandb/offline-run-*`, no network) or `online`; the API key, if any, comes
from the environment and is never written anywhere by this project.
"""

from __future__ import annotations

import os
from pathlib import Path

from . import paths
from .artifacts import atomic_dir


def dvclive_dir(stage: str, root: Path = Path(".")) -> Path:
    return root / paths.dvclive_dir(stage)


def run_name(stage: str, params) -> str:
    return f"{stage}-{params.method}-{params.model.base.replace('/', '_')}-seed{params.seed}"


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
NOISY = ("runtime", "_per_second", "preparation_time")


def write_curves(stage: str, history: list[dict], root: Path = Path(".")) -> None:
    """`dvclive/<stage>/`: every logged figure per trainer step, written with DVCLive from the
    trainer's whole log history once training finished. Written at the end (not live), so that a
    resumed run's curve is whole, a failed run leaves the last one in place, and re-runs of the
    same run are byte-identical."""
    from dvclive import Live
    from dvclive.plots import Metric
    from dvclive.utils import standardize_metric_name

    with atomic_dir(dvclive_dir(stage, root)) as folder:
        # dvcyaml=None: dvc.yaml declares these files itself; the stage must not rewrite it.
        live = Live(dir=str(folder), dvcyaml=None, save_dvc_exp=False, report=None)
        for row in history:
            live.step = row.get("step", 0)
            for key, value in row.items():
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
