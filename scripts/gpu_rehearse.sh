#!/usr/bin/env bash
# Issue 22 on one GPU: the speed levers one at a time (`levers`), then `medadapt rehearse llama-3.1-8b`
# end to end with the best of them, base in bf16 (`none`) or in 4-bit NF4 (`4bit`): the real stages,
# each in its own process, on a seeded random model of Llama-3.1-8B's shapes, on the real
# PubMedQA/MedMCQA/MedQA samples at 400 train and 100 eval items per dataset and 64 preference pairs
# per source, all six methods evaluated, beside plain LoRA steps of each stage's own rows.
#
# Usage (repository root), one call each, each under 9 minutes on an H200:
#   DATA=/path/to/data TOKENIZER=tok OUT=out WHEELS=wheels scripts/gpu_rehearse.sh levers  # -> out/levers/
#   DATA=/path/to/data TOKENIZER=tok OUT=out scripts/gpu_rehearse.sh none     # -> out/rehearse-llama-3.1-8b-none.json
#   DATA=/path/to/data TOKENIZER=tok OUT=out scripts/gpu_rehearse.sh 4bit     # -> out/rehearse-llama-3.1-8b-4bit.json
#   TINY=1 OUT=out scripts/gpu_rehearse.sh levers none                        # the same on a CPU, tiny shapes, data/sample
#   levers     scripts/gpu_levers.py: plain-step variants, each SFT lever on the real stage, evaluate's phases;
#              writes out/levers/best_sets.txt, the overrides `none` and `4bit` then rehearse with
#   DATA       a folder laid out as ../shared/data (pubmedqa/ori_pqal.json, medmcqa/*.jsonl, medqa/*.jsonl)
#   TOKENIZER  optional: a folder with the tokenizer files of models/base (SmolLM2's, as `medadapt prepare`
#              writes them), so that token counts are a real tokenizer's; else the tiny BPE of builtin:tiny-llama
#   WHEELS     optional: a folder of wheels to install first, offline (trl, datasets, bitsandbytes, liger-kernel)
#   SETS       optional: space-separated key=value params to rehearse with (default: out/levers/best_sets.txt if
#              there, else the presets' SFT levers, packing and Liger); SETS_4BIT the same for `4bit` (default:
#              SETS without compiled layers, which bitsandbytes' 4-bit layers were never measured with)
#   METHODS    optional: the methods evaluate scores (default: all six)
#   PRESET, TRAIN, EVAL, PAIRS   optional: other shapes and sizes; BUDGET_S, REHEARSE_TIMEOUT: time limits
# Needs besides torch/transformers/peft/accelerate: trl, datasets, pydantic, bitsandbytes (4-bit), liger-kernel;
# not dvc, dvclive (tracking is off here), gguf, rouge-score (no RadQA here) or wandb.
set -uo pipefail
: "${OUT:?set OUT to the output folder}"
modes=("$@")
[ ${#modes[@]} -eq 0 ] && modes=(levers none 4bit)
repo=$PWD
if [ "${TINY:-0}" = 1 ]; then  # the CPU check: tiny shapes and sizes, the project's sample data
  : "${DATA:=$repo/data/sample}" "${PRESET:=tiny}" "${TRAIN:=8}" "${EVAL:=4}" "${PAIRS:=4}"
  : "${BUDGET_S:=3000}" "${REHEARSE_TIMEOUT:=3000}"
fi
: "${DATA:?set DATA to the data folder}"
preset=${PRESET:-llama-3.1-8b} train=${TRAIN:-400} eval=${EVAL:-100} pairs=${PAIRS:-64}
mkdir -p "$OUT"
export HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1 WANDB_MODE=disabled TOKENIZERS_PARALLELISM=false
export PYTHONPATH="$repo/src${PYTHONPATH:+:$PYTHONPATH}"
if [ -n "${WHEELS:-}" ]; then
  python3 -m pip install --quiet --no-index --find-links "$WHEELS" --no-deps "$WHEELS"/*.whl 2>&1 | tail -3
fi
{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null || echo "no GPU"
  python3 -c "import torch, transformers, trl, peft; print('torch', torch.__version__, 'transformers', transformers.__version__, 'trl', trl.__version__, 'peft', peft.__version__)"
  python3 -c "import liger_kernel, importlib.metadata as m; print('liger-kernel', m.version('liger-kernel'))" 2>/dev/null || echo "liger-kernel: not installed"
} | tee "$OUT/gpu.txt"

# A scratch project: the user's params with the sizes of the issue, prepared from $DATA.
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/data" && cp -r data/safety data/judges "$work/data/" && cp -r params.yaml presets "$work/"
base=${TOKENIZER:-builtin:tiny-llama}
common=(--set "data.source=$DATA" --set "model.base=$base" --set "data.datasets=[pubmedqa,medmcqa,medqa]"
        --set tracking.dvclive=false --set evaluate.batch_size=64)
[ -n "${METHODS:-}" ] && common+=(--set "rehearse.methods=$METHODS")
for d in pubmedqa medmcqa medqa; do
  common+=(--set "data.train_size.$d=$train" --set "data.eval_size.$d=$eval")
done
common+=(--set "data.preferences.max_pairs_per_source=$pairs")
(cd "$work" && python3 -m medadapt.cli prepare "${common[@]}" 2>&1 | grep --line-buffered -vE "it/s\]|s/it\]" | tail -3)
cp "$work/metrics/prepare.json" "$OUT/prepare.json"

default_sets=""
for d in pubmedqa medmcqa medqa; do default_sets="$default_sets sft.$d.packing=true sft.$d.use_liger_kernel=true"; done

for q in "${modes[@]}"; do
  if [ "$q" = levers ]; then
    echo "== levers ($preset): plain steps, each SFT lever on the stage, evaluate's phases"
    mkdir -p "$OUT/levers"
    (cd "$work" && PRESET=$preset BUDGET_S=${BUDGET_S:-440} timeout "${LEVERS_TIMEOUT:-520}" \
        python3 "$repo/scripts/gpu_levers.py" "$OUT/levers" "${common[@]}" 2>&1 \
        | grep --line-buffered -vE "it/s\]|s/it\]" > "$OUT/levers/levers.log"; grep -E "^\[levers\]   |Error" "$OUT/levers/levers.log" | cut -c1-400)
    continue
  fi
  sets=${SETS:-$(cat "$OUT/levers/best_sets.txt" 2>/dev/null || echo "$default_sets")}
  if [ "$q" = 4bit ]; then
    sets=${SETS_4BIT:-$(echo "$sets" | tr ' ' '\n' | grep -v compile_layers | tr '\n' ' ')}
  fi
  echo "== rehearse $preset, quantization $q, with: $sets"
  args=("${common[@]}" --set "model.quantization=$q")
  for s in $sets; do args+=(--set "$s"); done
  (cd "$work" && timeout --kill-after=20 "${REHEARSE_TIMEOUT:-500}" python3 -m medadapt.cli rehearse "$preset" "${args[@]}" 2>&1 \
      | grep --line-buffered -vE "it/s\]|s/it\]" | tee "$OUT/rehearse-$q.log" | grep -E "^\[rehearse\]|^  |experiment took|Error|error")
  cp "$work"/reports/rehearse/"$preset"-*.json "$OUT/rehearse-$preset-$q.json" 2>/dev/null
  rm -f "$work"/reports/rehearse/"$preset"-*.json
done
ls -la "$OUT"
