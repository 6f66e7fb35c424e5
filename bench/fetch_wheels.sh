#!/usr/bin/env bash
# Wheels a lent GPU machine lacks, into .whl/ (git-ignored), for bench/device_run.sh.
# That machine's image (python 3.12, torch 2.11, accelerate, huggingface-hub, tokenizers,
# safetensors, pyarrow, pandas, pillow, tensorboard, matplotlib) has no TRL, Hydra or
# datasets, and an older transformers; nothing can be downloaded there. Versions are the
# ones vlexp is tested with (the first GPU session's: transformers 5.24, TRL 1.16,
# liger-kernel 0.8.5). About 17 MB; a device call carries at most 64 MiB with the repo.
#   bash bench/fetch_wheels.sh      # from the repository root, on a machine with pip access
set -euo pipefail
cd "$(git rev-parse --show-toplevel)"
exclude="$(git rev-parse --git-common-dir)/info/exclude"
grep -qx '/.whl/' "$exclude" 2>/dev/null || echo '/.whl/' >> "$exclude"
mkdir -p .whl
PY=${PYTHON:-python3}
WHEELS=(
  transformers==5.24.0 trl==1.16.0 peft==0.21.2 datasets==5.2.0 dill==0.4.1 multiprocess==0.70.19
  hydra-core==1.3.8 omegaconf==2.3.1 qwen-vl-utils==0.0.14 liger-kernel==0.8.5
  math-verify==0.9.0 latex2sympy2_extended==1.11.0
)
# datasets 5.2 asks for pyarrow >= 24. The image has a pyarrow (device_run.sh prints its
# version); if it is older, carry this one too (~40 MB): WITH_PYARROW=1 bash bench/fetch_wheels.sh
if [ "${WITH_PYARROW:-0}" = 1 ]; then WHEELS+=(pyarrow==26.0.1); fi
for wheel in "${WHEELS[@]}"; do
  "$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
    -d .whl "$wheel"
done
# Hydra's parser runtime is published as a source archive only: build its (pure-Python) wheel.
"$PY" -m pip wheel -q --no-deps -w .whl antlr4-python3-runtime==4.9.3
du -sh .whl
