"""Settings of a restoration run, in one typed place shared by the API and the CLI."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from seedvr2.errors import InputError

from .color import COLOR_CORRECTIONS

MAX_STRENGTH = 2.0  # beyond twice the model's change, artefacts dominate


@dataclass(frozen=True)
class VAETiling:
    """Spatial tiles and temporal chunks bounding VAE memory (sizes in video pixels / frames)."""

    encode_tile: int | None = None  # tile edge for encoding (input pixels), None = whole frame
    decode_tile: int | None = None  # tile edge for decoding (output pixels), None = whole frame
    overlap: int = 64  # blended overlap between tiles, pixels
    temporal_chunk: int | None = None  # frames per causal chunk, multiple of 4; None = model's, 0 = all

    def __post_init__(self) -> None:
        for name in ("encode_tile", "decode_tile"):
            tile = getattr(self, name)
            if tile is not None and (tile < 64 or tile % 8 or tile <= self.overlap):
                raise InputError(
                    f"--{name.replace('_', '-')} {tile} must be a multiple of 8, at least 64 and "
                    f"above the tile overlap {self.overlap}"
                )
        if self.overlap < 0 or self.overlap % 8:
            raise InputError(f"--tile-overlap {self.overlap} must be a non-negative multiple of 8")
        if self.temporal_chunk is not None and (self.temporal_chunk < 0 or self.temporal_chunk % 4):
            raise InputError(f"--temporal-chunk {self.temporal_chunk} must be 0 or a multiple of 4")


@dataclass(frozen=True)
class RestoreOptions:
    """What to produce from each input (sizes, batching, sampling, colour)."""

    resolution: int | None = None  # output short side in pixels
    scale: float | None = None  # output = input x scale
    max_side: int | None = None  # cap on the output long side
    batch_size: int = 21  # frames per temporal batch, 4n+1
    overlap: int = 4  # frames shared (and cross-faded) by consecutive batches
    scene_cuts: bool = False  # never let a batch straddle a detected scene change
    prepend: int = 0  # reversed frames prepended to stabilise the start, removed afterwards
    color: str | None = None  # colour correction: wavelet, adain, lab, none; None: the model's
    seed: int = 666
    steps: int = 1  # Euler steps (SeedVR2: 1)
    cfg_scale: float = 1.0  # classifier-free guidance (1 = negative prompt never run)
    cond_noise_scale: float = 0.0  # noise augmentation of the LQ latent (SeedVR2: 0)
    strength: float = 1.0  # share of the model's change to the resized input kept, 0-2
    tiling: VAETiling = field(default_factory=VAETiling)

    def __post_init__(self) -> None:
        if self.batch_size < 1 or self.batch_size % 4 != 1:
            raise InputError(f"--batch-size must be 4n+1 (1, 5, 9, 13, ...), got {self.batch_size}")
        if not 0 <= self.overlap < self.batch_size and self.batch_size > 1:
            raise InputError(f"--overlap {self.overlap} must be below --batch-size")
        if self.color is not None and self.color not in COLOR_CORRECTIONS:
            raise InputError(f"--color {self.color!r} is not one of {sorted(COLOR_CORRECTIONS)}")
        if self.steps < 1:
            raise InputError(f"--steps must be at least 1, got {self.steps}")
        if self.prepend < 0:
            raise InputError(f"--prepend must be >= 0, got {self.prepend}")
        if not 0.0 <= self.cond_noise_scale <= 1.0:
            raise InputError(f"--cond-noise must be in [0, 1], got {self.cond_noise_scale}")
        if not 0.0 <= self.strength <= MAX_STRENGTH:
            raise InputError(f"--strength must be in [0, {MAX_STRENGTH:g}], got {self.strength}")

    @property
    def effective_overlap(self) -> int:
        """Overlap actually used: at most half a batch, so every batch moves the clip forward."""
        return min(self.overlap, (self.batch_size - 1) // 2)


Precision = Literal["fp32", "bf16", "fp16"]


@dataclass(frozen=True)
class RuntimeOptions:
    """Where and how the networks run."""

    device: str = "auto"  # auto, cpu, cuda, cuda:N, mps
    dtype: Precision | Literal["auto"] = "auto"
    offload: bool = False  # keep only the network of the current phase on the device
    attention: Literal["auto", "sdpa", "flash"] = "auto"
    devices: tuple[str, ...] = ()  # several devices restoring batches in parallel (overrides device)
    swap_blocks: int = 0  # DiT blocks kept on the CPU and streamed to the device when used
    compile: bool = False  # torch.compile the DiT blocks and the VAE (slow first batch)
    memory_check: bool = True  # refuse a job whose estimated peak exceeds the memory available
    sequence_parallel: bool = False  # split each batch over the processes torchrun started

    def __post_init__(self) -> None:
        if self.swap_blocks < 0:
            raise InputError(f"--swap-blocks must be >= 0, got {self.swap_blocks}")
        if self.sequence_parallel and self.devices:
            raise InputError("--sequence-parallel takes one device per process; leave out --devices")

    @property
    def device_names(self) -> tuple[str, ...]:
        """The devices a run uses, the first one holding the main model."""
        return self.devices or (self.device,)
