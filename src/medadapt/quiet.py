"""Library output known to be harmless, silenced in one place; each entry says why it is harmless.

Call `quiet_libraries()` before transformers, peft, trl or bitsandbytes is imported (the CLI
does, first thing): bitsandbytes logs its message once, while it is being imported.
"""

from __future__ import annotations

import logging
import os
import re
import warnings

# transformers' load report lists one row per odd key: `<key> | <STATUS>`, maybe in colour.
_REPORT_ROW = re.compile(r"^(\S+)\s*\|\s*(MISSING|UNEXPECTED|MISMATCH|CONVERSION)\b", re.MULTILINE)
_ANSI = re.compile(r"\x1b\[[0-9;]*m")
# A causal-LM checkpoint loaded as a one-label sequence classifier (the reward model's body) has
# no `score` head and an unused `lm_head`: both by design, not a loading fault.
_EXPECTED_CLASSIFIER_ROWS = {("score.weight", "MISSING"), ("score.bias", "MISSING"),
                             ("lm_head.weight", "UNEXPECTED")}


class _RewardHeadReport(logging.Filter):
    """Drops transformers' load report of a `...ForSequenceClassification` whose every row is
    expected: `score` is new because `rm` trains it, and every later load of the trained reward
    model replaces it from the adapter right after (PEFT saves the head beside the LoRA weights).
    Its "Consider training on your downstream task" read as if the trained model were untrained.
    Any other row (a missing layer, a shape mismatch) keeps the whole report."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = _ANSI.sub("", record.getMessage())
        if "ForSequenceClassification LOAD REPORT" not in message:
            return True
        rows = set(_REPORT_ROW.findall(message))
        return not rows <= _EXPECTED_CLASSIFIER_ROWS


_REWARD_HEAD_REPORT = _RewardHeadReport()


def quiet_libraries() -> None:
    """Silence the known-harmless messages (idempotent)."""
    # bitsandbytes' CPU backend logs at import that the optional `kernels` package (a faster
    # 4-bit CPU matmul fetched from the hub) is missing, once per process: it then uses its own.
    logging.getLogger("bitsandbytes").setLevel(logging.ERROR)
    # The same import asks `kernels` for that kernel; offline (HF_HUB_OFFLINE=1, medadapt's default)
    # `kernels` warns that it skips the publisher trust check, on every command. The kernel
    # requested is bitsandbytes' own, from kernels-community; it is taken from the local cache only
    # (where an earlier online run put it), and is absent from a project that never went online.
    logging.getLogger("kernels").setLevel(logging.ERROR)
    # peft (PeftModel init) and trl read `model.is_gradient_checkpointing`, which transformers 5
    # deprecated for `is_activation_checkpointing`: their code, removed in their next releases.
    warnings.filterwarnings("ignore", message="`is_gradient_checkpointing` is deprecated",
                            category=FutureWarning)
    logging.getLogger("transformers.modeling_utils").addFilter(_REWARD_HEAD_REPORT)
    # The Rust tokenizers warn, and turn their threads off, when a process forks after using them.
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
