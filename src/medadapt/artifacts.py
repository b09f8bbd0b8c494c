"""Writing stage outputs whole or not at all: a failed or killed run leaves the last good outputs in
place, or the whole new ones, never a mix (a kill in the middle of a swap is completed by the next
run that writes there)."""

from __future__ import annotations

import ctypes
import errno
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


def content_id(*parts) -> str:
    """An id for the outputs of one run, from what they hold (JSON-able `parts`): every file of the
    run records it, so a reader can tell files of two runs apart, while a re-run with the same
    inputs writes the same bytes (a random id would not)."""
    text = json.dumps(parts, sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:16]


def remove(path: Path) -> None:
    path = Path(path)
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()


_AT_FDCWD, _RENAME_EXCHANGE = -100, 2  # linux/fcntl.h, linux/fs.h


def exchange(a: Path, b: Path) -> None:
    """Swap two paths in one step (Linux `renameat2(RENAME_EXCHANGE)`, which Python does not wrap);
    OSError where the system or the filesystem cannot."""
    renameat2 = getattr(ctypes.CDLL(None, use_errno=True), "renameat2", None)
    if renameat2 is None:
        raise OSError(errno.ENOSYS, "renameat2 is not available")
    if renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) != 0:
        code = ctypes.get_errno()
        raise OSError(code, os.strerror(code), str(a))


def _aside(final: Path) -> Path:
    return final.with_name(final.name + ".previous.partial")  # git-ignored, as every *.partial/


def replace_dir(new: Path, final: Path) -> None:
    """`new` takes the place of the folder `final`. The kernel exchanges the two, so that a kill
    leaves the old folder or the new one in place, never neither; the old one (now at `new`) is
    removed after. Without an exchange, the old one is renamed aside first: a kill between the two
    renames is completed by `complete_swap`, which every `atomic_dir` of `final` runs first."""
    if not final.exists():
        os.rename(new, final)
        return
    try:
        exchange(new, final)
    except OSError:
        os.rename(final, _aside(final))
        os.rename(new, final)
        remove(_aside(final))
        return
    remove(new)


def complete_swap(final: Path) -> None:
    """Finish a `replace_dir` killed between its two renames: the new folder (whole: it is renamed
    only after its block succeeded) goes in; the old one, set aside, goes."""
    aside, new = _aside(final), final.with_name(final.name + ".partial")
    if aside.exists():
        if not final.exists():
            os.rename(new, final)
        remove(aside)


@contextmanager
def atomic_dir(final: Path):
    """Yield a temporary folder beside `final`; it replaces `final` only if the block succeeds.
    A `.partial` folder left by a killed run is removed first."""
    final = Path(final)
    tmp = final.with_name(final.name + ".partial")
    complete_swap(final)
    remove(tmp)
    tmp.mkdir(parents=True)
    try:
        yield tmp
    except BaseException:
        remove(tmp)
        raise
    replace_dir(tmp, final)


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


OWNER = ".owner"  # in a staging folder: flock-ed by the run writing there while it runs
SWAPPING = ".swapping"  # in a staging folder: its outputs are whole and being swapped in (a JSON list)


@contextmanager
def staged_outputs(root: Path, outputs: list[Path]):
    """Yield a private staging folder where a stage writes its `outputs` (paths relative to
    `root`, at the same relative paths). When the block succeeds, they replace their counterparts
    under `root` as one unit, under the run lock, so that concurrent runs never mix their outputs:
    the last to finish wins whole. An output the block did not write is removed from `root`. A
    failed block leaves `root` as it was. The staging folder (`.staging-*.partial`, git-ignored,
    unique per run) is removed in every case; one that a killed run left is dealt with when the
    next staged run starts (`recover_staging`): finished if the kill came during the swap,
    removed otherwise.
    """
    root = Path(root)
    with stage_lock(root, wait=True):  # no other run is between creating its folder and locking it
        recover_staging(root)
        staging = Path(tempfile.mkdtemp(prefix=".staging-", suffix=".partial", dir=root))
        owner = (staging / OWNER).open("w")
        fcntl.flock(owner, fcntl.LOCK_EX)  # freed by the kernel when this process dies
    try:
        yield staging
        with stage_lock(root, wait=True):
            write_json(staging / SWAPPING, {"outputs": [Path(o).as_posix() for o in outputs]})
            swap_in(root, staging, outputs)
    finally:
        remove(staging)
        owner.close()


def swap_in(root: Path, staging: Path, outputs: list[Path]) -> None:
    """Move each staged output into `root`, the old one aside into `staging/.old`. Repeatable after
    a kill at any point: an output still in `staging` is not in yet; one that is gone from there is."""
    for output in map(Path, outputs):
        new, final, old = staging / output, root / output, staging / ".old" / output
        if not new.exists() and (old.exists() or not final.exists()):
            continue  # swapped in already, or an output this run did not write and that is gone
        if final.exists() or final.is_symlink():
            old.parent.mkdir(parents=True, exist_ok=True)
            os.replace(final, old)
        if new.exists():
            final.parent.mkdir(parents=True, exist_ok=True)
            os.replace(new, final)


def recover_staging(root: Path) -> None:
    """The staging folders of runs that were killed: one killed during its swap (its outputs are
    whole) is swapped in to the end; any other is removed. A folder whose owner still runs (its
    `.owner` lock is held) is left alone. Called under the run lock."""
    for staging in sorted(Path(root).glob(".staging-*.partial")):
        try:
            with (staging / OWNER).open("a") as owner:
                fcntl.flock(owner, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            continue  # a live run's
        except OSError:
            pass  # no owner file: killed right after creating the folder
        if (staging / SWAPPING).exists():
            swap_in(root, staging, json.loads((staging / SWAPPING).read_text())["outputs"])
        remove(staging)
