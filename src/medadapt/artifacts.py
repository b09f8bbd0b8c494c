"""Writing stage outputs whole or not at all: a failed run leaves the last good outputs in place."""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path

from .errors import UserError
from .paths import STAGE_LOCK


def write_json(path: Path, data: dict) -> None:
    """Metrics JSON with sorted keys, so re-runs are byte-identical and diffs are small."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    tmp.replace(path)


def tree_digest(path: Path) -> str | None:
    """sha256 of a file, or of a folder's files (their relative paths and bytes); None if absent."""
    path = Path(path)
    if not path.exists():
        return None
    digest = hashlib.sha256()
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    for file in files:
        digest.update(file.relative_to(path).as_posix().encode() + b"\0" + file.read_bytes())
    return digest.hexdigest()


def remove(path: Path) -> None:
    path = Path(path)
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()


@contextmanager
def atomic_dir(final: Path):
    """Yield a temporary folder beside `final`; it replaces `final` only if the block succeeds."""
    final = Path(final)
    tmp = final.with_name(final.name + ".partial")
    remove(tmp)
    tmp.mkdir(parents=True)
    try:
        yield tmp
    except BaseException:
        remove(tmp)
        raise
    remove(final)
    tmp.rename(final)


class StageLockedError(UserError, RuntimeError):
    """Another process runs a medadapt stage in this project folder; names the lock and its pid."""


_HELD: dict[Path, int] = {}  # run locks this process holds -> how many blocks hold each


@contextmanager
def stage_lock(root: Path = Path("."), wait: bool = False):
    """Hold the project folder's run lock (`.medadapt.lock`, an `fcntl.flock`) for the block.

    Without `wait`, a lock held by another process raises StageLockedError at once, naming the
    lock file and the holder's pid; with `wait`, the call blocks until the lock is free. It is
    re-entrant within one process (a stage that runs under the lock may take it again around its
    output swap). The kernel frees the lock when its holder exits: a killed run leaves none.
    """
    path = (Path(root) / STAGE_LOCK).resolve()
    if path in _HELD:
        _HELD[path] += 1
        try:
            yield path
        finally:
            _HELD[path] -= 1
        return
    with path.open("a+") as handle:  # closing the file frees the lock
        try:
            fcntl.flock(handle, fcntl.LOCK_EX if wait else fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "unknown"
            raise StageLockedError(f"{path}: another medadapt stage (pid {holder}) is running in {path.parent}; "
                                   "wait for it to finish (its lock is freed when that process exits)") from None
        handle.truncate(0)
        handle.write(f"{os.getpid()}\n")
        handle.flush()
        _HELD[path] = 1
        try:
            yield path
        finally:
            del _HELD[path]


@contextmanager
def staged_outputs(root: Path, outputs: list[Path]):
    """Yield a private staging folder where a stage writes its `outputs` (paths relative to
    `root`, at the same relative paths). When the block succeeds, each replaces its counterpart
    under `root`, all under the run lock, so that concurrent runs never mix their outputs: the
    last to finish wins whole. An output the block did not write is removed from `root`. A
    failed block leaves `root` as it was. The staging folder (`.staging-*.partial`, git-ignored,
    unique per run) is removed in every case.
    """
    root = Path(root)
    staging = Path(tempfile.mkdtemp(prefix=".staging-", suffix=".partial", dir=root))
    try:
        yield staging
        with stage_lock(root, wait=True):
            for output in outputs:
                remove(root / output)
                if (staging / output).exists():
                    (root / output).parent.mkdir(parents=True, exist_ok=True)
                    os.replace(staging / output, root / output)
    finally:
        remove(staging)
