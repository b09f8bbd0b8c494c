"""`medadapt <stage>`: runs one DVC stage (or a helper command) with the params of `params.yaml`.

    medadapt prepare | sft <dataset> | icl | rm | dpo | evaluate     # the dvc.yaml stages
    medadapt inspect | compare | bench                               # helper commands
    medadapt evaluate --set method=sft --set evaluate.batch_size=4   # ad-hoc overrides

Parses only the stage name, its argument, the params file and `--set key=value` overrides;
everything else comes from `params.yaml`, validated in `params.py`.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from pathlib import Path

from .data.records import DataError
from .models import ModelError
from .params import ParamsError, load_params
from .paths import SFT_DATASETS, stage_outputs

STAGES = {
    "prepare": "medadapt.stages.prepare",
    "sft": "medadapt.stages.sft",
    "icl": "medadapt.stages.icl",
    "rm": "medadapt.stages.rm",
    "dpo": "medadapt.stages.dpo",
    "evaluate": "medadapt.stages.evaluate",
}
COMMANDS = {
    "inspect": "medadapt.inspection",
    "compare": "medadapt.compare",
    "bench": "medadapt.bench",
    "rehearse": "medadapt.rehearse",
}


def parser() -> argparse.ArgumentParser:
    cli = argparse.ArgumentParser(prog="medadapt", description=__doc__.splitlines()[0])
    cli.add_argument("command", choices=[*STAGES, *COMMANDS])
    cli.add_argument("dataset", nargs="?", help=f"for `sft`: one of {', '.join(SFT_DATASETS)}")
    cli.add_argument("--params", default="params.yaml", help="params file (default: params.yaml)")
    cli.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                     help="override a param for this run only, e.g. --set method=sft")
    return cli


def run_command(args: argparse.Namespace) -> object:
    params = load_params(args.params, args.overrides)
    root = Path(".")
    if args.command in COMMANDS:
        return importlib.import_module(COMMANDS[args.command]).main(params, root, args.dataset)

    from transformers import set_seed

    from .artifacts import removed_on_failure

    set_seed(params.seed)
    module = importlib.import_module(STAGES[args.command])
    stage, kwargs = args.command, {}
    if args.command == "sft":
        if args.dataset not in SFT_DATASETS:
            raise ParamsError(f"medadapt sft: dataset {args.dataset!r} is not one of {', '.join(SFT_DATASETS)}")
        stage, kwargs = f"sft_{args.dataset}", {"dataset": args.dataset}
    try:
        with removed_on_failure(stage_outputs(stage)):
            return module.run(params, root=root, **kwargs)
    finally:
        end_distributed()


def end_distributed() -> None:
    """Under `accelerate launch`, leave the process group cleanly (NCCL warns otherwise)."""
    import torch.distributed

    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        run_command(args)
    except (ParamsError, DataError, ModelError) as error:
        print(f"medadapt {args.command}: error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
