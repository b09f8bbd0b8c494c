"""Make git see the files that `dvc exp run` rewrote within the second git's index recorded.

`dvc exp run -S key=value` in the workspace stashes the workspace through dulwich, which writes
each changed tracked file back to HEAD's content and records that file's stat in git's index;
then pygit2 applies the stash and writes the experiment's content into the same file, usually
within the same second and, for params.yaml, at the same size (the comments keep their column,
so `method: base` and `method: dp` take as many bytes). Git guards against this ("racy git") by
re-reading a file whose mtime is not older than the index, but these libraries later rewrite the
index without marking such entries as git would, and git, which compares mtimes in whole seconds,
then trusts the stat: `git status` lists nothing and `git checkout params.yaml` answers "Updated
0 paths". A finished experiment is unaffected (DVC resets those entries); one that fails first,
as a typo that `check` stops does, leaves them so.

`refresh` finds every tracked file modified within the second its index entry records (same
second, other nanoseconds: a write that git cannot tell from the recorded one) and moves its
mtime past that second, so that git reads the file again. No content changes.
"""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

NS = 10**9


def index_mtimes(root: Path = Path(".")) -> dict[Path, tuple[int, int]]:
    """Each tracked file's mtime as git's index records it, (seconds, nanoseconds); {} outside a
    git work tree. From `git ls-files --debug -z`: a path, NUL, then five lines of stat data."""
    try:
        listing = subprocess.run(["git", "ls-files", "--debug", "-z"], cwd=root, capture_output=True, text=True,
                                 check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return {}
    parts = listing.split("\0")
    mtimes, path = {}, parts[0]
    for part in parts[1:]:
        *fields, next_path = part.split("\n", 5)  # ctime, mtime, dev/ino, uid/gid, size/flags; then the next path
        seconds, nanoseconds = fields[1].split("mtime:")[1].split(":")
        mtimes[root / path] = (int(seconds), int(nanoseconds))
        path = next_path
    return mtimes


def stale(root: Path = Path(".")) -> list[Path]:
    """Tracked files written again within the second their index entry records."""
    found = []
    for path, (seconds, nanoseconds) in index_mtimes(root).items():
        try:
            mtime = path.stat().st_mtime_ns
        except OSError:  # deleted: git sees that
            continue
        if mtime // NS == seconds and mtime % NS != nanoseconds:
            found.append(path)
    return found


def refresh(root: Path = Path(".")) -> list[Path]:
    """Move each stale file's mtime past the second its index entry records (to now, or the next
    second if now is still in it), so that git compares its content; the files it moved."""
    files = stale(root)
    for path in files:
        recorded = path.stat()
        later = max(time.time_ns(), (recorded.st_mtime_ns // NS + 1) * NS)
        os.utime(path, ns=(recorded.st_atime_ns, later))
    return files
