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
source benchmarks/gpu-setup.sh  # wheels from .whl/, data from .gpu/
python3 -m pytest -q -s -p no:cacheprovider -m gpu || echo "gpu.sh: the GPU tests FAILED (above)"
python3 benchmarks/bench.py --data.data_dir "$DATA" --batch_sizes 32 128 --steps 300 --warmup 30 --gpu_epochs 10
