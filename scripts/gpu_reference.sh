#!/usr/bin/env bash
# The reference result on real data: every method on the GPU with the default SmolLM2-135M-Instruct,
# on the real public samples, 100 eval items per dataset, SFT on all the remaining train items.
#
#   scripts/gpu_reference.sh DATA OUT     # DATA: a folder laid out like ../shared/data
#   EVAL=4 TRAIN=8 BASE=builtin:tiny-llama scripts/gpu_reference.sh ../shared/data /tmp/out   # a CPU smoke test
#
# Runs the stages through `python -m medadapt.cli` exactly as dvc.yaml does (DVC itself is not
# needed: the stage order is dvc.yaml's), in a scratch copy of the project, then packs each
# method's metrics/ and reports/ into OUT/runs.tar.gz for `medadapt compare --runs`.
set -euo pipefail
DATA=$(realpath "$1"); OUT=$(realpath "$2"); REPO=$(pwd)
WORK=${WORK:-/tmp/reference}
rm -rf "$WORK" && mkdir -p "$WORK" && cp -r "$REPO/data" "$REPO/params.yaml" "$WORK"/ && cd "$WORK"
python3 - "$DATA" "${EVAL:-100}" "${TRAIN:-100000}" "${BASE:-builtin:smollm2-135m}" <<'PY'
import sys, yaml
tree = yaml.safe_load(open("params.yaml"))
d = tree["data"]
d["source"], d["datasets"] = sys.argv[1], ["pubmedqa", "medmcqa", "medqa"]
n_eval, n_train = int(sys.argv[2]), int(sys.argv[3])
d["eval_size"].update(pubmedqa=n_eval, medmcqa=n_eval, medqa=n_eval)
d["train_size"].update(pubmedqa=n_train, medmcqa=n_train, medqa=n_train)  # 100000: all that remain
tree["model"]["base"] = sys.argv[4]
d["files"]["medmcqa"]["eval"] = "medmcqa/*dev*.jsonl"
d["files"]["medqa"]["eval"] = "medqa/*test*.jsonl"
d["preferences"]["max_pairs_per_source"] = 64
for section in [*tree["sft"].values(), tree["rm"], tree["dpo"]]:
    section.update(batch_size=8, save_steps=100000)  # no checkpoint every few steps on a GPU
tree["evaluate"].update(batch_size=64, max_new_tokens=64)
tree["tracking"]["dvclive"] = False
yaml.safe_dump(tree, open("params.yaml", "w"), sort_keys=False)
PY
run() { echo "== medadapt $*"; local start=$SECONDS; python3 -m medadapt.cli "$@"; echo "   $((SECONDS - start)) s"; }
run check
for stage in prepare "sft pubmedqa" "sft medmcqa" "sft medqa" icl rm pairs dpo; do run $stage; done
mkdir -p runs
for method in base icl sft_pubmedqa sft_medmcqa sft dpo; do
  run evaluate --set method=$method
  mkdir -p runs/$method/reports && cp -r metrics runs/$method/ && cp -r reports/cost reports/eval_items.json \
    reports/eval_details.json reports/plots reports/pubmedqa_confusion.png runs/$method/reports/
  gzip -c reports/eval_samples.jsonl > runs/$method/reports/eval_samples.jsonl.gz
done
tar czf "$OUT/runs.tar.gz" runs
