"""Reproduce a CIFAR-10 ConvNet study with PyTorch Lightning."""

__version__ = "0.1.0"
