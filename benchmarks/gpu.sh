#!/usr/bin/env bash
# GPU run, for a session lent a GPU machine: verify parity on the GPU, run the benchmark set,
# write results under $RESULTS/<device>/ (default benchmarks/results). One script, under 9 minutes.
#
#   benchmarks/gpu.sh                 on the GPU machine (run from the repository root)
#   benchmarks/gpu.sh --transformers  only the transformers' headline (block 4): a session's device
#                                     time does not hold both
#   benchmarks/gpu.sh --dry-run       print the commands only (the default test suite does this)
#
# The lent machines cannot download. Their image has CUDA builds of torch, jax, flax and optax
# but no TensorFlow, and a CUDA TensorFlow wheel is far over what can be carried, so Keras runs
# only where `import tensorflow` works; the script says which frameworks it used.
# Every stage has its own time limit and the script goes on past a failed stage, so one broken
# stage (a framework version the image differs in) still leaves the others' results.
set -uo pipefail
cd "$(dirname "$0")/.."
DRY_RUN=""
SET=all
for arg in "$@"; do
    case "$arg" in
        --dry-run) DRY_RUN=1 ;;
        --transformers) SET=transformers ;;
        *) echo "unknown argument: $arg (expected --dry-run, --transformers)"; exit 2 ;;
    esac
done
FAILED=()
run() {
    echo "+ $*"
    [ -n "$DRY_RUN" ] && return 0
    "$@" || { echo "!! stage failed (exit $?): $*"; FAILED+=("$1 ${*:2:3}"); }
}

PYTHON=${PYTHON:-python3}
RESULTS=${RESULTS:-benchmarks/results}
# parity itself is pure Python: run it from the checkout, leaving the image's CUDA frameworks alone.
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
FRAMEWORKS=torch,jax
if [ -z "$DRY_RUN" ] && "$PYTHON" -c "import tensorflow, keras" 2>/dev/null; then FRAMEWORKS=torch,keras,jax; fi
echo "frameworks: $FRAMEWORKS"
run nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv
run "$PYTHON" -c "import sys, torch, jax, flax, optax, numpy; print(sys.version.split()[0], 'torch', torch.__version__,
  'jax', jax.__version__, 'flax', flax.__version__, 'optax', optax.__version__, 'numpy', numpy.__version__, jax.devices())"

bench() {  # SECONDS_PER_FRAMEWORK BENCH-ARGS...
    for framework in ${FRAMEWORKS//,/ }; do
        run timeout "$1" "$PYTHON" -m parity.cli bench "${@:2}" --device gpu --framework "$framework" \
            --save "$RESULTS"
    done
}

if [ "$SET" = all ]; then
# 1. Parity on the GPU at the tiny presets, one architecture per family: torch placed on CUDA,
# JAX (and TF) on their default GPU device. TF32 is off (parity.set_deterministic), so GPU kernels
# must still agree to the CPU tolerances. No preallocation: torch and JAX share the GPU here.
# (Eight presets did not finish in 90 s on an H100 in 2026-11: JAX compiles every model on the GPU.)
run env PARITY_TORCH_DEVICE=cuda XLA_PYTHON_CLIENT_PREALLOCATE=false timeout 150 \
    "$PYTHON" -m parity.cli check mlp lenet5 resnet18 lstm \
    --frameworks "$FRAMEWORKS" --dtype all --train

# 2. Throughput, float32 (TF32 off, the parity setting) and bf16, eager and compiled, inference and
# a training step. One process per framework and run: a time limit then kills exactly the run
# that overran (the bench command's own per-framework subprocesses would outlive it).
# Limits from the 2026-11 H100 run: JAX's eager mode (op-by-op compilation) did not finish these.
bench 60 mlp lenet5 --batch 4096 --rounds 20 --mode compiled
bench 100 resnet50 --batch 128 --rounds 10 --dtype float32
bench 90 resnet50 --batch 128 --rounds 10 --dtype bf16 --mode compiled
bench 45 lstm --batch 64 --rounds 10 --mode compiled

# ---- 3. Data parallelism (parity.distributed, docs/distributed.md) -----------------------------
# The GPU variant: one replica per GPU, torch DDP over NCCL and JAX's mesh over the GPUs
# (Keras only where TensorFlow imports), so a one-GPU machine gives the 1-replica point and runs
# the NCCL path; then the CPU scaling curve over this machine's cores (the CPU engines: torch
# gloo ranks, XLA host devices). Every rank of a launch is stopped with it (parity's own timeout).
GPUS=$(nvidia-smi -L 2>/dev/null | grep -c "^GPU" || true)
REPLICAS=1; for n in 2 4 8; do [ "${GPUS:-0}" -ge "$n" ] && REPLICAS="$REPLICAS,$n"; done
run env PARITY_TORCH_DEVICE=cuda XLA_PYTHON_CLIENT_PREALLOCATE=false timeout 150 \
    "$PYTHON" -m parity.cli train lenet5 --preset tiny --dataset digits --devices 1 --epochs 1 --steps 20 \
    --optimizer sgd --lr 0.05 --momentum 0.9 --framework torch
run env XLA_PYTHON_CLIENT_PREALLOCATE=false timeout 150 "$PYTHON" benchmarks/distributed_scaling.py --device gpu \
    --frameworks "${FRAMEWORKS/keras,/}" --replicas "$REPLICAS" --arch resnet18 --batch 256 --steps 20 --out "$RESULTS"
run timeout 200 "$PYTHON" benchmarks/distributed_scaling.py --device cpu --frameworks "$FRAMEWORKS" \
    --replicas 1,2,4,8 --arch lenet5 --batch 256 --steps 20 --out "$RESULTS"
# ---- end of the data-parallel block ----------------------------------------------------------
fi

# 4. The transformers' headline (docs/transformers.md): GPT-2 124M, BERT-base and T5-small compiled,
# bf16 and float32, inference and a training step, then parity of the tiny presets on the GPU.
# Ordered by value: one lease (15 minutes of device time, a machine's start included) holds about
# the bf16 rows and the check; the float32 rows come last, for whatever time is left.
if [ "$SET" = transformers ]; then
    # First, 30 s: the embedding gradient alone, gather (scatter-add) vs one-hot matmul, the cause
    # proposed for JAX's slow bf16 T5 and BERT training steps (docs/benchmarks.md, "The transformers on the H100").
    DEVICE_DIR="$RESULTS/GPU-NAME"
    [ -z "$DRY_RUN" ] && DEVICE_DIR="$RESULTS/$("$PYTHON" -c "from parity.bench import device_label; print(device_label('gpu'))")"
    run mkdir -p "$DEVICE_DIR"
    run timeout 120 "$PYTHON" -m pytest benchmarks/test_embedding_grad.py -q -p no:cacheprovider --bench-device gpu \
        -k "${FRAMEWORKS//,/ or }" --benchmark-json "$DEVICE_DIR/embedding-grad.json"
    bench 100 bert --batch 32 --rounds 10 --dtype bf16 --mode compiled
    bench 130 t5 --batch 16 --rounds 10 --dtype bf16 --mode compiled
    bench 100 gpt2 --batch 8 --rounds 10 --dtype bf16 --mode compiled
    run env PARITY_TORCH_DEVICE=cuda XLA_PYTHON_CLIENT_PREALLOCATE=false timeout 120 \
        "$PYTHON" -m parity.cli check mha transformer bert gpt2 t5 --frameworks "$FRAMEWORKS" --dtype float32
    bench 150 gpt2 bert t5 --batch 8 --rounds 5 --dtype float32 --mode compiled
fi

[ -z "$DRY_RUN" ] && ls -R "$RESULTS" | tail -20
if [ ${#FAILED[@]} -gt 0 ]; then echo "failed stages: ${FAILED[*]}"; exit 1; fi
echo "all stages passed"
