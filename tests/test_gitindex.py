"""gitindex.py: a tracked file rewritten at the same size within the second git's index recorded
(what `dvc exp run`'s stash does to params.yaml) is hidden from `git status` until refreshed."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from medadapt import gitindex

COMMITTED = "method: base                  # model that `evaluate` scores\n"
EXPERIMENT = "method: dp                    # model that `evaluate` scores\n"  # the same size


def git(root: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, check=True).stdout


@pytest.fixture
def racy(tmp_path) -> Path:
    """params.yaml committed, then rewritten at the same size 1 ns after the mtime git recorded, and
    the index written again a few seconds later (as dulwich and pygit2 do after a stash)."""
    git(tmp_path, "init", "-q")
    git(tmp_path, "config", "user.email", "ci@example.invalid")
    git(tmp_path, "config", "user.name", "ci")
    params = tmp_path / "params.yaml"
    params.write_text(COMMITTED)
    git(tmp_path, "add", "params.yaml")
    git(tmp_path, "commit", "-qm", "params")
    seconds, nanoseconds = gitindex.index_mtimes(tmp_path)[params]
    params.write_text(EXPERIMENT)
    os.utime(params, ns=(params.stat().st_atime_ns, seconds * gitindex.NS + (nanoseconds + 1) % gitindex.NS))
    index = tmp_path / ".git" / "index"
    os.utime(index, ns=(index.stat().st_atime_ns, (seconds + 5) * gitindex.NS))
    return tmp_path


def test_index_mtimes_reads_every_tracked_file(racy):
    (racy / "two words.txt").write_text("x")
    git(racy, "add", "two words.txt")
    mtimes = gitindex.index_mtimes(racy)
    assert set(mtimes) == {racy / "params.yaml", racy / "two words.txt"}
    assert mtimes[racy / "two words.txt"] == divmod((racy / "two words.txt").stat().st_mtime_ns, gitindex.NS)


def test_refresh_lets_git_see_and_undo_the_rewrite(racy):
    if git(racy, "status", "--porcelain"):
        pytest.skip("this git compares nanoseconds (built with USE_NSEC): it sees the rewrite unaided")
    git(racy, "checkout", "params.yaml")
    assert (racy / "params.yaml").read_text() == EXPERIMENT  # the defect: "Updated 0 paths"
    assert gitindex.refresh(racy) == [racy / "params.yaml"]
    assert (racy / "params.yaml").read_text() == EXPERIMENT  # content untouched
    assert git(racy, "status", "--porcelain") == " M params.yaml\n"
    git(racy, "checkout", "params.yaml")
    assert (racy / "params.yaml").read_text() == COMMITTED


def test_refresh_leaves_a_clean_tree_and_a_non_repository_alone(tmp_path):
    clean, outside = tmp_path / "clean", tmp_path / "outside"
    clean.mkdir()
    outside.mkdir()
    git(clean, "init", "-q")
    (clean / "a.txt").write_text("a")
    git(clean, "add", "a.txt")
    before = (clean / "a.txt").stat().st_mtime_ns
    assert gitindex.refresh(clean) == [] and (clean / "a.txt").stat().st_mtime_ns == before
    assert gitindex.index_mtimes(outside) == {} and gitindex.refresh(outside) == []
