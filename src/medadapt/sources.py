"""The project's own source files that a stage runs: the import closure of its module.

`dvc.yaml` lists them as each stage's code deps (`medadapt codedeps --write`), and `evaluate`
records their digest in its comparison key, so that `medadapt compare` never tables two runs of
different evaluation code side by side. A stage runs `python -m medadapt.stages.<module>`: that
module and everything it imports from this package, at module level or inside a function, with
the `__init__.py` of each package on the way (Python runs them) and the package data files a
module reads.
"""

from __future__ import annotations

import ast
import hashlib
from pathlib import Path

from . import paths

PACKAGE = Path(__file__).resolve().parent  # src/medadapt
SRC = PACKAGE.parent
# Package data read at run time, by the module that reads it.
DATA_FILES = {
    "medadapt.scoring.hallucination": "scoring/drug_names.txt",
    "medadapt.data.loaders": "data/pubmedqa_test_pmids.txt",
}


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


def data_files(modules: set[str]) -> set[Path]:
    return {SRC / "medadapt" / path for module, path in DATA_FILES.items() if module in modules}


def stage_code(stage: str) -> list[str]:
    """Repository-relative paths of every project file `medadapt <stage>` runs, sorted."""
    modules = closure(stage_module(stage))
    files = {module_file(m) for m in modules} | data_files(modules)
    files = {f for f in files if f.stat().st_size}  # empty __init__.py files change nothing
    return sorted(f.relative_to(SRC.parent).as_posix() for f in files)


def code_digest(stage: str) -> str:
    """sha256 of the stage's code files (their paths and bytes): equal exactly when the files
    dvc.yaml lists for the stage are equal."""
    digest = hashlib.sha256()
    for name in stage_code(stage):
        digest.update(name.encode() + b"\0" + (SRC.parent / name).read_bytes())
    return digest.hexdigest()
