"""`medadapt <command>`: the dvc.yaml stages and the helper commands, each with its own --help.

    medadapt check                                                  # validate params.yaml
    medadapt prepare | sft <dataset> | icl | rm | dpo | evaluate    # the dvc.yaml stages
    medadapt inspect [dataset] | compare | bench [target] | plots   # helper commands
    medadapt preset [name]                                          # a GPU preset's -S arguments
    medadapt evaluate --set method=sft --set evaluate.batch_size=4  # one-off overrides

Every command first validates `params.yaml` (or `--params`) with its `--set` overrides
(`params.py`); a parameter, data or model error prints the message and exits with status 2,
without a traceback. Unless exported, HF_HUB_OFFLINE, OMP_NUM_THREADS and TOKENIZERS_PARALLELISM
get defaults (README, Set-up).
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from pathlib import Path
from typing import Callable, NamedTuple

from . import paths
from .artifacts import StageLockedError
from .data.records import DataError
from .params import DATASETS, ParamsError, load_params
from .quiet import quiet_libraries

# bench.TARGETS, repeated because bench imports torch, which `--help` should not wait for
# (tests/test_cli.py checks that the two agree).
BENCH_TARGETS = ("eval", "train")
# After a typo'd `dvc exp run -S`, params.yaml keeps the values DVC wrote there.
UNDO_HINT = ("\nTo undo an experiment's values: `git checkout params.yaml` (the committed ones) or "
             "`dvc exp apply <experiment>` (an experiment's values and results).")
CHECKED_NOTE = ("params.yaml validated by `medadapt check`, the first dvc.yaml stage. Every other "
                "stage depends on this file; its bytes never change.\n")


# ---- the commands --------------------------------------------------------------------------------


def check(params, root: Path, args: argparse.Namespace) -> None:
    """Params are valid (load_params raised otherwise): say so and write the marker file.

    DVC runs `check` before any stage whose outputs it would remove, and stops the pipeline
    when it fails; as the marker never changes, a valid edit re-runs only the stages that read
    the edited keys."""
    (root / paths.PARAMS_CHECKED).write_text(CHECKED_NOTE)
    print(f"{args.params}: OK")


def run_stage(params, root: Path, args: argparse.Namespace) -> object:
    """One dvc.yaml stage: `medadapt.stages.<command>.run`, under the project's run lock."""
    from contextlib import nullcontext

    from transformers import set_seed

    from .artifacts import stage_lock
    from .runtime import is_main_process

    extra = {"dataset": args.dataset} if args.command == "sft" else {}
    set_seed(params.seed)
    module = importlib.import_module(f"medadapt.stages.{args.command}")
    # One stage at a time in a project folder (held by rank 0 for all the workers of a launch); a
    # failed run leaves the last good outputs, since every stage writes its files whole at the end.
    try:
        with stage_lock(root) if is_main_process() else nullcontext():
            return module.run(params, root=root, **extra)
    finally:
        end_distributed()


def helper(module: str, argument: str | None = None):
    """A helper command: `<module>.main(params, root[, args.<argument>])`."""

    def run(params, root: Path, args: argparse.Namespace) -> object:
        extra = (getattr(args, argument),) if argument else ()
        return importlib.import_module(module).main(params, root, *extra)

    return run


def compare(params, root: Path, args: argparse.Namespace) -> object:
    """`medadapt compare [PREFIX] [--runs DIR]`. Imported by name, as every helper is, so that the
    helpers' code is no dependency of the pipeline's stages (`codedeps` follows import statements)."""
    return importlib.import_module("medadapt.compare").main(params, root, args.out, args.runs)


class Command(NamedTuple):
    summary: str  # one line, in `medadapt --help` and atop the command's own help
    handler: Callable[[object, Path, argparse.Namespace], object]
    positional: tuple[str, dict] | None  # its name and add_argument options


COMMANDS = {name: Command(*spec) for name, spec in {
    "check": ("validate params.yaml (the first dvc.yaml stage); prints OK or the error",
              check, None),
    "prepare": ("stage: load, de-duplicate and split the datasets; write models/base/", run_stage, None),
    "sft": ("stage: one LoRA SFT curriculum stage", run_stage,
            ("dataset", {"choices": paths.SFT_DATASETS,
                         "help": "curriculum stage to train, in order: %(choices)s"})),
    "icl": ("stage: choose the in-context demonstrations", run_stage, None),
    "rm": ("stage: train the reward model", run_stage, None),
    "pairs": ("stage: sample on-policy preference pairs from the SFT model (when configured)", run_stage, None),
    "dpo": ("stage: align the SFT model with DPO", run_stage, None),
    "evaluate": ("stage: score `method` on the eval items", run_stage, None),
    "inspect": ("print formatted prompts and token-length statistics", helper("medadapt.inspection", "dataset"),
                ("dataset", {"nargs": "?", "choices": DATASETS,
                             "help": "one of %(choices)s (default: every prepared dataset)"})),
    "compare": ("table every evaluated method, with intervals and paired tests", compare,
                ("out", {"nargs": "?", "default": None, "metavar": "PREFIX",
                         "help": "also write PREFIX.md, PREFIX.json and PREFIX.png, e.g. reports/compare "
                                 "(default: print only)"})),
    "judges": ("measure the hallucination and safety rules and the answer parser on labelled answers", helper(
        "medadapt.scoring.validation"), None),
    "bench": ("measure speed, each fast path beside its baseline", helper("medadapt.bench", "target"),
              ("target", {"nargs": "?", "default": "eval", "choices": BENCH_TARGETS,
                          "help": "eval: scoring and generation; train: LoRA steps in fp32/8-bit/4-bit "
                                  "(real shapes: `medadapt rehearse`) (default: %(default)s)"})),
    "plots": ("render the dvc.yaml plots to PNG files (offline)", helper("medadapt.plots"), None),
    "rehearse": ("a dry run at a real model's shapes: the real stages on a random-init model, timed",
                 helper("medadapt.rehearse", "preset"),
                 ("preset", {"nargs": "?", "default": "llama-3.1-8b",
                             "help": "a preset of presets/ (its model shapes; its params are not applied) or tiny (default: %(default)s)"})),
    "scaling": ("learning curves of the experiment grid (train size, ICL k)", helper("medadapt.scaling"), None),
    "costs": ("what each evaluated method cost beside its accuracy", helper("medadapt.costs"), None),
    "preset": ("print a GPU preset's `-S key=value` arguments (no name: list the presets)",
               helper("medadapt.presets", "name"),
               ("name", {"nargs": "?", "default": None, "help": "a file name of presets/, without .yaml"})),
}.items()}


def parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--params", default="params.yaml", help="params file (default: %(default)s)")
    common.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a param for this run only, e.g. --set method=sft (repeatable)")
    cli = argparse.ArgumentParser(prog="medadapt", description=__doc__,
                                  formatter_class=argparse.RawDescriptionHelpFormatter,
                                  epilog="`medadapt <command> --help` describes a command.")
    commands = cli.add_subparsers(dest="command", required=True, metavar="command")
    for name, spec in COMMANDS.items():
        command = commands.add_parser(name, parents=[common], help=spec.summary, description=spec.summary)
        if spec.positional:
            command.add_argument(spec.positional[0], **spec.positional[1])
        if name == "compare":
            command.add_argument("--runs", metavar="DIR", help="compare the run folders under DIR (each a copy of a "
                                 "project's metrics/ and reports/, e.g. from a GPU machine) instead of experiments")
    return cli


# ---- environment and errors ----------------------------------------------------------------------


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
    if not needs_hub(params):
        # Nothing to download: without this, every model load first asks the hub for updates.
        os.environ.setdefault("HF_HUB_OFFLINE", "1")


def is_user_error(error: Exception) -> bool:
    """A parameter, data or model error: a message for the user, not a traceback."""
    if isinstance(error, (ParamsError, DataError, StageLockedError)):
        return True
    # A ModelError can only come from an imported medadapt.models; importing it here would load
    # torch into every `medadapt check`.
    models = sys.modules.get("medadapt.models")
    return models is not None and isinstance(error, models.ModelError)


def end_distributed() -> None:
    """Under `accelerate launch`, leave the process group cleanly (NCCL warns otherwise)."""
    import torch.distributed

    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()


def main(argv: list[str] | None = None) -> int:
    try:
        args = parser().parse_args(argv)
    except SystemExit as exit:  # --help (0) or a usage error (2), already printed by argparse
        return exit.code
    try:
        params = load_params(args.params, args.overrides)
        set_environment_defaults(params)
        if args.command in ("sft", "rm", "dpo"):
            from .launch import relaunch  # `compute.num_processes` > 1: the same command under accelerate

            if (launched := relaunch(params, args.command, argv)) is not None:
                return launched
        quiet_libraries()
        COMMANDS[args.command].handler(params, Path("."), args)
    except Exception as error:
        if not is_user_error(error):
            raise
        hint = UNDO_HINT if args.command == "check" and isinstance(error, ParamsError) else ""
        print(f"medadapt {args.command}: error: {error}{hint}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
