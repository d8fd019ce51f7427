"""A small CNN classifier for 28x28 grayscale images in [0, 1] (MNIST / Fashion-MNIST).

It grades fundiff's samples: its logits give class accuracy and histograms, and its
penultimate activations are the feature space of FID (in place of Inception v3, which
was trained on ImageNet photos, not digits). Shapes for a 28x28 input, width W::

    x (C,28,28) -ConvBN-> (W,28,28) -ConvBN-> (W,28,28) -MaxPool-> (W,14,14)
    -ConvBN-> (2W,14,14) -ConvBN-> (2W,14,14) -MaxPool-> (2W,7,7)
    -Flatten-> (2W*49) -Linear-BN-ReLU-> features (d) -Linear-> logits (num_classes)
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import Tensor, nn

from fundiff.errors import FundiffError


@dataclass(frozen=True)
class ClassifierConfig:
    """Architecture of the classifier; saved beside its weights as JSON."""

    kind: str = "classifier"  # tells a classifier run folder from a diffusion run folder
    in_channels: int = 1  # image channels C
    image_size: int = 28  # H = W; must be divisible by 4 (two 2x2 max-pools)
    num_classes: int = 10  # logits per image
    width: int = 32  # channels of the first conv pair; the second pair has 2 * width
    features: int = 128  # size d of the penultimate embedding used for FID

    def __post_init__(self) -> None:
        if self.kind != "classifier":
            raise FundiffError(f"a ClassifierConfig has kind 'classifier', got {self.kind!r}")
        if min(self.in_channels, self.num_classes, self.width, self.features) < 1:
            raise FundiffError("in_channels, num_classes, width and features must be positive")
        if self.image_size < 4 or self.image_size % 4:
            raise FundiffError(f"image_size must be a positive multiple of 4, got {self.image_size}")

    def to_dict(self) -> dict:
        return asdict(self)


def _conv_bn(c_in: int, c_out: int) -> nn.Sequential:
    """3x3 conv (keeps H, W) -> BatchNorm -> ReLU."""
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU())


class Classifier(nn.Module):
    """conv W - conv W - pool - conv 2W - conv 2W - pool - fc d - fc num_classes, BatchNorm throughout.

    forward(x): x (N,C,H,W) float in [0,1] -> logits (N, num_classes).
    features(x): the same x -> (N, d) penultimate activations (ReLU outputs, >= 0).
    """

    def __init__(self, config: ClassifierConfig) -> None:
        super().__init__()
        self.config = config
        C, W, d = config.in_channels, config.width, config.features
        self.body = nn.Sequential(
            _conv_bn(C, W), _conv_bn(W, W), nn.MaxPool2d(2),
            _conv_bn(W, 2 * W), _conv_bn(2 * W, 2 * W), nn.MaxPool2d(2),
            nn.Flatten(),
            nn.Linear(2 * W * (config.image_size // 4) ** 2, d, bias=False), nn.BatchNorm1d(d), nn.ReLU(),
        )  # fmt: skip
        self.head = nn.Linear(d, config.num_classes)

    @property
    def feature_dim(self) -> int:
        return self.config.features

    def features(self, x: Tensor) -> Tensor:
        return self.body(x - 0.5)  # centre the [0,1] input; BatchNorm does the rest

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.features(x))


@torch.no_grad()
def predict(classifier: Classifier, images: Tensor, *, batch_size: int = 1000) -> Tensor:
    """Predicted classes (N,) int64 of float images (N,C,H,W) in [0,1]; classifier in eval mode."""
    if classifier.training:
        raise FundiffError(
            "the classifier is in training mode (BatchNorm would use batch statistics); call .eval() first"
        )
    return torch.cat([classifier(images[i : i + batch_size]).argmax(1) for i in range(0, len(images), batch_size)])


__all__ = ["Classifier", "ClassifierConfig", "predict"]
