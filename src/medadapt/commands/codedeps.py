"""`medadapt codedeps [--write]`: the project code each DVC stage runs, as `dvc.yaml` must list it.

    medadapt codedeps           # prints every stage's code deps
    medadapt codedeps --write   # rewrites the `src/` lines of each stage's deps in dvc.yaml, and prepare's data inputs

What a stage runs is `sources.stage_code` (its module's import closure); `cli.py` is not among
them: dvc.yaml does not run it. `tests/commands/test_codedeps.py` checks that each stage in `dvc.yaml`
lists exactly these files, so a new import cannot leave a stage stale, and that training code is
no dependency of the stages that do not train.

`prepare` also depends on the data it reads (`stages.check.data_inputs`: the folder `data.source`
names, and a pairs file outside it), wherever they are: DVC tracks a folder outside the project
as an external dependency. `--write` sets those lines (marked DATA_MARK) from params.yaml, and
the `check` stage refuses params whose data prepare does not depend on.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from .. import paths
from ..sources import stage_code
from ..stages.check import data_inputs

DATA_MARK = "  # data input: `medadapt codedeps --write` sets it from params.yaml"


def dep_line(path: str) -> str:
    """A deps entry; a path YAML would misread (a `#`, a leading `*`, spaces...) is quoted."""
    plain = re.fullmatch(r"[\w./~+-][\w./~+@=-]*", path) is not None
    return f"      - {path if plain else json.dumps(path)}"


def rewrite_deps(text: str, data: list[str] = ()) -> str:
    """dvc.yaml's text with each stage's `src/` deps replaced by `stage_code`, in place of the
    first one, and prepare's data inputs (lines marked DATA_MARK) by `data`, right after its code;
    every other line (other deps, params, outs, comments) is kept as it is."""
    out, stage, in_deps, written = [], None, False, False
    for line in text.split("\n"):
        name = re.match(r"^  ([\w-]+):$", line)
        if name:
            stage, in_deps = name.group(1), False
        elif line.startswith("    ") and not line.startswith("     "):
            in_deps, written = line == "    deps:", False
        if in_deps and line.endswith(DATA_MARK):
            continue
        if in_deps and line.startswith("      - src/"):
            if not written:
                out += [f"      - {path}" for path in stage_code(stage)]
                out += [dep_line(path) + DATA_MARK for path in data] if stage == "prepare" else []
                written = True
            continue
        out.append(line)
    return "\n".join(out)


def main(params, root: Path = Path("."), write: bool = False) -> dict[str, list[str]]:
    """Print every stage's code deps; with `write`, rewrite dvc.yaml's `src/` deps lines."""
    deps = {stage: stage_code(stage) for stage in paths.STAGES}
    data = list(data_inputs(params))
    if write:
        dvc_yaml = Path(root) / "dvc.yaml"
        dvc_yaml.write_text(rewrite_deps(dvc_yaml.read_text(), data))
        print(f"{dvc_yaml}: code deps and prepare's data inputs ({', '.join(data) or 'none'}) rewritten")
    else:
        for stage, files in deps.items():
            print(f"{stage}:")
            print("\n".join(f"  - {path}" for path in files + (data if stage == "prepare" else [])))
    return deps
