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
    """(rev, name) of the workspace, HEAD and every finished experiment, newest experiment first;
    only the workspace outside a git repository."""
    try:
        refs = git("for-each-ref", "--sort=-committerdate", "--format=%(objectname) %(refname)", "refs/exps",
                   root=root).split("\n")
    except (OSError, subprocess.CalledProcessError):
        return [(None, "workspace")]
    finished = [line.split(" ", 1) for line in refs if line and not any(k in line for k in ("/celery/", "/exec/"))]
    return [(None, "workspace"), ("HEAD", "HEAD")] + [(sha, ref.rsplit("/", 1)[-1]) for sha, ref in finished]


def when(rev: str | None, folder: Path) -> float:
    """When a result was made: its commit's time, or for the workspace and run folders the time
    `metrics/eval.json` was last written (seconds since the epoch)."""
    if rev is not None:
        try:
            return float(git("log", "-1", "--format=%ct", rev, root=folder).strip() or 0)
        except (OSError, subprocess.CalledProcessError):
            return 0.0
    path = folder / EVAL_METRICS
    return path.stat().st_mtime if path.exists() else 0.0


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


# Params that change neither what is trained nor what is scored, and the replicate seed: results
# that differ only in these are the same configuration.
NOT_CONFIGURATION = ("method", "train.seed", "tracking.", "rehearse.", "compare.")


def configuration(params: dict | None) -> dict | None:
    """The flattened params that define what a result measured, `NOT_CONFIGURATION` aside."""
    if params is None:
        return None
    return {k: v for k, v in flatten(params).items() if not k.startswith(NOT_CONFIGURATION)}


def varied(params: dict | None, baseline: dict | None) -> set[str]:
    """The configuration keys whose value differs from the baseline's (dotted names)."""
    mine, theirs = configuration(params) or {}, configuration(baseline) or {}
    return {k for k in mine.keys() | theirs.keys() if mine.get(k) != theirs.get(k)}


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
    """Every evaluated result: {method, metrics, items, source, key, root, time, params, train_seed, mixed}
    (`mixed`: why its files do not belong to one evaluate run, or None).
    With `runs`, the results of each sub-folder of `runs` instead (a copy of a project's
    params.yaml, metrics/ and reports/ made elsewhere, e.g. on a GPU machine)."""
    results = []
    places = [(None, name) for name in sorted(p.name for p in Path(runs).iterdir() if p.is_dir())] if runs else \
        revisions(root)
    for rev, name in places:
        folder = Path(runs) / name if runs else root
        files = {path.as_posix(): json_at(rev, path.as_posix(), folder) for path in RUN_FILES}
        metrics, items = files[EVAL_METRICS.as_posix()], files[EVAL_ITEMS.as_posix()]
        if not (metrics and items and metrics.get("method")):
            continue
        metrics = merge(metrics, files[EVAL_DETAILS.as_posix()] or {})
        results.append({"method": metrics["method"], "metrics": metrics, "items": items["items"], "source": name,
                        "key": metrics.get("comparison"), "root": folder, "time": when(rev, folder),
                        "params": yaml_at(rev, "params.yaml", folder), "rev": rev,
                        "train_seed": (metrics.get("replicate") or {}).get("train_seed"), "mixed": mixed_runs(files)})
    return results


def group(results: list[dict], reference: dict | None = None) -> list[dict]:
    """One group per comparison key, the keyless group last; in a group, one result per method and
    training seed (its replicates), the newest.

    Each group is {key, results: method -> [result per train seed, in seed order], left_out: [why]}.
    `reference` is the configuration the table stands for (HEAD's params; else the newest
    result's): a result whose files come from different evaluate runs
    is left out, saying why; a result whose configuration differs (a point of a budget grid, another learning
    rate) is left out, saying what differs. Of two results of one method and seed, the newer is
    shown and the older listed with its date and whether its scores differ; a result identical to
    the one shown (the workspace and HEAD, usually) is dropped silently.
    """
    results = sorted(results, key=lambda r: -r["time"])  # newest first: the shown ones
    if reference is None and results:
        reference = results[0]["params"]
    groups: dict[str | None, dict] = {}
    for result in results:
        fingerprint = None if result["key"] is None else json.dumps(result["key"], sort_keys=True)
        entry = groups.setdefault(fingerprint, {"key": result["key"], "shown": {}, "left_out": []})
        label = f"{result['source']} ({result['method']}"
        label += f", train seed {result['train_seed']})" if result["train_seed"] is not None else ")"
        differs = sorted(varied(result["params"], reference)) if result["params"] and reference else []
        if result.get("mixed"):
            entry["left_out"].append(f"{label}: {result['mixed']}")
            continue
        if differs:
            more = len(differs) - 3
            entry["left_out"].append(f"{label}: its params differ in " + ", ".join(differs[:3])
                                     + (f" and {more} more" if more > 0 else "") + " (budget grids: `medadapt scaling`)")
            continue
        slot = (result["method"], result["train_seed"])
        shown = entry["shown"].setdefault(slot, result)
        if shown is not result and shown["metrics"] != result["metrics"]:
            entry["left_out"].append(f"{label} of {_date(result['time'])}: older than {shown['source']} of "
                                     f"{_date(shown['time'])}, its scores differ")
    for entry in groups.values():
        by_method: dict[str, list] = {}
        for (method, _), result in sorted(entry.pop("shown").items(), key=lambda kv: str(kv[0][1])):
            by_method.setdefault(method, []).append(result)
        entry["results"] = by_method
    return sorted(groups.values(), key=lambda g: g["key"] is None)  # stable: keyed groups keep their order


def _date(seconds: float) -> str:
    import time

    return time.strftime("%Y-%m-%d %H:%M", time.localtime(seconds)) if seconds else "an unknown time"
