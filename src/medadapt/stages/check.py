"""Stage `check`: validate params.yaml, and that what it names is there, before any other stage runs.

    dvc repro check             # or: medadapt check

Every other stage depends on this stage's output, `.params-checked`, so DVC runs `check` first
and a bad value stops the pipeline before DVC removes any stage's outputs: every result stays in
place. The marker's bytes never change, so a valid edit re-runs only the stages that read the
edited keys. It depends on the params code alone (`params.py` and what it imports).

As the first process of every `dvc exp run`, it also makes git see the files DVC's stash wrote
back within one second (`gitindex.refresh`), so that `git status` lists an experiment's params.yaml
and `git checkout params.yaml` undoes it.
"""

from __future__ import annotations

import argparse
import sys

from ..errors import report
from ..gitindex import refresh
from ..inputs import check_inputs
from ..params import ParamsError, add_arguments, load_params
from ..paths import PARAMS_CHECKED

NOTE = ("params.yaml validated by `medadapt check`, the first dvc.yaml stage. Every other "
        "stage depends on this file; its bytes never change.\n")
# After a typo'd `dvc exp run -S`, params.yaml keeps the values DVC wrote there.
UNDO_HINT = ("\nTo undo an experiment's values: `git checkout params.yaml` (the committed ones) or "
             "`dvc exp apply <experiment>` (an experiment's values and results).")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="medadapt check", description=__doc__.splitlines()[0])
    add_arguments(parser)
    try:
        args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    except SystemExit as exit:
        return exit.code
    refresh()  # before validating: a rejected value is what the user will want to undo
    try:
        params = load_params(args.params, args.overrides)
        check_inputs(params, source=args.params, overrides=args.overrides)
    except ParamsError as error:
        # The undo is for values DVC wrote into the file; a bad `--set` left the file as it was.
        return report("check", ParamsError(f"{error}{UNDO_HINT}") if error.in_file else error)
    PARAMS_CHECKED.write_text(NOTE)
    print(f"{args.params}: OK")
    return 0


if __name__ == "__main__":
    sys.exit(main())
