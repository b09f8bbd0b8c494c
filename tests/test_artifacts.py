"""artifacts.py: a stage's outputs are replaced whole, also when the process is killed mid-way.

Each kill test runs the write in a subprocess that SIGKILLs itself at the named moment, then
checks what a reader finds and that the next write leaves exactly its own outputs.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from medadapt.artifacts import atomic_dir, staged_outputs

from conftest import REPO, SIGKILL_SELF


def folder_files(folder: Path) -> dict[str, str]:
    return {p.relative_to(folder).as_posix(): p.read_text() for p in sorted(folder.rglob("*")) if p.is_file()}


def run_script(root: Path, script: str) -> int:
    """`script` (after `import os, signal`) in a Python process in `root`; its return code."""
    code = f"import os, signal, sys\nsys.path.insert(0, {str(REPO / 'src')!r})\n{script}"
    done = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True, check=False)
    return done.returncode


# Kills the process right after the first `remove` of the swap (once the block wrote the new
# folder): the old code removed the adapter folder there, to rename the new one in next.
KILL_IN_SWAP = f"""
from pathlib import Path
from medadapt import artifacts
removing = artifacts.remove
def remove(path):
    swapping = Path("adapter.partial/weights").exists()
    removing(path)
    if swapping:
        {SIGKILL_SELF}
artifacts.remove = remove
with artifacts.atomic_dir(Path("adapter")) as tmp:
    (tmp / "weights").write_text("new")
"""


def test_a_kill_during_the_folder_swap_leaves_a_whole_folder(tmp_path):
    (tmp_path / "adapter").mkdir()
    (tmp_path / "adapter/weights").write_text("old")
    assert run_script(tmp_path, KILL_IN_SWAP) == -9
    assert folder_files(tmp_path / "adapter") == {"weights": "new"}  # the old code: no folder at all
    with atomic_dir(tmp_path / "adapter") as tmp:  # the next run
        (tmp / "weights").write_text("next")
    assert folder_files(tmp_path / "adapter") == {"weights": "next"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["adapter"]


def test_a_swap_without_rename_exchange_is_completed_by_the_next_run(tmp_path, monkeypatch):
    """Where the kernel cannot exchange two folders (not Linux), the old one is renamed aside
    first; a kill between that and the new one's rename is completed by the next atomic_dir."""
    from medadapt import artifacts

    def unsupported(a, b):
        raise OSError(38, "Function not implemented")

    monkeypatch.setattr(artifacts, "exchange", unsupported)
    (tmp_path / "adapter").mkdir()
    (tmp_path / "adapter/weights").write_text("old")
    renaming = artifacts.os.rename

    def killed_after_the_first_rename(source, target):
        renaming(source, target)
        if Path(source).name == "adapter":
            raise KeyboardInterrupt  # stands for the kill: nothing after this line of the swap runs

    monkeypatch.setattr(artifacts.os, "rename", killed_after_the_first_rename)
    with pytest.raises(KeyboardInterrupt), atomic_dir(tmp_path / "adapter") as tmp:
        (tmp / "weights").write_text("new")
    monkeypatch.setattr(artifacts.os, "rename", renaming)
    assert not (tmp_path / "adapter").exists()  # the old folder aside, the new one not yet in
    with atomic_dir(tmp_path / "adapter") as tmp:  # the next run completes the swap first
        assert folder_files(tmp_path / "adapter") == {"weights": "new"}
        (tmp / "weights").write_text("next")
    assert folder_files(tmp_path / "adapter") == {"weights": "next"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["adapter"]


# Kills the process after the first of two outputs was swapped in.
KILL_BETWEEN_OUTPUTS = f"""
from pathlib import Path
from medadapt import artifacts
replacing = artifacts.os.replace
def replace(source, target):
    replacing(source, target)
    if Path(target) == Path("out/a.json"):
        {SIGKILL_SELF}
artifacts.os.replace = replace
with artifacts.staged_outputs(Path("."), [Path("out/a.json"), Path("out/b.json")]) as staging:
    for name in ("a", "b"):
        (staging / "out").mkdir(exist_ok=True)
        (staging / "out" / f"{{name}}.json").write_text("new")
"""


def test_a_kill_between_staged_outputs_is_rolled_forward_by_the_next_run(tmp_path):
    (tmp_path / "out").mkdir()
    for name in ("a", "b"):
        (tmp_path / f"out/{name}.json").write_text("old")
    assert run_script(tmp_path, KILL_BETWEEN_OUTPUTS) == -9
    assert folder_files(tmp_path / "out") == {"a.json": "new", "b.json": "old"}  # mixed, until...
    assert len(list(tmp_path.glob(".staging-*.partial"))) == 1
    with staged_outputs(tmp_path, [Path("out/c.json")]):  # ...any staged run in the folder starts
        pass
    assert folder_files(tmp_path / "out") == {"a.json": "new", "b.json": "new"}
    assert not list(tmp_path.glob(".staging-*.partial"))


def test_a_staging_folder_of_a_run_killed_while_writing_is_removed(tmp_path):
    script = f"""
from pathlib import Path
from medadapt import artifacts
with artifacts.staged_outputs(Path("."), [Path("out")]) as staging:
    (staging / "out").mkdir()
    {SIGKILL_SELF}
"""
    assert run_script(tmp_path, script) == -9
    assert len(list(tmp_path.glob(".staging-*.partial"))) == 1
    with staged_outputs(tmp_path, [Path("out")]) as staging:
        assert [p.name for p in tmp_path.glob(".staging-*.partial")] == [staging.name]  # the live one stays
        (staging / "out").mkdir()
    assert (tmp_path / "out").is_dir() and not list(tmp_path.glob(".staging-*.partial"))
