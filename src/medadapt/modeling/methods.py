"""What a method is: the model it answers with and the demonstrations in its prompts.

Every method shares one base; they differ only in the adapter on it (`paths.METHOD_STAGES`:
none for `base` and `icl`, a curriculum stage's adapter for `sft_*`, `dpo`'s for `dpo`, `grpo`'s
for `grpo`) and in the prompt (zero-shot, or k-shot with the demonstrations the `icl` stage chose).
"""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

from .. import paths
from ..data.records import Record, read_jsonl, read_records
from .adapters import load_adapter
from .models import ModelError, load_base_model


def load_method_model(params, root: Path = Path(".")):
    """The base, with the method's adapter merged in (or attached, on a quantized base)."""
    model = load_base_model(params.model, root)
    adapter = paths.method_adapter(params.method)
    if adapter is not None:
        model = load_adapter(model, root / adapter)
        if params.model.quantization == "none" and params.evaluate.merge_adapter:
            model = model.merge_and_unload()
    model.eval()
    return model


def load_demos(root: Path = Path(".")) -> dict[str, list[str]]:
    """eval id -> ordered demonstration ids, from the `icl` stage's output."""
    return {row["id"]: row["demos"] for row in read_jsonl(root / paths.ICL_DEMOS)}


def demonstrations(params, root: Path = Path(".")) -> dict[str, list[Record]]:
    """eval id -> its demonstration records (empty for every method but icl)."""
    if params.method != "icl":
        return defaultdict(list)
    if not (root / paths.ICL_DEMOS).exists():
        raise ModelError(f"method=icl needs {paths.ICL_DEMOS}: run `dvc repro icl`")
    train = {r.id: r for d in params.data.datasets for r in read_records(root / paths.split_file(d, "train"))}
    evaluation = {r.id for d in params.data.datasets for r in read_records(root / paths.split_file(d, "eval"))}
    demos = load_demos(root)
    unknown = sorted({i for ids in demos.values() for i in ids} - set(train)) + sorted(evaluation - set(demos))
    if unknown:
        raise ModelError(f"{paths.ICL_DEMOS} does not match the prepared data (e.g. {unknown[0]!r}): "
                         "run `dvc repro icl`")
    return defaultdict(list, {item: [train[i] for i in ids] for item, ids in demos.items()})


def replicate(params, root: Path) -> dict:
    """How the method's model was trained, where it was: the training seed its adapter records
    (`hyperparameters.json`), so that `compare` sets replicates of one method apart from repeats."""
    adapter = paths.method_adapter(params.method)
    if adapter is None:
        return {"train_seed": None}
    trained = json.loads((root / adapter / "hyperparameters.json").read_text())
    return {"train_seed": trained.get("train", {}).get("seed")}
