#!/usr/bin/env bash
# The reference result on real data: every method on one GPU with the default SmolLM2-135M-Instruct,
# on the real public samples, 100 eval items per dataset, SFT on all the remaining train items.
#
#   scripts/gpu_reference.sh DATA OUT     # DATA: a folder laid out like ../shared/data
#   EVAL=4 TRAIN=8 BASE=builtin:tiny-llama GRPO_PROMPTS=1 scripts/gpu_reference.sh ../shared/data /tmp/out  # CPU smoke test
#
# Runs the stages through `python -m medadapt.cli` in dvc.yaml's order (scripts/scratch.sh), in a
# scratch copy of the project whose params.yaml `medadapt params --write` writes with the
# overrides below, then packs each method's params.yaml, metrics/ and reports/ into
# OUT/runs.tar.gz for `medadapt compare --runs` and `medadapt power --runs` (each run's metrics/
# holds every training stage's metrics too: grpo.json's reward first/last/mean).
set -euo pipefail
DATA=$(realpath "$1"); OUT=$(realpath "$2"); REPO=$(pwd)
WORK=${WORK:-/tmp/reference}
mkdir -p "$OUT"
. "$REPO/scripts/scratch.sh"
n_eval=${EVAL:-100} n_train=${TRAIN:-100000}  # 100000: every train item that remains
sets=(--set "data.source=$DATA" --set "data.datasets=[pubmedqa,medmcqa,medqa]" --set "model.base=${BASE:-builtin:smollm2-135m}"
      --set data.preferences.max_pairs_per_source=64 --set train.batch_size=8 --set train.save_steps=100000
      --set grpo.prompts_per_dataset=${GRPO_PROMPTS:-16} --set grpo.num_generations=8 --set grpo.max_completion_length=64
      --set ++grpo.batch_size=16 --set evaluate.batch_size=64 --set evaluate.max_new_tokens=64
      --set evaluate.safety_prompts=30 --set tracking.dvclive=false)
for d in pubmedqa medmcqa medqa; do sets+=(--set "data.eval_size.$d=$n_eval" --set "data.train_size.$d=$n_train"); done
scratch_project "$WORK" "${sets[@]}"
for stage in prepare "sft pubmedqa" "sft medmcqa" "sft medqa" icl rm dpo grpo; do run $stage; done
mkdir -p runs
for method in base icl sft_pubmedqa sft_medmcqa sft dpo grpo; do
  run evaluate --set method=$method
  save_run $method
  gzip -c reports/eval_samples.jsonl > runs/$method/reports/eval_samples.jsonl.gz
done
tar czf "$OUT/runs.tar.gz" runs
