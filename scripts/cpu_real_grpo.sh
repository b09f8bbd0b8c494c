#!/usr/bin/env bash
# GRPO on the real samples, on a CPU: does the correctness reward rise? And `base` under today's
# evaluate on the reference's 100 items per dataset. SmolLM2-135M (the default base), SFT on 40
# train items per dataset, rm on the default pairs, then grpo on 12 train prompts per dataset
# (groups of 4, 32 new tokens, 8 answers a step, 2 epochs: 36 steps), then evaluate base and grpo.
#
#   scripts/cpu_real_grpo.sh DATA OUT     # DATA: a folder laid out like ../shared/data
#
# About 1.5 hours on 2 cores (grpo alone 20-40 minutes). Runs the stages through
# `python -m medadapt.cli` in a scratch copy of the project, as scripts/gpu_reference.sh does, and
# copies metrics/grpo.json and rm.json, grpo's curves (dvclive/grpo) and each method's run folder (for
# `medadapt compare --runs`) to OUT.
set -euo pipefail
DATA=$(realpath "$1"); OUT=$(realpath -m "$2"); REPO=$(pwd)
WORK=${WORK:-/tmp/cpu_real_grpo}
rm -rf "$WORK" && mkdir -p "$WORK" "$OUT" && cp -r "$REPO/data" "$REPO/params.yaml" "$WORK"/ && cd "$WORK"
export PYTHONPATH="$REPO/src${PYTHONPATH:+:$PYTHONPATH}"
sets=(--set "data.source=$DATA" --set "data.datasets=[pubmedqa,medmcqa,medqa]" --set train.save_steps=100000
      --set grpo.prompts_per_dataset=12 --set grpo.num_generations=4 --set grpo.max_completion_length=32
      --set ++grpo.batch_size=8 --set ++grpo.epochs=2 --set grpo.learning_rate=0.0001
      --set evaluate.batch_size=16 --set evaluate.safety_prompts=30)
for d in pubmedqa medmcqa medqa; do sets+=(--set "data.eval_size.$d=100" --set "data.train_size.$d=40"); done
python3 -m medadapt.cli params --write "${sets[@]}" > /dev/null
run() { echo "== medadapt $*"; local start=$SECONDS; python3 -m medadapt.cli "$@" 2>&1 | grep --line-buffered -vE "it/s\]|s/it\]"; echo "   $((SECONDS - start)) s"; }
for stage in prepare "sft pubmedqa" "sft medmcqa" "sft medqa" rm grpo; do run $stage; done
cp metrics/grpo.json metrics/rm.json params.yaml "$OUT"/ && cp -r dvclive/grpo "$OUT"/curves
for method in base grpo; do
  run evaluate --set method=$method
  mkdir -p runs/$method/reports && cp -r metrics runs/$method/ && cp -r reports/cost reports/eval_items.json \
    reports/eval_details.json runs/$method/reports/
  sed -E "s/^method: [a-z_]+/method: $method/" params.yaml > runs/$method/params.yaml
done  # reports/eval_samples.jsonl stays behind: its prompts hold the data's text
cp -r runs "$OUT"/
