"""Writing stage outputs whole or not at all: a failed run leaves the last good outputs in place."""

from __future__ import annotations

import json
import shutil
from contextlib import contextmanager
from pathlib import Path


def write_json(path: Path, data: dict) -> None:
    """Metrics JSON with sorted keys, so re-runs are byte-identical and diffs are small."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    tmp.replace(path)


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
