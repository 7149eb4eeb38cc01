"""The study's ConvNet: two conv-conv-pool stages and a two-layer head, no padding."""

from torch import Tensor, nn


class ConvNet(nn.Module):
    """890,410 parameters; with ``dropout > 0`` a dropout layer follows each max-pool and the first linear layer."""

    def __init__(self, dropout: float = 0.0, num_classes: int = 10) -> None:
        super().__init__()

        def drop() -> list[nn.Module]:
            return [nn.Dropout(dropout)] if dropout > 0 else []

        self.features = nn.Sequential(
            nn.Conv2d(3, 32, 3),
            nn.ReLU(),
            nn.Conv2d(32, 32, 3),
            nn.ReLU(),
            nn.MaxPool2d(2),
            *drop(),
            nn.Conv2d(32, 64, 3),
            nn.ReLU(),
            nn.Conv2d(64, 64, 3),
            nn.ReLU(),
            nn.MaxPool2d(2),
            *drop(),
        )
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Linear(64 * 5 * 5, 512),
            nn.ReLU(),
            *drop(),
            nn.Linear(512, num_classes),
        )

    def forward(self, x: Tensor) -> Tensor:
        """Logits; the loss applies the softmax."""
        return self.classifier(self.features(x))
