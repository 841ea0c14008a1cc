"""Learned full-reference distances: LPIPS and DISTS. Lower is better.

* LPIPS v0.1 (Zhang et al. 2018, "The unreasonable effectiveness of deep features as a perceptual
  metric"): unit-normalised AlexNet or VGG16 activations at 5 depths, squared differences weighted
  per channel by learned 1x1 "linear heads", averaged over space and summed over depths.
* DISTS (Ding et al. 2020, "Image quality assessment: unifying structure and texture
  similarity"): VGG16 with L2 pooling; per channel, SSIM-like comparisons of global means
  (texture) and of correlations (structure), weighted by learned alpha and beta.

No weights are downloaded. Each network needs two files, searched in this order:

* the ImageNet backbone from torchvision (``alexnet-owt-7be5be79.pth`` or ``vgg16-397923af.pth``):
  given paths, then torch hub's checkpoint folder (where torchvision would cache it);
* the learned head: given paths, then the installed ``lpips`` package
  (``lpips/weights/v0.1/<net>.pth``) or ``DISTS-pytorch`` package (``DISTS_pytorch/weights.pt``),
  small wheels that carry these files (``pip install --no-deps`` keeps torchvision out).

A single full checkpoint of the reference implementations (``lpips.LPIPS``, pyiqa's
``LPIPS_v0.1_*.pth`` / ``DISTS_weights-*.pth``, the official DISTS module) also works.
Inputs are used at their own size (no resizing, unlike ``DISTS_pytorch.prepare_image``).
"""

from __future__ import annotations

import importlib.util
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch
from torch import nn

from seedvr2.errors import CheckpointError, InputError

from .backbones import (
    ALEXNET_CHANNELS,
    ALEXNET_TAPS,
    VGG16_CHANNELS,
    VGG16_TAPS,
    L2Pool,
    alexnet_features,
    tapped,
    vgg16_features,
)
from .frames import as_clip_pair

WeightsPath = str | Path | Sequence[str | Path]
TORCHVISION_URL = "https://download.pytorch.org/models/"


@dataclass(frozen=True)
class Backbone:
    """An ImageNet feature extractor: how to build it, where to tap it, its torchvision file."""

    build: Callable[[], nn.Sequential]
    taps: tuple[int, ...]
    channels: tuple[int, ...]
    torchvision_file: str


BACKBONES = {
    "alex": Backbone(alexnet_features, ALEXNET_TAPS, ALEXNET_CHANNELS, "alexnet-owt-7be5be79.pth"),
    "vgg": Backbone(vgg16_features, VGG16_TAPS, VGG16_CHANNELS, "vgg16-397923af.pth"),
}


def _unit_normalise(x: torch.Tensor, eps: float = 1e-10) -> torch.Tensor:
    """Divide each feature vector (over channels) by its L2 norm, as LPIPS ``normalize_tensor``."""
    return x / (x.square().sum(dim=1, keepdim=True).sqrt() + eps)


class LPIPS(nn.Module):
    """LPIPS v0.1 distance between images in [0, 1] (``lpips.LPIPS(net=..., version='0.1')``)."""

    def __init__(self, net: Literal["alex", "vgg"] = "alex") -> None:
        super().__init__()
        if net not in BACKBONES:
            raise InputError(f"LPIPS backbone must be one of {sorted(BACKBONES)}, got {net!r}")
        self.backbone = BACKBONES[net]
        self.features = self.backbone.build()
        self.heads = nn.ModuleList(nn.Conv2d(c, 1, 1, bias=False) for c in self.backbone.channels)
        for head, channels in zip(self.heads, self.backbone.channels):
            nn.init.constant_(head.weight, 1 / channels)  # plain channel mean until weights load
        # LPIPS' ScalingLayer, applied after mapping [0, 1] to [-1, 1].
        self.register_buffer(
            "shift", torch.tensor([-0.030, -0.088, -0.188])[:, None, None], persistent=False
        )
        self.register_buffer(
            "scale", torch.tensor([0.458, 0.448, 0.450])[:, None, None], persistent=False
        )
        self.requires_grad_(False)
        self.eval()

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """Distances ``(n,)`` between images ``a`` and ``b``, each ``(n, 3, h, w)`` in [0, 1]."""
        feats_a, feats_b = (
            tapped(self.features, ((2 * x - 1) - self.shift) / self.scale, self.backbone.taps)
            for x in (a, b)
        )
        distance = a.new_zeros(a.shape[0])
        for head, fa, fb in zip(self.heads, feats_a, feats_b):
            squared = (_unit_normalise(fa) - _unit_normalise(fb)).square()
            distance = distance + head(squared).mean(dim=(1, 2, 3))
        return distance


class DISTS(nn.Module):
    """DISTS distance between images in [0, 1] (``DISTS_pytorch.DISTS``)."""

    channels = (3, *VGG16_CHANNELS)  # the image itself, then the 5 VGG stages

    def __init__(self) -> None:
        super().__init__()
        self.features = vgg16_features(pool=L2Pool)
        self.alpha = nn.Parameter(torch.full((1, sum(self.channels), 1, 1), 0.1))
        self.beta = nn.Parameter(torch.full((1, sum(self.channels), 1, 1), 0.1))
        self.register_buffer(
            "mean", torch.tensor([0.485, 0.456, 0.406])[:, None, None], persistent=False
        )
        self.register_buffer(
            "std", torch.tensor([0.229, 0.224, 0.225])[:, None, None], persistent=False
        )
        self.requires_grad_(False)
        self.eval()

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """Distances ``(n,)`` between images ``a`` and ``b``, each ``(n, 3, h, w)`` in [0, 1]."""
        feats_a, feats_b = (
            [x, *tapped(self.features, (x - self.mean) / self.std, VGG16_TAPS)] for x in (a, b)
        )
        total = self.alpha.sum() + self.beta.sum()
        alphas = torch.split(self.alpha / total, self.channels, dim=1)
        betas = torch.split(self.beta / total, self.channels, dim=1)
        c1 = c2 = 1e-6
        similarity = a.new_zeros(a.shape[0])
        for fa, fb, alpha, beta in zip(feats_a, feats_b, alphas, betas):
            mean_a, mean_b = fa.mean(dim=(2, 3), keepdim=True), fb.mean(dim=(2, 3), keepdim=True)
            texture = (2 * mean_a * mean_b + c1) / (mean_a**2 + mean_b**2 + c1)
            var_a = (fa - mean_a).square().mean(dim=(2, 3), keepdim=True)
            var_b = (fb - mean_b).square().mean(dim=(2, 3), keepdim=True)
            cov = (fa * fb).mean(dim=(2, 3), keepdim=True) - mean_a * mean_b
            structure = (2 * cov + c2) / (var_a + var_b + c2)
            similarity = similarity + (alpha * texture + beta * structure).sum(dim=(1, 2, 3))
        return 1 - similarity


# Checkpoint keys of the reference implementations -> ours; a None target skips a key that holds
# nothing we need (ImageNet classifiers, constants we recompute).
KeyRules = tuple[tuple[str, str | None], ...]
LPIPS_KEYS: KeyRules = (
    (r"features\.(\d+)\.(weight|bias)", r"features.\1.\2"),  # torchvision
    (r"classifier\..*", None),
    (r"net\.slice\d+\.(\d+)\.(weight|bias)", r"features.\1.\2"),  # lpips.LPIPS, pyiqa
    (r"(?:lin|lins\.)(\d+)\.model\.[01]\.weight", r"heads.\1.weight"),
    (r"heads\.(\d+)\.weight", r"heads.\1.weight"),  # ours
    (r"scaling_layer\.(shift|scale)", None),
)
DISTS_KEYS: KeyRules = (
    (r"features\.(\d+)\.(weight|bias)", r"features.\1.\2"),  # torchvision
    (r"classifier\..*", None),
    (r"stage\d\.(\d+)\.(weight|bias)", r"features.\1.\2"),  # official DISTS, pyiqa
    (r"stage\d\.\d+\.filter|mean|std", None),
    (r"(alpha|beta)", r"\1"),
)


@dataclass(frozen=True)
class WeightPart:
    """A group of parameters that comes from one file, and where that file is looked for."""

    prefix: str
    needs: str
    default: Path | None


def _read(path: Path) -> dict[str, torch.Tensor]:
    if not path.is_file():
        raise CheckpointError(f"weights file {path} does not exist")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch.load raises many types for a non-checkpoint
        raise CheckpointError(f"cannot read weights file {path}: {err}") from err
    for wrapper in ("params", "state_dict"):  # pyiqa / training checkpoints
        if isinstance(state, dict) and isinstance(state.get(wrapper), dict):
            state = state[wrapper]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"{path} does not hold a state dict of tensors")
    return state


def _mapped(path: Path, rules: KeyRules, what: str) -> dict[str, torch.Tensor]:
    """The tensors of ``path`` under our parameter names."""
    state, unknown = {}, []
    for key, value in _read(path).items():
        for pattern, target in rules:
            if re.fullmatch(pattern, key):
                if target is not None:
                    state[re.sub(pattern, target, key)] = value
                break
        else:
            unknown.append(key)
    if unknown:
        raise CheckpointError(
            f"{path} is not a {what} checkpoint: unexpected keys {unknown[:5]}"
            f"{' ...' if len(unknown) > 5 else ''}"
        )
    return state


def _package_file(package: str, relative: str) -> Path | None:
    """``relative`` inside an installed package's folder, found without importing the package."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / relative
    return path if path.is_file() else None


def _hub_file(name: str) -> Path | None:
    path = Path(torch.hub.get_dir()) / "checkpoints" / name
    return path if path.is_file() else None


def _load(
    model: nn.Module,
    weights_path: WeightsPath | None,
    rules: KeyRules,
    parts: Sequence[WeightPart],
    what: str,
) -> None:
    """Fill ``model`` from the given files, completing missing parts from their default places."""
    paths = (
        []
        if weights_path is None
        else ([weights_path] if isinstance(weights_path, str | Path) else list(weights_path))
    )
    state: dict[str, torch.Tensor] = {}
    for path in paths:
        state.update(_mapped(Path(path), rules, what))
    for part in parts:
        if part.default is not None and not any(k.startswith(part.prefix) for k in state):
            state.update(_mapped(part.default, rules, what))
    expected = model.state_dict()
    misfits = sorted(k for k in state if k not in expected or state[k].shape != expected[k].shape)
    if misfits:
        raise CheckpointError(
            f"{what} weights do not fit the network: {len(misfits)} tensors are unknown or of "
            f"another shape, e.g. {misfits[:3]} (weights of another backbone?)"
        )
    missing = sorted(set(expected) - set(state))
    if missing:
        needed = [part.needs for part in parts if any(k.startswith(part.prefix) for k in missing)]
        raise CheckpointError(
            f"{what} weights are incomplete ({len(missing)} tensors missing, e.g. {missing[0]}); "
            f"needed: {'; '.join(needed)}. Pass the file path(s) as weights_path."
        )
    model.load_state_dict(state, strict=True)


def _backbone_needs(backbone: Backbone) -> str:
    name = backbone.torchvision_file
    return (
        f"the torchvision ImageNet backbone {name} ({TORCHVISION_URL}{name}), e.g. in "
        f"{Path(torch.hub.get_dir()) / 'checkpoints'}"
    )


def load_lpips(
    weights_path: WeightsPath | None = None,
    net: Literal["alex", "vgg"] = "alex",
    device: torch.device | str = "cpu",
) -> LPIPS:
    """LPIPS v0.1 with its weights (see the module docstring for where they are looked for).

    Raises:
        CheckpointError: a file is missing, unreadable or of another network; the message names
            the files still needed.
    """
    model = LPIPS(net)
    parts = (
        WeightPart(
            "features.", _backbone_needs(model.backbone), _hub_file(model.backbone.torchvision_file)
        ),
        WeightPart(
            "heads.",
            f"the LPIPS v0.1 linear heads lpips/weights/v0.1/{net}.pth "
            "(pip install --no-deps lpips)",
            _package_file("lpips", f"weights/v0.1/{net}.pth"),
        ),
    )
    _load(model, weights_path, LPIPS_KEYS, parts, f"LPIPS-{net}")
    return model.to(device)


def load_dists(
    weights_path: WeightsPath | None = None, device: torch.device | str = "cpu"
) -> DISTS:
    """DISTS with its weights (see the module docstring for where they are looked for).

    Raises:
        CheckpointError: as ``load_lpips``.
    """
    model = DISTS()
    parts = (
        WeightPart(
            "features.",
            _backbone_needs(BACKBONES["vgg"]),
            _hub_file(BACKBONES["vgg"].torchvision_file),
        ),
        WeightPart(
            "alpha",
            "the DISTS alpha/beta file DISTS_pytorch/weights.pt "
            "(pip install --no-deps DISTS-pytorch)",
            _package_file("DISTS_pytorch", "weights.pt"),
        ),
    )
    _load(model, weights_path, DISTS_KEYS, parts, "DISTS")
    return model.to(device)


@torch.inference_mode()
def perceptual_distance(model: LPIPS | DISTS, a: torch.Tensor, b: torch.Tensor) -> float:
    """Mean over frames of ``model``'s distance between RGB frames ``a`` and ``b`` in [0, 1].

    Frames are processed one at a time on the model's device, so clips of any length fit.
    """
    clip_a, clip_b = as_clip_pair(a, b)
    if clip_a.shape[1] != 3:
        raise InputError(
            f"{type(model).__name__} needs RGB frames, got {clip_a.shape[1]} channel(s)"
        )
    weight = next(model.parameters())
    scores = [
        model(*(x[i : i + 1].to(weight.device, weight.dtype) for x in (clip_a, clip_b)))
        for i in range(clip_a.shape[0])
    ]
    return float(torch.cat(scores).mean())


def lpips(
    a: torch.Tensor,
    b: torch.Tensor,
    weights_path: WeightsPath | None = None,
    net: Literal["alex", "vgg"] = "alex",
    device: torch.device | str = "cpu",
) -> float:
    """LPIPS v0.1 between frames ``a`` and ``b``, mean over frames (``load_lpips`` + ``perceptual_distance``)."""
    return perceptual_distance(load_lpips(weights_path, net, device), a, b)


def dists(
    a: torch.Tensor,
    b: torch.Tensor,
    weights_path: WeightsPath | None = None,
    device: torch.device | str = "cpu",
) -> float:
    """DISTS between frames ``a`` and ``b``, mean over frames (``load_dists`` + ``perceptual_distance``)."""
    return perceptual_distance(load_dists(weights_path, device), a, b)
