#!/usr/bin/env bash
# The GPU benchmark suite, one 9-minute run on the GPU machine (one H100/H200, 16 cores; PyTorch
# 2.11 / Python 3.12 there, no Ray: it comes from the carried wheels). Prints one table.
#   here:   bash ../shared/tools/gpu-wheels.sh redis prometheus-client
#   there:  (device tool, carry [".whl"], timeout_s 560)  bash benchmarks/gpu_suite.sh
# 1. core learner updates, DSQN T=8 and DQN, batch 32/128/512, fp32 / bf16 / torch.compile
#    (targets: >= 250k DSQN learner samples/s at b512 on one H200),
# 2. dsqn train's pipeline on Pong with 0 / 4 / 12 env runners x 4 envs: env steps/s while
#    learning and updates/s (target: >= 10,000 env steps/s while learning),
# 3. a short Pong learning run (the paper's defaults, 12 x 4 envs) for what is left.
# Each part has its own time limit so that a slow one cannot eat the others'. Raw logs: $OUT.
# numba is not carried (llvmlite alone would pass the 64 MiB a call may carry): the env
# runners' CPU inference there runs the torch-op LIF (snn/lif_kernels.py falls back by itself).
set -uo pipefail
cd "$(dirname "$0")/.."
python3 -m pip install -q --no-index --no-deps --no-compile --target .site .whl/*.whl
export PYTHONPATH=$PWD/.site:$PWD
OUT=${OUT:-/tmp/gpu-out}
mkdir -p "$OUT"
START=$SECONDS
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader | tee "$OUT/gpu.txt"
python3 -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda)" | tee -a "$OUT/gpu.txt"

# 1. Core updates (~2.5 min): fp32, bf16 and compiled side by side, interleaved.
timeout 170 python3 benchmarks/bench_core.py --device cuda --batches 32,128,512 --T 8 \
  --precisions fp32,bf16 --compiled --no-reference --infer-batches 64 --rounds 7 \
  > "$OUT/core.txt" 2>&1

# 2. Pipeline (~3.5 min): learner on the GPU, env runners on the 16 cores.
timeout 220 python3 benchmarks/bench_pipeline.py --models dsqn --runners 0,4,12 --envs 4 \
  --batch 128 --seconds 15 --rounds 2 --learning-starts 2000 --learner-device cuda \
  --skip-minimal > "$OUT/pipeline.txt" 2>&1

# 3. Pong learning with what is left (at least 60 s).
LEFT=$(( 530 - (SECONDS - START) ))
(( LEFT < 60 )) && LEFT=60
timeout "$LEFT" python3 -m dsqn_rllib.cli train --game pong --learner-device cuda \
  --num-env-runners 12 --envs-per-runner 4 --eval-interval 0 --checkpoint-interval 0 \
  --run-dir "$OUT/runs" --run-id gpu-suite-pong > "$OUT/pong.log" 2>&1

python3 - "$OUT" <<'PY'
import json, pathlib, re, sys
out = pathlib.Path(sys.argv[1])
print("\n| part | variant | batch / layout | ms | samples/s or env steps/s | updates/s |")
print("|---|---|---|---|---|---|")
batch = None
for line in (out / "core.txt").read_text(errors="replace").splitlines():
    m = re.search(r"learner update.*batch (\d+)", line)
    if m:
        batch = m.group(1)
        continue
    m = re.match(r"\s+(DQN.*?|DSQN.*?)\s+([\d.]+)\s+(\d+)\s+([\d.]+)x", line)
    if m and batch:
        print(f"| core | {m.group(1)} | b{batch} | {m.group(2)} | {m.group(3)} | |")
    if "inference" in line:
        batch = None
for line in (out / "pipeline.txt").read_text(errors="replace").splitlines():
    m = re.search(r"dsqn train, (.*?)\s*:\s*([\d,.]+) env steps/s\s+([\d,.]+) updates/s", line)
    if m:
        print(f"| pipeline | DSQN T=8 b128 | {m.group(1)} | | {m.group(2)} | {m.group(3)} |")
metrics = out / "runs" / "gpu-suite-pong" / "metrics.jsonl"
if metrics.exists():
    rows = [json.loads(x) for x in metrics.read_text().splitlines() if x.strip()]
    if rows:
        last = rows[-1]
        keys = ("env_steps", "updates", "episode_return_mean", "env_steps_per_s")
        print("| pong | DSQN T=8 " + " ".join(f"{k}={last.get(k)}" for k in keys) + " | | | | |")
else:
    print("| pong | (no metrics: see pong.log) | | | | |")
PY
tail -n 3 "$OUT/core.txt" "$OUT/pipeline.txt" "$OUT/pong.log"
