#!/usr/bin/env bash
# One call on a lent GPU machine: install the carried wheels, check the GPU fast paths, run
# the benchmark of the real command, and leave every result under $OUT.
#   here:   bash bench/fetch_wheels.sh          (once; .whl/ is git-ignored)
#   device: run(command="bash bench/device_run.sh", carry=[".whl"], timeout_s=600)
#   device: run(command="BENCH_BUDGET=440 bash bench/device_run.sh --plan qwen3 --timeout 240", ...)
#   device: run(command="BENCH_BUDGET=500 bash bench/device_run.sh --plan rollout --timeout 200", ...)
#           (rollout=hf vs hf_fast, issue 27: the realistic-batch pairs first; bench/README.md)
# Budget (one H100 or H200): ~30 s install, bench/gpu.py's own budget (BENCH_BUDGET, default
# 440 s, each case with its own timeout), then the GPU-marked tests (at most 70 s). Extra
# arguments go to bench/gpu.py.
set -uo pipefail
OUT=${OUT:-/tmp/vlexp-device-out}
mkdir -p "$OUT"
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
  --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD/src:$PWD PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 \
  WANDB_MODE=disabled TOKENIZERS_PARALLELISM=false VLEXP_CACHE=/tmp/vlexp-cache
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
python3 - <<'PY' || exit 1
import importlib.metadata as m
for name in ("torch", "transformers", "trl", "peft", "accelerate", "datasets", "pyarrow",
             "fsspec", "huggingface-hub", "tokenizers", "liger-kernel", "hydra-core"):
    print(f"{name} {m.version(name)}")
import datasets, hydra, trl  # noqa: E401,F401  (fails here, not in the first run, if one is missing)
PY
df -h / /tmp | tail -n +2
python3 bench/gpu.py --out "$OUT" --budget "${BENCH_BUDGET:-440}" "$@" 2>&1 | tee "$OUT/bench.log"
status=${PIPESTATUS[0]}
# The GPU-marked tests (liger on the tiny model, perf/* on a GPU), in what time is left.
timeout 70 python3 -m pytest tests/gpu -m gpu -x -q -p no:cacheprovider > "$OUT/gpu-tests.log" 2>&1
echo "gpu tests: exit $? ($(tail -1 "$OUT/gpu-tests.log"))"
exit "$status"
