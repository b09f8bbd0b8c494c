# Sourced by gpu_reference.sh and cpu_real_grpo.sh: the stages of a scratch copy of the project, run
# through `python -m medadapt.cli` in dvc.yaml's order (DVC itself is not needed).

# scratch_project WORK --set ...: a fresh WORK with the project's data/ and params.yaml, the overrides
# written into its params.yaml; the shell is left in WORK.
scratch_project() {
  local work=$1; shift
  rm -rf "$work" && mkdir -p "$work" && cp -r "$REPO/data" "$REPO/params.yaml" "$work"/ && cd "$work"
  export PYTHONPATH="$REPO/src${PYTHONPATH:+:$PYTHONPATH}"
  python3 -m medadapt.cli params --write "$@" > /dev/null
}

# run STAGE [ARGS]: one stage, its progress bars left out, its wall seconds printed.
run() { echo "== medadapt $*"; local start=$SECONDS; python3 -m medadapt.cli "$@" 2>&1 | grep --line-buffered -vE "it/s\]|s/it\]"; echo "   $((SECONDS - start)) s"; }

# save_run METHOD: the last evaluate's results as runs/METHOD, the layout `medadapt compare --runs` reads.
save_run() {
  local method=$1
  mkdir -p "runs/$method/reports" && cp -r metrics "runs/$method/" && cp -r reports/cost reports/eval_items.json \
    reports/eval_details.json reports/plots "runs/$method/reports/"
  sed -E "s/^method: [a-z_]+/method: $method/" params.yaml > "runs/$method/params.yaml"
}
