"""quiet.py: the known-harmless library messages are silenced, and nothing else.

(tests/test_pipeline.py checks that every stage of a whole `dvc repro` prints none of them.)
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import warnings

from medadapt.quiet import quiet_libraries

from conftest import REPO

REPORT = """\x1b[1mLlamaForSequenceClassification LOAD REPORT\x1b[0m from: models/base
Key            | Status     | 
---------------+------------+-
lm_head.weight | \x1b[33mUNEXPECTED\x1b[0m | 
score.weight   | MISSING    | 
{extra}
Notes:
- MISSING:\tthose params were newly initialized because missing from the checkpoint. Consider training on your downstream task."""


def logged(message: str) -> list[str]:
    """What the transformers.modeling_utils logger lets through, after quiet_libraries()."""
    quiet_libraries()
    logger = logging.getLogger("transformers.modeling_utils")
    record = logger.makeRecord(logger.name, logging.WARNING, __file__, 0, message, (), None)
    return [message] if logger.filter(record) else []


def test_the_reward_models_new_score_head_is_not_reported():
    assert logged(REPORT.format(extra="")) == []


def test_any_other_load_problem_keeps_the_report():
    report = REPORT.format(extra="model.layers.0.mlp.up_proj.weight | MISSING | ")
    assert logged(report) == [report]
    causal = REPORT.format(extra="").replace("ForSequenceClassification", "ForCausalLM")
    assert logged(causal) == [causal]


def test_only_the_gradient_checkpointing_future_warning_is_ignored():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        quiet_libraries()
        warnings.warn("`is_gradient_checkpointing` is deprecated and will be removed in v6. Use "
                      "`is_activation_checkpointing` instead.", FutureWarning)
        warnings.warn("some other change", FutureWarning)
    assert [str(warning.message) for warning in caught] == ["some other change"]


def test_bitsandbytes_import_is_silent():
    """Its CPU backend logs a missing optional `kernels` package at import (on CPUs with AVX512-BF16)."""
    code = "from medadapt.quiet import quiet_libraries; quiet_libraries(); import bitsandbytes"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                          env={**os.environ, "PYTHONPATH": str(REPO / "src")})
    assert "gemm_4bit_forward" not in done.stderr + done.stdout


def test_the_kernels_offline_trust_note_is_silent():
    """On CPUs with AVX512-BF16, importing bitsandbytes asks `kernels` for its optional 4-bit
    kernel; offline, `kernels` logged "Skipping publisher trust check..." on every command (issue 23).
    This is that call, as bitsandbytes makes it."""
    code = ("from medadapt.quiet import quiet_libraries; quiet_libraries()\n"
            "from kernels import get_kernel\n"
            "try:\n    get_kernel('kernels-community/quantization-bitsandbytes', version=1)\n"
            "except Exception:\n    pass\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                          env={**os.environ, "PYTHONPATH": str(REPO / "src"), "HF_HUB_OFFLINE": "1"})
    assert "publisher trust" not in done.stderr + done.stdout
