"""training/checkpoints.py: which checkpoint a killed run resumes from, and what it trusts."""

from __future__ import annotations

import json
from pathlib import Path

from medadapt.training.checkpoints import FINGERPRINT, resume_checkpoint


class _Accelerator:
    is_main_process = True

    def wait_for_everyone(self):
        pass


def checkpoint(folder: Path, step: int, state: str | None = None) -> Path:
    """A trainer checkpoint folder; `state` is its trainer_state.json (None: not written yet)."""
    path = folder / f"checkpoint-{step}"
    path.mkdir(parents=True)
    (path / "adapter_model.safetensors").write_bytes(b"weights")
    if state is not None:
        (path / "trainer_state.json").write_text(state)
    return path


def stamped(folder: Path, stamp: str = "abc") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / FINGERPRINT).write_text(json.dumps({"fingerprint": stamp}) + "\n")
    return folder


def test_a_checkpoint_killed_while_saving_is_skipped_and_removed(tmp_path):
    """The trainer writes trainer_state.json last: a folder without it (or with half of it) was
    being saved when the run was killed. Resuming from it failed: FileNotFoundError, every run."""
    folder = stamped(tmp_path / "checkpoints/sft_pubmedqa")
    whole = checkpoint(folder, 2, json.dumps({"global_step": 2, "log_history": []}))
    checkpoint(folder, 4, '{"global_step": 4, "log_hist')  # killed mid-write
    checkpoint(folder, 6)  # killed before the state
    (folder / "checkpoint-8").mkdir()  # killed right after the folder appeared
    assert resume_checkpoint(folder, "abc", _Accelerator()) == str(whole)
    assert sorted(p.name for p in folder.iterdir()) == ["checkpoint-2", FINGERPRINT]


def test_no_whole_checkpoint_starts_clean(tmp_path):
    folder = stamped(tmp_path / "checkpoints/rm")
    (folder / "checkpoint-2").mkdir()
    assert resume_checkpoint(folder, "abc", _Accelerator()) is None
    assert sorted(p.name for p in folder.iterdir()) == [FINGERPRINT]


def test_a_fingerprint_with_merge_conflict_markers_starts_clean(tmp_path, capsys):
    """fingerprint.json is tracked in git: a merge can leave conflict markers in it."""
    folder = tmp_path / "checkpoints/dpo"
    folder.mkdir(parents=True)
    (folder / FINGERPRINT).write_text('<<<<<<< HEAD\n{"fingerprint": "a"}\n=======\n{"fingerprint": "b"}\n>>>>>>> x\n')
    checkpoint(folder, 2, json.dumps({"global_step": 2}))
    assert resume_checkpoint(folder, "new", _Accelerator()) is None
    assert json.loads((folder / FINGERPRINT).read_text()) == {"fingerprint": "new"}
    assert f"{folder / FINGERPRINT} is not readable" in capsys.readouterr().err


def test_train_tokens_at_a_checkpoint_are_the_last_logged(tmp_path):
    from medadapt.training.checkpoints import train_tokens_at

    state = {"log_history": [{"step": 1, "num_tokens": 10.0}, {"step": 2, "num_tokens": 25.0, "loss": 1.0},
                             {"step": 2, "eval_loss": 2.0}]}
    assert train_tokens_at(str(checkpoint(tmp_path, 2, json.dumps(state)))) == 25
    assert train_tokens_at(None) == 0
