#!/usr/bin/env bash
# GPU run, for a session lent a GPU machine: verify parity on the GPU, run the benchmark set,
# write results under benchmarks/results/<device>/. One script, well under 8 minutes.
#
#   benchmarks/gpu.sh            on the GPU machine (run from the repository root)
#   benchmarks/gpu.sh --dry-run  print the commands only (the default test suite does this)
#
# The lent machines cannot download. Their image has CUDA builds of torch, jax, flax and optax
# but no TensorFlow, and a CUDA TensorFlow wheel is far over what can be carried, so Keras runs
# only where `import tensorflow` works; the script says which frameworks it used.
set -euo pipefail
cd "$(dirname "$0")/.."
DRY_RUN=""
[ "${1:-}" = "--dry-run" ] && DRY_RUN=1
run() { echo "+ $*"; if [ -z "$DRY_RUN" ]; then "$@"; fi; }

PYTHON=${PYTHON:-python3}
# parity itself is pure Python; install it without touching the image's CUDA frameworks.
run "$PYTHON" -m pip install -q --no-deps --no-build-isolation -e .
FRAMEWORKS=torch,jax
if [ -z "$DRY_RUN" ] && "$PYTHON" -c "import tensorflow, keras, onnx" 2>/dev/null; then FRAMEWORKS=torch,keras,jax; fi
echo "frameworks: $FRAMEWORKS"
run nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
# Parity on the GPU at the tiny presets: torch placed on CUDA, JAX/TF on their default GPU
# device; TF32 is off (parity.set_deterministic), GPU kernels must still agree to 1e-5.
run env PARITY_TORCH_DEVICE=cuda "$PYTHON" -m parity.cli check --frameworks "$FRAMEWORKS" --dtype all --train
run timeout 420 "$PYTHON" -m parity.cli bench perceptron mlp lenet5 --device gpu --framework "$FRAMEWORKS" \
    --batch 256 4096 --rounds 30 --save benchmarks/results
run "$PYTHON" -m parity.cli report
