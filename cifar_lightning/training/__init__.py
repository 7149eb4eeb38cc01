"""The training core: the data, the network, the LightningModule and what a training step needs (augmentation,
CUDA graphs, calibration). Uses nothing of the package but ``errors`` and ``atomic``."""
