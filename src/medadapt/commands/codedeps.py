"""`medadapt codedeps [--write]`: the project code each DVC stage runs, as `dvc.yaml` must list it.

    medadapt codedeps           # prints every stage's code deps
    medadapt codedeps --write   # rewrites the `src/` lines of each stage's deps in dvc.yaml, and prepare's data inputs

A stage runs `python -m medadapt.stages.<module>`: that module and everything it imports from
this package, at module level or inside a function, with the `__init__.py` of each package on
the way (Python runs them) and the package data files a module reads. `cli.py` is not among them:
dvc.yaml does not run it. `tests/commands/test_codedeps.py` checks that each stage in `dvc.yaml`
lists exactly these files, so a new import cannot leave a stage stale, and that training code is
no dependency of the stages that do not train.

`prepare` also depends on the data it reads (`stages.check.data_inputs`: the folder `data.source`
names, and a pairs file outside it), wherever they are: DVC tracks a folder outside the project
as an external dependency. `--write` sets those lines (marked DATA_MARK) from params.yaml, and
the `check` stage refuses params whose data prepare does not depend on.
"""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path

from .. import paths
from ..stages.check import data_inputs

PACKAGE = Path(__file__).resolve().parents[1]  # src/medadapt
SRC = PACKAGE.parent


def stage_module(stage: str) -> str:
    """The module a dvc.yaml stage runs (the three curriculum stages share `stages/sft.py`)."""
    return f"medadapt.stages.{paths.stage_module(stage)}"


def module_file(name: str) -> Path | None:
    base = SRC / Path(*name.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def imported_modules(name: str) -> set[str]:
    """Package modules that `name` imports anywhere in its source (absolute names)."""
    path = module_file(name)
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                parent = ".".join(parts[: len(parts) - node.level + 1])
                base = f"{parent}.{base}" if base else parent
            found.add(base)
            found |= {f"{base}.{alias.name}" for alias in node.names}  # `from . import paths`
    return {m for m in found if m.split(".")[0] == "medadapt" and module_file(m)}


def closure(*roots: str) -> set[str]:
    """Every package module that importing `roots` runs, the packages' `__init__` included."""
    seen, todo = set(), list(roots)
    while todo:
        name = todo.pop()
        if name not in seen:
            seen.add(name)
            parents = {".".join(name.split(".")[:i]) for i in range(2, name.count(".") + 1)}
            todo += (imported_modules(name) | {p for p in parents if module_file(p)}) - seen
    return seen


# Package data read at run time, by the module that reads it.
DATA_FILES = {
    "medadapt.scoring.hallucination": PACKAGE / "scoring" / "drug_names.txt",
    "medadapt.data.loaders": PACKAGE / "data" / "pubmedqa_test_pmids.txt",
}


def data_files(modules: set[str]) -> set[Path]:
    return {path for module, path in DATA_FILES.items() if module in modules}


def stage_code(stage: str) -> list[str]:
    """Repository-relative paths of every project file `medadapt <stage>` runs, sorted."""
    modules = closure(stage_module(stage))
    files = {module_file(m) for m in modules} | data_files(modules)
    files = {f for f in files if f.stat().st_size}  # empty __init__.py files change nothing
    return sorted(f.relative_to(SRC.parent).as_posix() for f in files)


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
