# Sourced by the GPU scripts on a fresh machine with PyTorch and Lightning preinstalled and no internet:
# installs what is missing from wheels in .whl/ and builds DATA/cifar10.npz from a .gpu/ copy of the JPEG archive.
# Fetch the wheels beforehand on a connected machine with
#   pip download --no-deps --only-binary=:all: -d .whl jsonargparse docstring-parser typeshed-client
# (add torchmetrics pytest pluggy iniconfig pygments where the machine lacks them), and copy
# ../shared/data/{cifar10-jpeg.tar.gz,make-cifar10-npz} into .gpu/.
if ! python3 -c "import jsonargparse, torchmetrics, lightning, tensorboard, pytest" 2>/dev/null; then
  if ! compgen -G ".whl/*.whl" >/dev/null; then
    echo "gpu-setup.sh: jsonargparse, torchmetrics, lightning, tensorboard or pytest is missing and there is no .whl/" >&2
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
