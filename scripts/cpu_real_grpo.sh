#!/usr/bin/env bash
# GRPO on the real samples, on a CPU: does the correctness reward rise? And `base` under today's
# evaluate on the reference's 100 items per dataset. SmolLM2-135M (the default base), SFT on 40
# train items per dataset, rm on the default pairs, then grpo on 12 train prompts per dataset
# (groups of 4, 32 new tokens, 8 answers a step, 2 epochs: 36 steps), then evaluate base and grpo.
#
#   scripts/cpu_real_grpo.sh DATA OUT     # DATA: a folder laid out like ../shared/data
#   EVAL=4 TRAIN=8 BASE=builtin:tiny-llama GRPO_PROMPTS=1 scripts/cpu_real_grpo.sh ../shared/data /tmp/out  # smoke test
#
# About 1.5 hours on 2 cores (grpo alone 20-40 minutes). The stages run in a scratch copy of the
# project (scripts/scratch.sh), as scripts/gpu_reference.sh runs them. OUT gets metrics/grpo.json
# and rm.json, the params.yaml, grpo's curves (dvclive/grpo as curves/) and runs/ (base and grpo,
# for `medadapt compare --runs`); reports/eval_samples.jsonl stays behind: its prompts hold the data's text.
set -euo pipefail
DATA=$(realpath "$1"); OUT=$(realpath -m "$2"); REPO=$(pwd)
WORK=${WORK:-/tmp/cpu_real_grpo}
mkdir -p "$OUT"
. "$REPO/scripts/scratch.sh"
sets=(--set "data.source=$DATA" --set "data.datasets=[pubmedqa,medmcqa,medqa]" --set "model.base=${BASE:-builtin:smollm2-135m}"
      --set train.save_steps=100000
      --set grpo.prompts_per_dataset=${GRPO_PROMPTS:-12} --set grpo.num_generations=4 --set grpo.max_completion_length=32
      --set ++grpo.batch_size=8 --set ++grpo.epochs=2 --set grpo.learning_rate=0.0001
      --set evaluate.batch_size=16 --set evaluate.safety_prompts=30)
for d in pubmedqa medmcqa medqa; do sets+=(--set "data.eval_size.$d=${EVAL:-100}" --set "data.train_size.$d=${TRAIN:-40}"); done
scratch_project "$WORK" "${sets[@]}"
for stage in prepare "sft pubmedqa" "sft medmcqa" "sft medqa" rm grpo; do run $stage; done
cp metrics/grpo.json metrics/rm.json params.yaml "$OUT"/ && rm -rf "$OUT/curves" && cp -r dvclive/grpo "$OUT"/curves
for method in base grpo; do
  run evaluate --set method=$method
  save_run $method
done
rm -rf "$OUT/runs" && cp -r runs "$OUT"/
