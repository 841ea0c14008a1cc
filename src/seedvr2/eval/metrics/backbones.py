"""ImageNet feature extractors for the perceptual metrics, laid out as torchvision's ``features``.

Module indices equal torchvision's, so a torchvision checkpoint (``alexnet-owt-7be5be79.pth``,
``vgg16-397923af.pth``) loads under ``features.<index>.*`` without renaming, and LPIPS / DISTS
tap the same activations as their reference code.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

ALEXNET_TAPS = (1, 4, 7, 9, 11)
"""relu1 ... relu5 of AlexNet (LPIPS ``alexnet`` slices)."""
ALEXNET_CHANNELS = (64, 192, 384, 256, 256)
VGG16_TAPS = (3, 8, 15, 22, 29)
"""relu1_2, relu2_2, relu3_3, relu4_3, relu5_3 of VGG16 (LPIPS ``vgg16`` slices, DISTS stages)."""
VGG16_CHANNELS = (64, 128, 256, 512, 512)
_VGG16_STAGES = ((64, 64), (128, 128), (256, 256, 256), (512, 512, 512), (512, 512, 512))


def alexnet_features() -> nn.Sequential:
    """torchvision ``alexnet().features`` up to relu5 (indices 0-11)."""
    return nn.Sequential(
        nn.Conv2d(3, 64, kernel_size=11, stride=4, padding=2),
        nn.ReLU(),
        nn.MaxPool2d(kernel_size=3, stride=2),
        nn.Conv2d(64, 192, kernel_size=5, padding=2),
        nn.ReLU(),
        nn.MaxPool2d(kernel_size=3, stride=2),
        nn.Conv2d(192, 384, kernel_size=3, padding=1),
        nn.ReLU(),
        nn.Conv2d(384, 256, kernel_size=3, padding=1),
        nn.ReLU(),
        nn.Conv2d(256, 256, kernel_size=3, padding=1),
        nn.ReLU(),
    )


def max_pool(channels: int) -> nn.Module:
    """VGG's own 2x2 max pooling (``channels`` unused, for the ``pool`` factory signature)."""
    return nn.MaxPool2d(kernel_size=2, stride=2)


def vgg16_features(pool: Callable[[int], nn.Module] = max_pool) -> nn.Sequential:
    """torchvision ``vgg16().features`` up to relu5_3 (indices 0-29).

    Args:
        pool: builds the downsampling layer from its input channels (DISTS swaps in ``L2Pool``).
    """
    layers: list[nn.Module] = []
    channels = 3
    for stage, widths in enumerate(_VGG16_STAGES):
        if stage:
            layers.append(pool(channels))
        for width in widths:
            layers += [nn.Conv2d(channels, width, kernel_size=3, padding=1), nn.ReLU()]
            channels = width
    return nn.Sequential(*layers)


class L2Pool(nn.Module):
    """L2 pooling of DISTS (Ding et al. 2020): sqrt(hanning_3x3 * x²), stride 2, per channel.

    The 5-tap Hanning window without its zero ends, normalised; padding 1 as the official code.
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        taps = torch.hann_window(5, periodic=False)[1:-1]  # numpy.hanning(5)[1:-1] = (.5, 1, .5)
        window = taps[:, None] * taps[None, :]
        window = window / window.sum()
        # Recomputed, not loaded: the official checkpoints' copies of this constant are skipped.
        self.register_buffer("window", window.expand(channels, 1, 3, 3).clone(), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (n, c, h, w) -> (n, c, h/2, w/2)
        out = F.conv2d(x**2, self.window, stride=2, padding=1, groups=x.shape[1])
        return (out + 1e-12).sqrt()


def tapped(features: nn.Sequential, x: torch.Tensor, taps: Sequence[int]) -> list[torch.Tensor]:
    """Activations of ``features`` at the module indices ``taps`` (ascending), for input ``x``."""
    outputs = []
    for index, layer in enumerate(features[: taps[-1] + 1]):
        x = layer(x)
        if index in taps:
            outputs.append(x)
    return outputs
