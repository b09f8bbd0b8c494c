"""The package's architecture, as docs/layout.md draws it: floors, no import circle, and no
training code under the stages that do not train."""

from __future__ import annotations

import pytest

from medadapt import paths
from medadapt.sources import SRC, imported_modules, stage_code

# Lowest first: a module may import its own floor and the floors below it, never one above.
FLOORS = [
    {"errors", "paths", "params", "quiet", "artifacts", "runtime", "tracking", "entry", "sources", "gitindex",
     "inputs"},  # the ground floor
    {"data"}, {"modeling"}, {"scoring"}, {"training"}, {"stages"}, {"commands"}, {"cli"},
]
MODULES = sorted(".".join(p.relative_to(SRC).with_suffix("").parts) for p in (SRC / "medadapt").rglob("*.py")
                 if p.name != "__init__.py")


def floor(module: str) -> int:
    top = module.split(".")[1]
    return next(i for i, names in enumerate(FLOORS) if top in names)


def graph() -> dict[str, set[str]]:
    return {m: {d for d in imported_modules(m) if d in MODULES and d != m} for m in MODULES}


def test_every_module_has_a_floor():
    for module in MODULES:
        floor(module)  # raises StopIteration for a module outside every floor


def test_no_arrow_goes_up_a_floor():
    upward = [(m, d) for m, deps in graph().items() for d in deps if floor(d) > floor(m)]
    assert upward == []


def cycles(edges: dict[str, set[str]]) -> list[set[str]]:
    """Strongly connected components of more than one module (Tarjan's algorithm)."""
    index, low, stack, found, counter = {}, {}, [], [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        for w in edges[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = set()
            while True:
                w = stack.pop()
                component.add(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(component)

    for v in edges:
        if v not in index:
            visit(v)
    return found


def test_cycles_finds_a_circle():
    assert cycles({"a": {"b"}, "b": {"a"}, "c": {"a"}}) == [{"a", "b"}]


def test_no_import_circle():
    assert cycles(graph()) == []


# An edit of any of these re-runs only the training stages (and what depends on their adapters).
TRAINING_CODE = {f"src/medadapt/training/{name}.py" for name in ("run", "arguments", "checkpoints", "launch",
                                                                  "distributed", "speed")}


@pytest.mark.parametrize("stage", ["check", "prepare", "icl", "evaluate"])
def test_training_code_is_no_dependency_of_a_stage_that_does_not_train(stage):
    assert not TRAINING_CODE & set(stage_code(stage)), stage
    # nor any other module of training/ (grpo's rewards call evaluate's judges, never the reverse)
    assert not [f for f in stage_code(stage) if f.startswith("src/medadapt/training/")], stage


def test_training_stages_do_depend_on_it():
    for stage in paths.TRAINING_STAGES:
        assert TRAINING_CODE <= set(stage_code(stage)), stage


def test_cli_and_helper_commands_are_no_stage_dependency():
    for stage in paths.STAGES:
        code = stage_code(stage)
        assert "src/medadapt/cli.py" not in code, stage
        assert not [f for f in code if f.startswith("src/medadapt/commands/")], stage
