"""Files of every DVC experiment, read straight from git: what the helper commands compare.

    for rev, name in revisions(root):          # the workspace, HEAD, then each experiment
        params, metrics = yaml_at(rev, "params.yaml", root), json_at(rev, "metrics/eval.json", root)

A finished experiment is a commit under `refs/exps/<xx>/<baseline sha>/<name>`; `celery/` and
`exec/` refs there are DVC's queue bookkeeping, not results. `rev` is None for the workspace.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import yaml

from .params import flatten


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
