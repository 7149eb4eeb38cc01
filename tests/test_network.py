import torch
from torch import nn

from cifar_lightning.training.network import ConvNet


def test_output_shape_and_parameter_count():
    net = ConvNet()
    assert net(torch.zeros(4, 3, 32, 32)).shape == (4, 10)
    assert sum(p.numel() for p in net.parameters()) == 890_410


def test_no_dropout_layers_without_dropout():
    assert not any(isinstance(m, nn.Dropout) for m in ConvNet(0.0).modules())


def test_dropout_follows_each_pool_and_first_linear():
    layers = [*ConvNet(0.5).features, *ConvNet(0.5).classifier]
    before_dropout = [type(layers[i - 1]) for i, m in enumerate(layers) if isinstance(m, nn.Dropout)]
    assert before_dropout == [nn.MaxPool2d, nn.MaxPool2d, nn.ReLU]
    first_linear = next(i for i, m in enumerate(layers) if isinstance(m, nn.Linear))
    assert isinstance(layers[first_linear + 2], nn.Dropout)
    assert all(m.p == 0.5 for m in layers if isinstance(m, nn.Dropout))
