"""Stage `check`: validate params.yaml, and that what it names is there, before any other stage runs.

    dvc repro check             # or: medadapt check

Every other stage depends on this stage's output, `.params-checked`, so DVC runs `check` first
and a bad value stops the pipeline before DVC removes any stage's outputs: every result stays in
place. The marker's bytes never change, so a valid edit re-runs only the stages that read the
edited keys. It depends on the params code alone (`params.py` and what it imports).

In a DVC project it also refuses data that DVC would not track: the folder `data.source` names
(and a `data.preferences.file` outside it) must be a dependency of dvc.yaml's `prepare` stage,
which `medadapt codedeps --write` makes it; else an edit of those files would leave `dvc status`
clean and `dvc repro` would keep results of data that has changed.

As the first process of every `dvc exp run`, it also makes git see the files DVC's stash wrote
back within one second (`gitindex.refresh`), so that `git status` lists an experiment's params.yaml
and `git checkout params.yaml` undoes it.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import yaml

from ..errors import report
from ..gitindex import refresh
from ..inputs import check_inputs
from ..params import ParamsError, add_arguments, load_params
from ..paths import PARAMS_CHECKED, source_folder

NOTE = ("params.yaml validated by `medadapt check`, the first dvc.yaml stage. Every other "
        "stage depends on this file; its bytes never change.\n")
# After a typo'd `dvc exp run -S`, params.yaml keeps the values DVC wrote there.
UNDO_HINT = ("\nTo undo an experiment's values: `git checkout params.yaml` (the committed ones) or "
             "`dvc exp apply <experiment>` (an experiment's values and results).")


def data_inputs(params) -> dict[str, str]:
    """What `prepare` reads from outside the code, path -> the param naming it: the data folder
    (none for the hub, whose revision is a param) and a pairs file outside that folder."""
    folder = source_folder(params.data.source)
    inputs = {} if folder is None else {folder.as_posix(): "data.source"}
    prefs = params.data.preferences
    if "file" in prefs.sources and not covered(prefs.file, inputs, Path(".")):
        inputs[prefs.file] = "data.preferences.file"
    return inputs


def covered(path: str, deps, root: Path) -> bool:
    """Whether `path` is one of `deps` or inside one (paths relative to `root`, or absolute)."""
    where = os.path.abspath(root / path)
    return any(where == d or where.startswith(d + os.sep) for d in (os.path.abspath(root / dep) for dep in deps))


def untracked_inputs(params, root: Path) -> dict[str, str]:
    """The data inputs that `root/dvc.yaml`'s prepare stage does not depend on ({} outside DVC)."""
    dvc_yaml = root / "dvc.yaml"
    if not dvc_yaml.is_file():
        return {}
    prepare = (yaml.safe_load(dvc_yaml.read_text()) or {}).get("stages", {}).get("prepare") or {}
    deps = [next(iter(d)) if isinstance(d, dict) else str(d) for d in prepare.get("deps", [])]
    return {path: param for path, param in data_inputs(params).items() if not covered(path, deps, root)}


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
    untracked = untracked_inputs(params, Path(args.params).parent)
    if untracked:
        named = ", ".join(f"{path} ({param})" for path, param in untracked.items())
        return report("check", ParamsError(
            f"{args.params}: dvc.yaml's prepare stage does not depend on {named}, so DVC would not see its "
            "files change: run `medadapt codedeps --write` (it adds them there), then `dvc repro`"))
    PARAMS_CHECKED.write_text(NOTE)
    print(f"{args.params}: OK")
    return 0


if __name__ == "__main__":
    sys.exit(main())
