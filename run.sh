#!/usr/bin/env bash
# Grader-like local evaluation: SDR per song and latency against the MDX budget.
#
#   bash run.sh                                   # default model, synthetic demo set, timed against the round-2 limit
#   bash run.sh --checkpoint CKPT                 # any model file
#   bash run.sh --data DIR --checkpoint CKPT ...  # every option of `python -m evaluator --help` passes through
#
# In the grader (RESULTS_DATASET_PATH set, no arguments) it runs `python predict.py` instead:
# TEST_DATASET_PATH/<song>/mixture.wav -> RESULTS_DATASET_PATH/<song>/<source>.wav.
# First use creates .venv with the pinned requirements; the demo set is generated into data/demo
# when absent. Results go to results/<timestamp>/ (and the link results/latest) unless --out is
# given; MDX_RESULTS_DIR moves that results folder.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
if [ $# -eq 0 ] && [ -n "${RESULTS_DATASET_PATH:-}" ]; then
  # Inside the AIcrowd grader (it sets RESULTS_DATASET_PATH and runs run.sh in the environment
  # it built from environment.yml, without network): write stems, as the starter kit's run.sh did.
  exec python "$root/predict.py"
fi
. "$root/scripts/ensure_env.sh"
export PYTHONPATH="$root${PYTHONPATH:+:$PYTHONPATH}"

out_given=0
for arg in "$@"; do
  case "$arg" in
    --out|--out=*) out_given=1 ;;
    -h|--help) exec python -m evaluator --help ;;
  esac
done
args=("$@")
results="${MDX_RESULTS_DIR:-$root/results}"
if [ "$out_given" = 0 ]; then
  stamp="$(date +%Y%m%d-%H%M%S)"
  [ -e "$results/$stamp" ] && stamp="$stamp-$$"  # two runs started in the same second
  run_dir="$results/$stamp"
  args+=(--out "$run_dir")
fi

set +e
python -m evaluator "${args[@]}"
status=$?
set -e
if [ "$out_given" = 0 ] && [ -f "$run_dir/report.md" ]; then
  ln -sfn "$stamp" "$results/latest"
  echo "latest run: $results/latest -> $stamp"
fi
exit "$status"
