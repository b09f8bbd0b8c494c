#!/usr/bin/env bash
# Two-GPU runs of issue 15, for a lent `nvidia-h200-x2` (see README "Measured on GPUs").
# Usage, from the repository root: scripts/gpu_multi.sh OUT_DIR SECTION   (one section per
# device call: each stays well under the 10-minute limit and writes at most 8 files)
#   stages  the real stages on the tiny model through `compute.*` (the dvc.yaml commands):
#           sft_pubmedqa on 1 GPU at batch 4 vs 2 GPUs (DDP) at batch 2 per GPU (same global
#           batch: the metrics must agree), the rest of the curriculum, rm and dpo under DDP;
#           then FSDP (bf16 and 4-bit) and an FSDP run killed at step 3 and resumed.
#           The FSDP runs need the integration points of src/medadapt/distributed.py in the
#           stages (adapter_state_dict on every rank before rank 0 saves).
#   ddp     Llama-3.1-8B shapes (random init), bf16 LoRA, batch 4 x 512 per GPU: one GPU, then
#           DDP on two (issue: DDP tokens/s per GPU vs one GPU, goal >= 1.8x in total).
#   fsdp    the same under FSDP on two GPUs (issue: FSDP peak memory per GPU vs one GPU).
#   70b     Llama-3.1-70B shapes in 4-bit (NF4) under FSDP on two GPUs, one step at batch 1 and
#           at batch 4 (issue: does one step fit, tokens/s, memory), and on one GPU without FSDP.
# Needs trl, datasets and bitsandbytes importable (the GPU machine has none: install the wheels
# carried with the tree first, see ../shared/STACK.md); medadapt is taken from src/.
set -uo pipefail
out=${1:?usage: scripts/gpu_multi.sh OUT_DIR SECTION}
section=${2:?usage: scripts/gpu_multi.sh OUT_DIR stages|ddp|fsdp|70b}
mkdir -p "$out"
export PYTHONPATH=$PWD/src${PYTHONPATH:+:$PYTHONPATH} HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1 WANDB_MODE=disabled TOKENIZERS_PARALLELISM=false
medadapt() { timeout 300 python3 -m medadapt.cli "$@"; }
bench() { timeout 540 python3 -m medadapt.commands.bench_multi "$@" 2>&1 | grep -E '^\[|Error|error|memory' | tail -4; }
two=(--set compute.num_processes=2)
fsdp=(--set compute.num_processes=2 --set compute.strategy=fsdp)

nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
python3 -c "import torch, transformers, trl, peft, accelerate, bitsandbytes as b; print('torch', torch.__version__, 'transformers', transformers.__version__, 'trl', trl.__version__, 'peft', peft.__version__, 'accelerate', accelerate.__version__, 'bitsandbytes', b.__version__)"

# sft pubmedqa with the given overrides; its metrics copied to $out/sft_<name>.json (not resumed:
# the checkpoint fingerprint differs between the runs, and each run ends by clearing it)
sft_run() {
  local name=$1; shift
  medadapt sft pubmedqa "${tiny[@]}" "$@" 2>&1 | grep -E '^\[|Error|error' | tail -3
  cp metrics/sft_pubmedqa.json "$out/sft_$name.json" 2>/dev/null || echo "sft $name: no metrics"
}

case $section in
stages)
  tiny=(--set model.base=builtin:tiny-llama --set tracking.dvclive=false --set lora.dropout=0)
  medadapt prepare "${tiny[@]}" 2>&1 | tail -1
  sft_run one_gpu --set sft.pubmedqa.batch_size=4
  sft_run ddp "${two[@]}" --set sft.pubmedqa.batch_size=2
  for d in medmcqa medqa; do medadapt sft $d "${tiny[@]}" "${two[@]}" 2>&1 | grep -E '^\[|Error' | tail -2; done
  medadapt rm "${tiny[@]}" "${two[@]}" 2>&1 | grep -E '^\[|Error' | tail -2
  medadapt dpo "${tiny[@]}" "${two[@]}" 2>&1 | grep -E '^\[|Error' | tail -2
  sft_run fsdp_bf16 "${fsdp[@]}" --set sft.pubmedqa.batch_size=2
  sft_run fsdp_4bit "${fsdp[@]}" --set sft.pubmedqa.batch_size=2 --set model.quantization=4bit
  # FSDP resume: 12 items, 2 per GPU, 2 epochs = 6 steps, checkpoints every 2; killed at step 3
  resume=("${fsdp[@]}" --set model.quantization=4bit --set sft.pubmedqa.batch_size=2 --set sft.pubmedqa.epochs=2
          --set sft.pubmedqa.save_steps=2)
  cat > /tmp/crash_at_step_3.py <<'PY'
import sys
from transformers import TrainerCallback
from medadapt import cli
from medadapt.stages import sft
class Crash(TrainerCallback):
    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == 3:
            raise SystemExit(3)
make = sft.make_trainer
def crashing(*args, **kwargs):
    trainer = make(*args, **kwargs)
    trainer.add_callback(Crash())
    return trainer
sft.make_trainer = crashing
sys.exit(cli.main(sys.argv[1:]))
PY
  flags=$(python3 -c "import sys; from medadapt.training.launch import launch_flags; from medadapt.params import load_params
print(' '.join(launch_flags(load_params(overrides=sys.argv[1:]))))" compute.num_processes=2 compute.strategy=fsdp)
  timeout 300 python3 -m accelerate.commands.launch $flags /tmp/crash_at_step_3.py sft pubmedqa "${tiny[@]}" "${resume[@]}" \
    2>&1 | grep -E '^\[|Error' | tail -2
  ls checkpoints/sft_pubmedqa
  sft_run fsdp_resumed "${resume[@]}"
  ls -la models/sft_pubmedqa
  ;;
ddp)
  bench llama-3.1-8b --out "$out/8b_one_gpu.json"
  bench llama-3.1-8b "${two[@]}" --out "$out/8b_ddp.json"
  ;;
fsdp)
  bench llama-3.1-8b "${fsdp[@]}" --out "$out/8b_fsdp.json"
  ;;
70b)
  bench llama-3.1-70b "${fsdp[@]}" --set model.quantization=4bit --steps 1 --batch 1 --out "$out/70b_4bit_fsdp_b1.json"
  bench llama-3.1-70b "${fsdp[@]}" --set model.quantization=4bit --steps 1 --batch 4 --out "$out/70b_4bit_fsdp_b4.json"
  bench llama-3.1-70b --set model.quantization=4bit --steps 1 --batch 1 --out "$out/70b_4bit_one_gpu_b1.json"
  ;;
*) echo "unknown section $section"; exit 2 ;;
esac
ls -la "$out"
