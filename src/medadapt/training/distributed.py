"""A training stage run by several processes (DDP or FSDP, see launch.py): what differs from one.

- Wrapping (DDP and FSDP): `prepare(trainer)` right after the trainer is built, before its first
  `evaluate` or `train`. transformers' Trainer prepares the model for evaluation only when
  `evaluate` comes first; Accelerate then marks it prepared and `train` no longer wraps it in
  DDP, so every rank would train its own copy with no gradient exchange (seen on gloo: the two
  ranks' gradients differed at step 0). Under FSDP the LoRA layers must be wrapped apart from
  the frozen base (flat parameters need one `requires_grad` each) and a 4-bit base's storage
  dtype is the mixed precision; the Trainer sets both only inside `train`, after an earlier
  `evaluate` would have wrapped the model the plain way.
- Loading under FSDP: a 4-bit base stores its packed weights in the compute dtype (FSDP shards
  floating-point tensors only) and skips PEFT's fp32 upcast of the other layers (FSDP-1 flattens
  each wrapped unit into one tensor of one dtype): `modeling.models.load_base_model` asks `runtime.fsdp_enabled`.
- Saving under FSDP: each rank holds a shard of the adapter; `adapter_state_dict(trainer)` on
  every rank gathers it (a collective) and rank 0 gives it to `save_pretrained`.
The Trainer writes sharded checkpoints under FSDP and resumes from them itself.
"""

from __future__ import annotations


def prepare(trainer) -> None:
    """Wrap the model for training across processes before anything evaluates it; a no-op in a
    single process."""
    if trainer.is_fsdp_enabled:
        from transformers.trainer import update_fsdp_plugin_peft

        update_fsdp_plugin_peft(trainer.model, trainer.accelerator)  # the first evaluate or train wraps
    elif trainer.accelerator.num_processes > 1:
        # `train` finds model_wrapped already wrapped and keeps it; `evaluate` uses the bare model.
        trainer.model_wrapped = trainer.accelerator.prepare_model(trainer.model)


def adapter_state_dict(trainer) -> dict | None:
    """Under FSDP, the trained model's full state dict gathered to rank 0 (on its CPU; empty on the
    other ranks). Every rank must call it: the gather is a collective. None without FSDP, where the
    model's own parameters are whole and `save_pretrained` reads them."""
    if not trainer.is_fsdp_enabled:
        return None
    return trainer.accelerator.get_state_dict(trainer.model)
