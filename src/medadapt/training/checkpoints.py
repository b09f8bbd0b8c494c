"""Resuming a killed training stage: the run's fingerprint, and the checkpoint it may resume from.

`checkpoints/<stage>/` is the stage's own scratch folder, no DVC output (git-ignored): while it
trains it holds `fingerprint.json` and the trainer's `checkpoint-N/` folders, and a finished run
removes it. A run killed mid-way leaves it, and the next run resumes from the last whole checkpoint
(a run killed while saving leaves a partial folder, which is removed) only when its fingerprint
(params, inputs, the base's files) is the one recorded; otherwise, or when the fingerprint cannot
be read, it clears the folder and starts clean.
"""

from __future__ import annotations

import hashlib
import json
import re
import sys
from pathlib import Path

from ..artifacts import remove, tree_digest
from ..params import dump_params

FINGERPRINT = "fingerprint.json"


def fingerprint(stage: str, params, sections: dict, inputs: list[Path]) -> str:
    """What a checkpoint was trained from: resuming with anything else would mix two runs."""
    digest = hashlib.sha256()
    digest.update(json.dumps({"stage": stage, "model": dump_params(params.model),
                              "compute": dump_params(params.compute), **sections}, sort_keys=True).encode())
    for path in inputs:  # no models/base/ for a base outside a project: its digest is None
        digest.update(str(tree_digest(path)).encode())
    return digest.hexdigest()


def recorded_fingerprint(marker: Path, main_process: bool) -> str | None:
    """The fingerprint a run recorded, or None: absent, or unreadable (the file is in git, and a
    merge can leave conflict markers in it), which only means that nothing is resumed."""
    if not marker.exists():
        return None
    try:
        return json.loads(marker.read_text()).get("fingerprint")
    except (ValueError, AttributeError):  # not JSON, not UTF-8, not an object
        if main_process:
            print(f"note: {marker} is not readable (a merge conflict?); starting clean, not resuming",
                  file=sys.stderr)
        return None


def state_of(checkpoint: Path) -> dict | None:
    """A checkpoint's trainer state, or None when its save did not finish: the trainer writes
    `trainer_state.json` last, after the weights, optimizer and RNG states, and not atomically."""
    from transformers.trainer import TRAINER_STATE_NAME

    try:
        state = json.loads((Path(checkpoint) / TRAINER_STATE_NAME).read_text())
    except (OSError, ValueError):
        return None
    return state if isinstance(state, dict) else None


def whole_checkpoints(output_dir: Path) -> tuple[list[Path], list[Path]]:
    """The trainer's `checkpoint-N` folders, oldest first: (whole ones, partial ones)."""
    from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

    pattern = re.compile(rf"^{PREFIX_CHECKPOINT_DIR}-(\d+)$")
    found = sorted((int(m.group(1)), p) for p in Path(output_dir).iterdir() if p.is_dir()
                   and (m := pattern.match(p.name)))
    whole = [p for _, p in found if state_of(p) is not None]
    return whole, [p for _, p in found if p not in whole]


def resume_checkpoint(output_dir: Path, stamp: str, accelerator) -> str | None:
    """The last whole checkpoint of an interrupted run with the same fingerprint, else a clean
    folder. Every rank decides first; then rank 0 alone clears the folder (or the checkpoints a
    kill left half-saved), while the others wait."""
    output_dir = Path(output_dir)
    marker = output_dir / FINGERPRINT
    same_run = recorded_fingerprint(marker, accelerator.is_main_process) == stamp
    whole, partial = whole_checkpoints(output_dir) if same_run else ([], [])
    last = str(whole[-1]) if whole else None
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        if last is None:
            remove(output_dir)
            output_dir.mkdir(parents=True)
            marker.write_text(json.dumps({"fingerprint": stamp}) + "\n")
        for folder in partial:  # else the trainer's rotation would count and keep them
            remove(folder)
    accelerator.wait_for_everyone()
    return last


def clear_checkpoints(output_dir: Path) -> None:
    """After a finished run nothing is left to resume: the folder goes."""
    remove(output_dir)


def tokens_at(checkpoint: str | None) -> int:
    """Input tokens already seen at a resumed checkpoint (0 for a fresh start)."""
    if checkpoint is None:
        return 0
    return int(state_of(checkpoint).get("num_input_tokens_seen", 0))


def train_tokens_at(checkpoint: str | None) -> int:
    """TRL's `num_tokens` (tokens the trainer processed) as last logged before the checkpoint."""
    if checkpoint is None:
        return 0
    history = state_of(checkpoint).get("log_history", [])
    return int(next((row["num_tokens"] for row in reversed(history) if "num_tokens" in row), 0))
