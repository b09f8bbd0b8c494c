#!/usr/bin/env bash
# GPU checks, for a lent GPU machine (see README, "Speed"): the real stages on the tiny model
# with the base in 8-bit and in 4-bit (bitsandbytes on CUDA): the SFT curriculum in both, then
# rm, dpo and evaluate in 4-bit. Real shapes: scripts/gpu_rehearse.sh (`medadapt rehearse`).
# Usage: scripts/gpu_check.sh OUT_DIR   (run from the repository root, medadapt importable)
set -uo pipefail
out=${1:?usage: scripts/gpu_check.sh OUT_DIR}
mkdir -p "$out"
export HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1 WANDB_MODE=disabled TOKENIZERS_PARALLELISM=false
medadapt() { python3 -m medadapt.cli "$@"; }
tiny=(--set model.base=builtin:tiny-llama --set tracking.dvclive=false)
results=()

nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
python3 -c "import torch, transformers, trl, peft, bitsandbytes as b; print('torch', torch.__version__, 'transformers', transformers.__version__, 'trl', trl.__version__, 'peft', peft.__version__, 'bitsandbytes', b.__version__)"

medadapt prepare "${tiny[@]}" 2>&1 | tail -2
for q in 8bit 4bit; do
  for d in pubmedqa medmcqa medqa; do
    medadapt sft "$d" "${tiny[@]}" --set model.quantization=$q 2>&1 | grep -E '^\[|Error|error' | tail -3
    cp "metrics/sft_$d.json" "metrics/gpu_sft_${d}_$q.json"
  done
done
medadapt rm "${tiny[@]}" --set model.quantization=4bit 2>&1 | grep -E '^\[|Error|error' | tail -3
medadapt dpo "${tiny[@]}" --set model.quantization=4bit 2>&1 | grep -E '^\[|Error|error' | tail -3
medadapt evaluate "${tiny[@]}" --set model.quantization=4bit --set method=dpo 2>&1 | grep -E '^\[|Error|error' | tail -8
python3 - "$out/tiny_stages.json" <<'PY'
import json, sys, pathlib
files = sorted(pathlib.Path("metrics").glob("gpu_sft_*.json")) + [pathlib.Path(f"metrics/{n}.json") for n in ("rm", "dpo", "eval")]
json.dump({f.stem: json.loads(f.read_text()) for f in files if f.exists()}, open(sys.argv[1], "w"), indent=1, sort_keys=True)
PY

ls -la "$out"
