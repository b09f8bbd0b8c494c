"""The results of every DVC experiment, read straight from git: what `compare`, `costs`, `scaling`
and `power` read (not a command itself).

    for rev, name in revisions(root):          # the workspace, HEAD, then each experiment
        params, metrics = yaml_at(rev, "params.yaml", root), json_at(rev, "metrics/eval.json", root)
    groups = group(collect(root))              # every evaluated result, one group per comparison key

A finished experiment is a commit under `refs/exps/<xx>/<baseline sha>/<name>`; `celery/` and
`exec/` refs there are DVC's queue bookkeeping, not results. `rev` is None for the workspace.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import yaml

from ..params import flatten
from ..paths import EVAL_DETAILS, EVAL_ITEMS, EVAL_METRICS, cost_file
from ..scoring.reports import merge


def git(*args: str, root: Path) -> str:
    return subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, check=True).stdout


def revisions(root: Path = Path(".")) -> list[tuple[str | None, str]]:
    """(rev, name) of the workspace, HEAD and every finished experiment, newest experiment first."""
    refs = git("for-each-ref", "--sort=-committerdate", "--format=%(objectname) %(refname)", "refs/exps",
               root=root).split("\n")
    finished = [line.split(" ", 1) for line in refs if line and not any(k in line for k in ("/celery/", "/exec/"))]
    return [(None, "workspace"), ("HEAD", "HEAD")] + [(sha, ref.rsplit("/", 1)[-1]) for sha, ref in finished]


def text_at(rev: str | None, path: str, root: Path = Path(".")) -> str | None:
    """A file's text in the workspace (rev None) or at a commit; None where it is absent."""
    try:
        return (root / path).read_text() if rev is None else git("show", f"{rev}:{path}", root=root)
    except (OSError, subprocess.CalledProcessError):
        return None


def json_at(rev: str | None, path: str, root: Path = Path(".")) -> dict | None:
    text = text_at(rev, path, root)
    try:
        return json.loads(text) if text else None
    except json.JSONDecodeError:
        return None


def yaml_at(rev: str | None, path: str, root: Path = Path(".")) -> dict | None:
    text = text_at(rev, path, root)
    try:
        return yaml.safe_load(text) if text else None
    except yaml.YAMLError:
        return None


def varied(params: dict | None, baseline: dict | None) -> set[str]:
    """The params keys whose value differs from the baseline's, `method` aside (dotted names)."""
    mine, theirs = flatten(params), flatten(baseline)
    return {k for k in mine.keys() | theirs.keys() if mine.get(k) != theirs.get(k)} - {"method"}


# The evaluate outputs a result is read from; each names the run that wrote it (`run`).
RUN_FILES = (EVAL_METRICS, EVAL_ITEMS, EVAL_DETAILS, cost_file("evaluate"))


def mixed_runs(files: dict[str, dict | None]) -> str | None:
    """Why the files of one result do not belong together (None when they do): a run killed
    between its writes, or files put back from different runs, name different runs. A file
    without a run id (written before evaluate recorded one) counts as a run of its own; absent
    files are not checked."""
    named = {path: data.get("run") for path, data in files.items() if data is not None}
    if len(set(named.values())) <= 1:
        return None
    return ("its files come from different evaluate runs ("
            + ", ".join(f"{path}: {run or 'no run id'}" for path, run in named.items())
            + "); run `medadapt evaluate` (or `dvc repro evaluate`) again")


def collect(root: Path = Path("."), runs: Path | None = None) -> list[dict]:
    """Every evaluated result, newest first: {method, metrics, items, source, key, varies, mixed}
    (`mixed`: why its files do not belong to one evaluate run, or None). With `runs`,
    the results are instead those of each sub-folder of `runs` (a copy of a project's
    metrics/ and reports/ made elsewhere, e.g. on a GPU machine), in name order."""
    results = []
    places = [(None, name) for name in sorted(p.name for p in Path(runs).iterdir() if p.is_dir())] if runs else \
        revisions(root)
    head = None if runs else yaml_at("HEAD", "params.yaml", root)
    for rev, name in places:
        base = Path(runs) / name if runs else root
        files = {path.as_posix(): json_at(rev, path.as_posix(), base) for path in RUN_FILES}
        metrics, items = files[EVAL_METRICS.as_posix()], files[EVAL_ITEMS.as_posix()]
        if metrics and items and metrics.get("method"):
            metrics = merge(metrics, files[EVAL_DETAILS.as_posix()] or {})
            mine = None if runs else yaml_at(rev, "params.yaml", root)
            results.append({"method": metrics["method"], "metrics": metrics, "items": items["items"],
                            "source": name, "key": metrics.get("comparison"), "root": base,
                            "varies": sorted(varied(mine, head)) if mine and head else [],
                            "mixed": mixed_runs(files)})
    return results


def group(results: list[dict]) -> list[dict]:
    """One group per comparison key, in order of first appearance, the keyless group last.

    Each group is {key, results: method -> newest result, left_out: [why]}. A result whose files
    come from different evaluate runs is left out. A result identical to the one shown (the
    workspace and HEAD, usually) is dropped silently. A result whose params
    differ from HEAD's in more than `method` (a point of a budget grid, another learning rate) is
    left out, so that each row is its method at HEAD's settings.
    """
    groups: dict[str | None, dict] = {}
    for result in results:
        fingerprint = None if result["key"] is None else json.dumps(result["key"], sort_keys=True)
        entry = groups.setdefault(fingerprint, {"key": result["key"], "results": {}, "left_out": []})
        if result.get("mixed"):
            entry["left_out"].append(f"{result['source']} ({result['method']}): {result['mixed']}")
            continue
        if result["varies"]:
            more = len(result["varies"]) - 3
            entry["left_out"].append(f"{result['source']} ({result['method']}): its params differ from HEAD's in "
                                     + ", ".join(result["varies"][:3]) + (f" and {more} more" if more > 0 else "")
                                     + " (budget grids: `medadapt scaling`)")
            continue
        shown = entry["results"].setdefault(result["method"], result)
        if shown is not result and shown["metrics"] != result["metrics"]:
            entry["left_out"].append(f"{result['source']} ({result['method']}): older than {shown['source']}, "
                                     "the result of that method shown")
    return sorted(groups.values(), key=lambda g: g["key"] is None)  # stable: keyed groups keep their order
