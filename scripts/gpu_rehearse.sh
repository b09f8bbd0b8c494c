#!/usr/bin/env bash
# `medadapt rehearse llama-3.1-8b` on one GPU, base in bf16 then in 4-bit NF4: the real stages
# on a seeded random model of Llama-3.1-8B's shapes, on the real PubMedQA/MedMCQA/MedQA samples
# at 400 train and 100 eval items per dataset and 64 preference pairs per source, beside the
# plain LoRA loop. Writes $OUT/rehearse-llama-3.1-8b-{none,4bit}.json, prepare.json and the logs.
#
# Usage (repository root): DATA=/path/to/data OUT=/path/to/out scripts/gpu_rehearse.sh [none] [4bit] [levers]
#   levers     instead of a rehearsal, scripts/gpu_levers.py: each SFT speed lever alone, evaluate's phases
#   DATA       a folder laid out as ../shared/data (pubmedqa/ori_pqal.json, medmcqa/*.jsonl, medqa/*.jsonl)
#   TOKENIZER  optional: a folder with the tokenizer files of models/base (SmolLM2's, as `medadapt prepare`
#              writes them), so that token counts are a real tokenizer's; else the tiny BPE of builtin:tiny-llama
#   WHEELS     optional: a folder of wheels to install first, offline (see README, "Speed")
#   METHODS    optional: the methods evaluate scores (default [sft]; the projected total counts all six)
#   SETS       optional: space-separated key=value params to rehearse with, e.g. the preset's speed levers
#   PRESET, TRAIN, EVAL, PAIRS   optional: other shapes and sizes (a CPU check: PRESET=tiny TRAIN=4 EVAL=2 PAIRS=2)
# Needs besides torch/transformers/peft/accelerate: trl, datasets, pydantic, bitsandbytes (4-bit);
# not dvc, dvclive (tracking is off here), gguf, rouge-score (no RadQA here) or wandb.
set -uo pipefail
: "${DATA:?set DATA to the data folder}" "${OUT:?set OUT to the output folder}"
modes=("$@")
[ ${#modes[@]} -eq 0 ] && modes=(none 4bit)
preset=${PRESET:-llama-3.1-8b} train=${TRAIN:-400} eval=${EVAL:-100} pairs=${PAIRS:-64}
mkdir -p "$OUT"
repo=$PWD
export HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1 WANDB_MODE=disabled TOKENIZERS_PARALLELISM=false
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
if [ -n "${WHEELS:-}" ]; then
  python3 -m pip install --quiet --no-index --find-links "$WHEELS" --no-deps "$WHEELS"/*.whl 2>&1 | tail -3
fi
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$OUT/gpu.txt"
python3 -c "import torch, transformers, trl, peft; print('torch', torch.__version__, 'transformers', transformers.__version__, 'trl', trl.__version__, 'peft', peft.__version__)" | tee -a "$OUT/gpu.txt"

# A scratch project: the user's params with the sizes of the issue, prepared from $DATA.
work=$(mktemp -d)
mkdir -p "$work/data" && cp -r data/safety "$work/data/" && cp -r params.yaml presets "$work/"
base=${TOKENIZER:-builtin:tiny-llama}
common=(--set "data.source=$DATA" --set "model.base=$base" --set "data.datasets=[pubmedqa,medmcqa,medqa]"
        --set tracking.dvclive=false --set "rehearse.methods=${METHODS:-[sft]}" --set evaluate.batch_size=64)
for d in pubmedqa medmcqa medqa; do
  common+=(--set "data.train_size.$d=$train" --set "data.eval_size.$d=$eval")
done
common+=(--set "data.preferences.max_pairs_per_source=$pairs")
for s in ${SETS:-}; do common+=(--set "$s"); done  # SETS="key=value ...": levers to rehearse with
(cd "$work" && python3 -m medadapt.cli prepare "${common[@]}" 2>&1 | grep -vE "it/s\]|s/it\]" | tail -3)
cp "$work/metrics/prepare.json" "$OUT/prepare.json"

for q in "${modes[@]}"; do
  if [ "$q" = levers ]; then  # scripts/gpu_levers.py: SFT levers one at a time, evaluate's phases
    (cd "$work" && timeout "${LEVERS_TIMEOUT:-540}" python3 "$repo/scripts/gpu_levers.py" "$OUT" "${common[@]}" 2>&1 \
        | grep -vE "it/s\]|s/it\]" > "$OUT/levers.log"; grep -E "^\[levers\]|Error" "$OUT/levers.log" | cut -c1-600)
    continue
  fi
  echo "== rehearse $preset, quantization $q"
  (cd "$work" && timeout "${REHEARSE_TIMEOUT:-900}" python3 -m medadapt.cli rehearse "$preset" "${common[@]}" \
      --set "model.quantization=$q" 2>&1 | grep -vE "it/s\]|s/it\]" | tee "$OUT/rehearse-$q.log" | grep -E "^\[rehearse\]|^  |projected|Error|error" )
  cp "$work"/reports/rehearse/"$preset"-*.json "$OUT/rehearse-$preset-$q.json" 2>/dev/null
  rm -f "$work"/reports/rehearse/"$preset"-*.json
done
rm -rf "$work"
ls -la "$OUT"
