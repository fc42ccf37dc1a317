#!/usr/bin/env bash
# One 9-minute run on the GPU machine (one H200, 16 cores): DSQN on Pong with the paper's
# defaults, 12 env runners x 4 envs, until the evaluation reaches +18 or the time runs out.
# Prepare here:  bash ../shared/tools/gpu-wheels.sh redis prometheus-client matplotlib
# Run there (device tool, carry [".whl"]):  bash studies/gpu_pong.sh
# Results land in $OUT (metrics.jsonl, evaluations.jsonl, the console log).
set -uo pipefail
cd "$(dirname "$0")/.."
python3 -m pip install -q --no-index --no-deps --no-compile --target .site .whl/*.whl
export PYTHONPATH=$PWD/.site:$PWD
OUT=${OUT:-/tmp/gpu-out}
mkdir -p "$OUT"
nvidia-smi --query-gpu=name,memory.total --format=csv | tee "$OUT/gpu.txt"
timeout 520 python3 -m dsqn_rllib.cli train --game pong --learner-device cuda \
  --num-env-runners 12 --envs-per-runner 4 --eval-interval 250000 --eval-episodes 10 \
  --stop-eval-return 18 --run-dir "$OUT/runs" --run-id gpu-pong 2>&1 | tail -n 400 > "$OUT/train.log"
tail -n 5 "$OUT/train.log"
