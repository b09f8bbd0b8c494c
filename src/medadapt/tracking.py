"""DVCLive and W&B set-up, shared by every trainer.

DVCLive writes `dvclive/<stage>/metrics.json` and `dvclive/<stage>/plots/metrics/...tsv`, which
`dvc.yaml` declares as the stage's metrics and plots. W&B runs when `tracking.wandb` is
`offline` (writes `./wandb/offline-run-*`, no network) or `online`; the API key, if any, comes
from the environment and is never written anywhere by this project.
"""

from __future__ import annotations

import os
from pathlib import Path

from . import paths
from .artifacts import remove
from .runtime import is_main_process


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


def callbacks(stage: str, params, root: Path = Path(".")) -> list:
    """A DVCLive callback writing into `dvclive/<stage>/` (cleared first: one run per stage)."""
    if not params.tracking.dvclive or not is_main_process():  # one writer under several GPUs
        return []
    from dvclive import Live
    from transformers.integrations import DVCLiveCallback

    folder = dvclive_dir(stage, root)
    remove(folder)
    # dvcyaml=None: dvc.yaml declares these files itself; the stage must not rewrite it.
    live = Live(dir=str(folder), dvcyaml=None, save_dvc_exp=False, report=None)
    return [DVCLiveCallback(live=live)]


def finish_wandb() -> None:
    import sys

    if "wandb" in sys.modules:
        import wandb

        if wandb.run is not None:
            wandb.finish()
