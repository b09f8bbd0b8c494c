"""How every dvc.yaml stage starts: `python -m medadapt.stages.<stage> [argument] [--params F] [--set K=V]`.

Each stage module ends with

    def main(argv=None) -> int:
        return entry.main("icl", run, argv)

    if __name__ == "__main__":
        sys.exit(main())

and `medadapt <stage>` (cli.py) calls the same `main`. It reads the params file with its `--set`
overrides, sets the environment defaults a first run needs, runs the stage under the project's
run lock with the seed set, and reports bad input (`errors.UserError`) as one line on stderr with
exit status 2, without a traceback. This module imports neither torch nor any model code at
module level, so the environment is set before they load; it is every stage's dependency and
nothing else's.
"""

from __future__ import annotations

import argparse
import os
import sys
from contextlib import nullcontext
from pathlib import Path
from typing import Callable

from .errors import UserError, report
from .params import add_arguments, load_params
from .paths import SFT_DATASETS
from .quiet import quiet_libraries

# The stages that take a positional argument: its name and argparse options (cli.py shows the same).
STAGE_ARGUMENTS = {
    "sft": ("dataset", {"choices": SFT_DATASETS, "help": "curriculum stage to train, in order: %(choices)s"}),
}


def stage_parser(stage: str, add_help: bool = True) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=f"medadapt {stage}", add_help=add_help)
    if stage in STAGE_ARGUMENTS:
        name, options = STAGE_ARGUMENTS[stage]
        parser.add_argument(name, **options)
    add_arguments(parser)
    return parser


# ---- environment defaults -------------------------------------------------------------------


def usable_cpus() -> int:
    """CPUs this process may use: its affinity mask, capped by a cgroup v2 CPU quota (a
    container's `--cpus`), which OpenMP does not see and would oversubscribe."""
    count = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    try:
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()
        if quota != "max":
            count = min(count, max(1, int(quota) // int(period)))
    except (OSError, ValueError):
        pass
    return count


def needs_hub(params) -> bool:
    """Whether a command may download: a hub base model or `data.source: hub`."""
    base = params.model.base
    local_base = base.startswith("builtin:") or Path(base).is_dir()
    return params.data.source == "hub" or not local_base


def set_environment_defaults(params) -> None:
    """Defaults a first run needs, set before torch and huggingface_hub read them; a value the
    user exported always wins."""
    os.environ.setdefault("OMP_NUM_THREADS", str(usable_cpus()))
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    if not needs_hub(params):
        # Nothing to download: without this, every model load first asks the hub for updates.
        os.environ.setdefault("HF_HUB_OFFLINE", "1")


# ---- a stage's process ----------------------------------------------------------------------


def main(stage: str, run: Callable, argv: list[str] | None = None,
         before: Callable[[object, list[str]], int | None] | None = None, training: bool = False) -> int:
    """Parse `argv`, load the params and run `run(params, root, [argument])`; the exit status.

    `before(params, argv)` may run the stage elsewhere and return that exit status (the training
    stages re-run themselves under `accelerate launch` when `compute.num_processes` > 1). A
    `training` stage is seeded with `train.seed`, every other with `data.seed` (issue 20: the eval
    items and everything that scores them stay fixed while training is replicated)."""
    argv = sys.argv[1:] if argv is None else list(argv)
    try:
        args = stage_parser(stage).parse_args(argv)
    except SystemExit as exit:  # --help (0) or a usage error (2), already printed by argparse
        return exit.code
    extra = {name: getattr(args, name) for name, _ in [STAGE_ARGUMENTS[stage]]} if stage in STAGE_ARGUMENTS else {}
    try:
        params = load_params(args.params, args.overrides)
        set_environment_defaults(params)
        if before is not None and (code := before(params, argv)) is not None:
            return code
        quiet_libraries()
        run_locked(run, params, extra, params.train.seed if training else params.data.seed)
    except UserError as error:
        return report(stage, error)
    return 0


def run_locked(run: Callable, params, extra: dict, seed: int) -> None:
    """`run` with the seed set, under the project's run lock (held by rank 0 for all the workers
    of a launch): one stage at a time in a project folder. A failed run leaves the last good
    outputs, since every stage writes its files whole at the end."""
    from transformers import set_seed

    from .artifacts import stage_lock
    from .runtime import is_main_process

    set_seed(seed)
    try:
        with stage_lock(Path(".")) if is_main_process() else nullcontext():
            run(params, root=Path("."), **extra)
    finally:
        end_distributed()


def end_distributed() -> None:
    """Under `accelerate launch`, leave the process group cleanly (NCCL warns otherwise)."""
    import torch.distributed

    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()
