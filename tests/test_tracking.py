"""W&B artifacts, offline: a stage's adapter and metrics become artifacts of type `model` and
`metrics`, and evaluate's samples a `wandb.Table`, all read back from the offline run folder."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import pytest
import yaml

from medadapt import tracking
from medadapt.params import parse_params

from conftest import REPO

BLOCK = 32 * 1024  # the .wandb file is a LevelDB-style log of 32 KiB blocks


def wandb_records(path: Path):
    """The protobuf records of an offline run's `.wandb` file (header ':W&B', then chunks of
    crc32, length, type; type 1 is a whole record, 2-4 its first, middle and last parts)."""
    from wandb.proto import wandb_internal_pb2

    data = path.read_bytes()
    assert data[:4] == b":W&B"
    position, parts = 7, b""
    while position + 7 <= len(data):
        if BLOCK - position % BLOCK < 7:  # a block's tail too short for a header is padding
            position += BLOCK - position % BLOCK
            continue
        _, length, kind = struct.unpack("<IHB", data[position:position + 7])
        if kind == 0:
            break
        parts += data[position + 7:position + 7 + length]
        position += 7 + length
        if kind in (1, 4):
            record = wandb_internal_pb2.Record()
            record.ParseFromString(parts)
            yield record
            parts = b""


@pytest.fixture
def offline(tmp_path, monkeypatch):
    """Params with W&B offline, cwd in tmp_path, and W&B's own folders kept out of $HOME."""
    import wandb

    wandb.teardown()  # W&B's process-wide settings keep the folder of the first run otherwise
    monkeypatch.chdir(tmp_path)
    for name in ("WANDB_DATA_DIR", "WANDB_CACHE_DIR", "WANDB_CONFIG_DIR", "WANDB_ARTIFACT_DIR"):
        monkeypatch.setenv(name, str(tmp_path / "wandb-home" / name.lower()))
    # report_to() writes these into os.environ; registering them here restores them afterwards
    monkeypatch.setenv("WANDB_MODE", "disabled")
    monkeypatch.setenv("WANDB_PROJECT", "medadapt-test")
    monkeypatch.setenv("WANDB_SILENT", "true")
    tree = yaml.safe_load((REPO / "params.yaml").read_text())
    yield parse_params(tree, overrides=["tracking.wandb=offline", "model.base=builtin:tiny-llama"])
    wandb.teardown()


def run_file(root: Path) -> Path:
    """The offline run's log, once W&B's service has shut down (it writes asynchronously)."""
    import wandb

    wandb.teardown()
    (path,) = root.glob("wandb/offline-run-*/run-*.wandb")
    return path


def test_stage_artifacts_and_eval_table_are_in_the_offline_run(offline, tmp_path):
    adapter = tmp_path / "models/sft_medqa"
    adapter.mkdir(parents=True)
    (adapter / "adapter_config.json").write_text("{}")
    (adapter / "adapter_model.safetensors").write_bytes(b"weights")
    metrics = tmp_path / "metrics/sft_medqa.json"
    metrics.parent.mkdir()
    metrics.write_text(json.dumps({"eval_loss": 1.0}))
    samples = [{"id": "q1", "dataset": "medqa", "output": "Answer: A", "correct": True, "scores": {"f1": 1.0}},
               {"id": "s1", "dataset": "safety", "output": "Call your doctor.", "unsafe_rule": False}]

    tracking.log_stage_artifacts("sft_medqa", adapter, metrics, offline)
    tracking.log_eval_table(samples, offline)  # the same open run
    tracking.finish_wandb()

    artifacts = {r.artifact.name: r.artifact for r in wandb_records(run_file(tmp_path))
                 if r.WhichOneof("record_type") == "artifact"}
    model, scores = artifacts["sft_medqa-adapter"], artifacts["sft_medqa-metrics"]
    assert model.type == "model"
    assert sorted(e.path for e in model.manifest.contents) == ["adapter_config.json", "adapter_model.safetensors"]
    assert json.loads(model.metadata)["base"] == "builtin:tiny-llama"
    assert scores.type == "metrics" and [e.path for e in scores.manifest.contents] == ["sft_medqa.json"]
    (table_file,) = tmp_path.glob("wandb/offline-run-*/files/media/table/eval_samples_*.table.json")
    table = json.loads(table_file.read_text())
    assert table["columns"] == ["id", "dataset", "output", "correct", "scores", "unsafe_rule"]
    assert table["data"][0][4] == '{"f1": 1.0}' and table["data"][1][3] is None


def test_evaluate_without_a_trainer_opens_its_own_run(offline, tmp_path):
    metrics = tmp_path / "eval.json"
    metrics.write_text("{}")
    tracking.log_stage_artifacts("evaluate", None, metrics, offline)
    tracking.finish_wandb()
    records = list(wandb_records(run_file(tmp_path)))
    run = next(r.run for r in records if r.WhichOneof("record_type") == "run")
    assert run.display_name == tracking.run_name("evaluate", offline) and run.job_type == "evaluate"
    assert [r.artifact.name for r in records if r.WhichOneof("record_type") == "artifact"] == ["evaluate-metrics"]


def test_nothing_is_logged_with_wandb_disabled(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    params = parse_params(yaml.safe_load((REPO / "params.yaml").read_text()))
    tracking.log_stage_artifacts("rm", tmp_path, tmp_path / "missing.json", params)
    tracking.log_eval_table([{"id": "x"}], params)
    assert not (tmp_path / "wandb").exists()
