"""Resuming a killed training stage: the run's fingerprint, and the checkpoint it may resume from.

`checkpoints/<stage>/` is the stage's own scratch folder, no DVC output (git-ignored): while it
trains it holds `fingerprint.json` and the trainer's `checkpoint-N/` folders, and a finished run
removes it. A run killed mid-way leaves it, and the next run resumes from the last checkpoint only
when its fingerprint (params, inputs, the base's files) is the one recorded; otherwise it clears
the folder and starts clean.
"""

from __future__ import annotations

import hashlib
import json
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


def resume_checkpoint(output_dir: Path, stamp: str, accelerator) -> str | None:
    """The last checkpoint of an interrupted run with the same fingerprint, else a clean folder.
    Every rank decides first; then rank 0 alone clears the folder, while the others wait."""
    from transformers.trainer_utils import get_last_checkpoint

    output_dir = Path(output_dir)
    marker = output_dir / FINGERPRINT
    same_run = marker.exists() and json.loads(marker.read_text()).get("fingerprint") == stamp
    last = get_last_checkpoint(str(output_dir)) if same_run else None
    accelerator.wait_for_everyone()
    if last is None and accelerator.is_main_process:
        remove(output_dir)
        output_dir.mkdir(parents=True)
        marker.write_text(json.dumps({"fingerprint": stamp}) + "\n")
    accelerator.wait_for_everyone()
    return last


def clear_checkpoints(output_dir: Path) -> None:
    """After a finished run nothing is left to resume: the folder goes."""
    remove(output_dir)


def tokens_at(checkpoint: str | None) -> int:
    """Input tokens already seen at a resumed checkpoint (0 for a fresh start)."""
    if checkpoint is None:
        return 0
    return int(json.loads((Path(checkpoint) / "trainer_state.json").read_text()).get("num_input_tokens_seen", 0))
