"""`medadapt <command>`: the dvc.yaml stages and the helper commands, each with its own --help.

    medadapt check                                                  # validate params.yaml
    medadapt prepare | sft <dataset> | icl | rm | pairs | dpo | grpo | evaluate   # the dvc.yaml stages
    medadapt results | compare | power | costs | scaling | judges   # read the results
    medadapt inspect | preset | rehearse | bench | plots            # before and around a run
    medadapt params | codedeps                                      # params.yaml and dvc.yaml, written from the code
    medadapt evaluate --set method=sft --set evaluate.batch_size=4  # one-off overrides

A stage command runs `medadapt.stages.<stage>.main`, exactly what `dvc.yaml` runs as `python -m
medadapt.stages.<stage>`; a helper command runs `medadapt.commands.<command>.main`. Both are
imported by name when the command runs, so this file imports no model code (`medadapt --help`
and `medadapt check` never load torch) and is no stage's dependency: editing it re-runs nothing.
Bad input prints one line on stderr and exits with status 2 (`errors.UserError`).
"""

from __future__ import annotations

import argparse
import importlib
import sys
from pathlib import Path
from typing import NamedTuple

from .entry import STAGE_ARGUMENTS, set_environment_defaults
from .errors import UserError, report
from .params import DATASETS, add_arguments, load_params
from .paths import STAGE_MODULES
from .quiet import quiet_libraries

# commands.bench.TARGETS, repeated because bench imports torch, which `--help` should not wait for
# (tests/commands/test_bench.py checks that the two agree).
BENCH_TARGETS = ("eval", "train")


class Command(NamedTuple):
    summary: str  # one line, in `medadapt --help` and atop the command's own help
    arguments: tuple[tuple[str, dict], ...] = ()  # add_argument(name, **options), passed to main in order


STAGE_SUMMARIES = {
    "check": "validate params.yaml (the first dvc.yaml stage); prints OK or the error",
    "prepare": "stage: load, de-duplicate and split the datasets; write models/base/",
    "sft": "stage: one LoRA SFT curriculum stage",
    "icl": "stage: choose the in-context demonstrations",
    "rm": "stage: train the reward model",
    "pairs": "stage: sample on-policy preference pairs from the SFT model (when configured)",
    "dpo": "stage: align the SFT model with DPO",
    "grpo": "stage: online RL (GRPO) from the SFT model, rewarded by correctness, format, the RM and the "
            "hallucination rule",
    "evaluate": "stage: score `method` on the eval items",
}

HELPERS = {
    "compare": Command("table every evaluated method, with intervals, paired tests and the verdict", (
        ("out", {"nargs": "?", "default": None, "metavar": "PREFIX",
                 "help": "also write PREFIX.md, PREFIX.json and PREFIX.png, e.g. reports/compare (default: print only)"}),
        ("--runs", {"metavar": "DIR", "help": "compare the run folders under DIR (each a copy of a project's "
                                              "metrics/ and reports/, e.g. from a GPU machine) instead of experiments"}))),
    "power": Command("what the results can detect, and the items and seeds a difference would need", (
        ("out", {"nargs": "?", "default": None, "metavar": "PREFIX",
                 "help": "also write PREFIX.md and PREFIX.json, e.g. reports/power (default: print only)"}),
        ("--runs", {"metavar": "DIR", "help": "plan from the run folders under DIR instead of the project's results"}),
        ("--seed-sd", {"type": float, "metavar": "SD", "help": "the SD of a trained method's mean over training "
                                                              "seeds (default: measured where a seed grid ran)"}))),
    "costs": Command("what each evaluated method cost beside its accuracy", (
        ("out", {"nargs": "?", "default": None, "metavar": "PREFIX",
                 "help": "also write PREFIX.md and PREFIX.png, e.g. reports/cost (default: print only)"}),)),
    "results": Command("one row per experiment: its method and headline rates, in 120 columns (the review table)"),
    "scaling": Command("learning curves of the experiment grid (train size, ICL k)"),
    "judges": Command("measure the answer parser and the hallucination and safety judges on their labelled sets"),
    "inspect": Command("print formatted prompts and token-length statistics", (
        ("dataset", {"nargs": "?", "choices": DATASETS,
                     "help": "one of %(choices)s (default: every prepared dataset)"}),)),
    "preset": Command("print a GPU preset's `-S key=value` arguments (no name: list the presets)", (
        ("name", {"nargs": "?", "default": None, "help": "a file name of presets/, without .yaml"}),)),
    "rehearse": Command("a dry run at a real model's shapes: the real stages on a random-init model, timed", (
        ("preset", {"help": "a preset of presets/ (its model shapes; its params are not applied), or tiny "
                            "(the test model's shapes, for a CPU)"}),)),
    "bench": Command("measure speed, each fast path beside its baseline", (
        ("target", {"nargs": "?", "default": "eval", "choices": BENCH_TARGETS,
                    "help": "eval: scoring and generation; train: LoRA steps in fp32/8-bit/4-bit "
                            "(real shapes: `medadapt rehearse`) (default: %(default)s)"}),)),
    "plots": Command("render the dvc.yaml plots to PNG files (offline)"),
    "params": Command("print params.yaml with every key's description (--write: rewrite the file so)", (
        ("--write", {"action": "store_true", "help": "rewrite params.yaml: its values, comments from params.py"}),)),
    "codedeps": Command("print each stage's code dependencies, as dvc.yaml must list them", (
        ("--write", {"action": "store_true", "help": "rewrite the src/ lines of each stage's deps in dvc.yaml"}),)),
}


def parser() -> argparse.ArgumentParser:
    cli = argparse.ArgumentParser(prog="medadapt", description=__doc__,
                                  formatter_class=argparse.RawDescriptionHelpFormatter,
                                  epilog="`medadapt <command> --help` describes a command.")
    commands = cli.add_subparsers(dest="command", required=True, metavar="command")
    for name in STAGE_MODULES:
        command = commands.add_parser(name, help=STAGE_SUMMARIES[name], description=STAGE_SUMMARIES[name])
        if name in STAGE_ARGUMENTS:
            command.add_argument(STAGE_ARGUMENTS[name][0], **STAGE_ARGUMENTS[name][1])
        add_arguments(command)
    for name, spec in HELPERS.items():
        command = commands.add_parser(name, help=spec.summary, description=spec.summary)
        for argument, options in spec.arguments:
            command.add_argument(argument, **options)
        add_arguments(command)
    return cli


def run_helper(name: str, args: argparse.Namespace) -> int:
    """`medadapt.commands.<name>.main(params, root, *its arguments)`, imported by name."""
    try:
        params = load_params(args.params, args.overrides)
        set_environment_defaults(params)
        quiet_libraries()
        extra = [getattr(args, argument.lstrip("-").replace("-", "_")) for argument, _ in HELPERS[name].arguments]
        importlib.import_module(f"medadapt.commands.{name}").main(params, Path("."), *extra)
    except UserError as error:
        return report(name, error)
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    try:
        args = parser().parse_args(argv)
    except SystemExit as exit:  # --help (0) or a usage error (2), already printed by argparse
        return exit.code
    if args.command in STAGE_MODULES:
        return importlib.import_module(f"medadapt.stages.{args.command}").main(argv[1:])
    return run_helper(args.command, args)


if __name__ == "__main__":
    sys.exit(main())
