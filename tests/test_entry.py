"""entry.py: how a stage process starts: environment defaults, exit status 2 for bad input."""

from __future__ import annotations

import os

import pytest

from medadapt import entry
from medadapt.params import load_params


@pytest.fixture
def clean_environment(monkeypatch):
    for name in ("HF_HUB_OFFLINE", "OMP_NUM_THREADS"):
        monkeypatch.delenv(name, raising=False)


@pytest.mark.parametrize("overrides, offline", [
    ([], True),  # the built-in base and the sample data: nothing to download
    (["model.base=meta-llama/Llama-3.1-8B-Instruct"], False),
    (["data.source=hub"], False),
])
def test_hub_goes_offline_only_when_nothing_needs_it(project, clean_environment, overrides, offline):
    entry.set_environment_defaults(load_params(overrides=overrides))
    assert (os.environ.get("HF_HUB_OFFLINE") == "1") == offline
    assert int(os.environ["OMP_NUM_THREADS"]) == entry.usable_cpus() >= 1


def test_exported_values_win(project, clean_environment, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    entry.set_environment_defaults(load_params())
    assert os.environ["HF_HUB_OFFLINE"] == "0" and os.environ["OMP_NUM_THREADS"] == "3"


def test_a_local_folder_base_is_offline(project, clean_environment):
    (project / "my-model").mkdir()
    entry.set_environment_defaults(load_params(overrides=["model.base=my-model"]))
    assert os.environ["HF_HUB_OFFLINE"] == "1"
