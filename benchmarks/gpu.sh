#!/usr/bin/env bash
# GPU check for a fresh machine with PyTorch (and Lightning) preinstalled and no internet; about 3-5 minutes.
# Usage: benchmarks/gpu.sh CIFAR10_NPZ_DIR   (a folder with cifar10.npz; or a .gpu/ folder with the JPEG archive)
# Runs the GPU tests (tests/test_graph.py: CUDA graph replays train as eager mode does, resume exactly),
# then prints the benchmark table (Lightning vs plain loop, data path vs torchvision, evaluation, CUDA graphs,
# bf16 vs fp32, compiled vs eager, cudnn.benchmark, GPU kernel time and Lightning's own time per step) and
# model4 for 10 epochs with validation accuracy and seconds per epoch, and where a step's host time goes.
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${1:-data}
# Offline machines often have torch and lightning but not jsonargparse: install it from wheels in .whl/,
# fetched beforehand on a connected machine with
#   pip download --no-deps --only-binary=:all: -d .whl jsonargparse docstring-parser typeshed-client torchmetrics \
#     pytest pluggy iniconfig pygments
if ! python3 -c "import jsonargparse, torchmetrics, lightning, tensorboard, pytest" 2>/dev/null; then
  if ! compgen -G ".whl/*.whl" >/dev/null; then
    echo "gpu.sh: jsonargparse, torchmetrics, lightning, tensorboard or pytest is missing and there is no .whl/ (see above)" >&2
    exit 1
  fi
  python3 -m pip install -q --no-index --no-deps --target /tmp/cifar-lightning-site .whl/*.whl
  export PYTHONPATH=/tmp/cifar-lightning-site${PYTHONPATH:+:$PYTHONPATH}
fi
if [ ! -f "$DATA/cifar10.npz" ] && [ -f .gpu/cifar10-jpeg.tar.gz ]; then
  mkdir -p "$DATA" && python3 .gpu/make-cifar10-npz "$DATA"
fi
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
export PYTHONUNBUFFERED=1
python3 -m pytest -q -s -p no:cacheprovider -m gpu || echo "gpu.sh: the GPU tests FAILED (above)"
python3 -m cifar_lightning.bench --data_dir "$DATA" --batch_sizes 32 128 --steps 300 --warmup 30 --gpu_epochs 10
