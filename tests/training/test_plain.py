"""training/plain.py: the plain steps every training figure is set beside read the stages' own rows."""

from __future__ import annotations

import pytest

from medadapt.modeling.models import base_path, load_base_model, load_tokenizer
from medadapt.params import load_params
from medadapt.stages import prepare, sft
from medadapt.training.plain import Levers, pair_batches, plain_loop, real_tokens, sft_batches

from conftest import make_project

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def stage(tmp_path_factory):
    """A prepared tiny project and its packed sft_pubmedqa run, as cwd."""
    root = make_project(tmp_path_factory.mktemp("plain"), {"tracking": {"dvclive": False}})
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(root)
        params = load_params(overrides=["sft.pubmedqa.packing=true"])
        prepare.run(params)
        yield {"params": params, "metrics": sft.run(params, "pubmedqa"),
               "tokenizer": load_tokenizer(base_path(params.model.base))}


def test_plain_batches_are_the_stage_rows(stage):
    """Packed as the stage packs them, with as many real tokens in an epoch as the stage counted,
    and one shape where compiled layers train them."""
    params, metrics, tokenizer = stage["params"], stage["metrics"], stage["tokenizer"]
    batches = sft_batches(params, tokenizer, "pubmedqa")
    assert sum(real_tokens(b) for b in batches) == metrics["tokens_seen"]
    assert len(batches) == metrics["steps"] and all(b["input_ids"].shape[0] == 1 for b in batches)  # padding-free
    static = sft_batches(params, tokenizer, "pubmedqa", static=True)
    assert {tuple(b["input_ids"].shape) for b in static} == {(1, 4 * 1024)}
    assert [real_tokens(b) for b in static] == [real_tokens(b) for b in batches]


@pytest.mark.parametrize("kind", ["sft", "rm", "dpo"])
def test_plain_steps_leave_the_base_bare(stage, kind):
    params, tokenizer = stage["params"], stage["tokenizer"]
    base = load_base_model(params.model, for_training=True)
    names = {n for n, _ in base.named_parameters()}
    batches = sft_batches(params, tokenizer, "pubmedqa") if kind == "sft" else pair_batches(params, tokenizer, kind)
    row = plain_loop(base, params, batches, kind, Levers(autocast_adapter_dtype=False), steps=2)
    assert row["tokens_per_second"] > 0 and row["kind"] == kind and row["levers"]["autocast_adapter_dtype"] is False
    assert (row["pairs_per_second"] > 0) if kind != "sft" else "pairs_per_second" not in row
    assert {n for n, _ in base.named_parameters()} == names  # no LoRA layer left behind for the next loop
