"""Time estimates: the FLOPs of a batch's phases (from :mod:`seedvr2.models.flops`) over a rate.

The rate is measured, not assumed: :func:`device_rate` times a float matrix multiply on the device
(a fraction of a second). Real runs reach a fraction of it (convolutions, attention, memory
traffic), so an estimate is a rough guide; progress displays replace it with measured work as
soon as there is some.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import torch

from seedvr2.models.dit import DiTConfig, resolve_dit_config
from seedvr2.models.flops import dit_forward_flops, vae_decode_flops, vae_encode_flops
from seedvr2.models.vae import VAEConfig, resolve_vae_config
from seedvr2.weights import load_text_embedding
from seedvr2.weights.networks import network_config

from .batching import TemporalBatch, pad_to_4n1
from .memory import local_model
from .options import RestoreOptions

MATMUL_SIDE = 1024  # the timed multiply is MATMUL_SIDE x MATMUL_SIDE by the same
ACHIEVED = 0.35  # share of the matrix-multiply rate a restoration reaches (convs, attention, I/O)


@dataclass(frozen=True)
class ModelShape:
    """What the FLOP count needs of a model: its network configs and prompt length."""

    dit: DiTConfig
    vae: VAEConfig
    text_tokens: int  # tokens of the positive prompt embedding
    vae_direct: bool = False  # an exact space-to-depth VAE run as a pixel shuffle: ~no FLOPs


def model_shape(model: str | Path | None, cache_dir: str | Path | None = None) -> ModelShape:
    """Of ``--model`` from local file headers (see :func:`.memory.local_model`); a preset not
    downloaded yet from its architecture, its prompt (a few dozen tokens) left out.

    Raises:
        SeedVR2Error: a model that is neither local nor a preset.
    """
    files = local_model(model, cache_dir)
    if isinstance(files, str):
        return ModelShape(resolve_dit_config(files.removesuffix("-sharp")), resolve_vae_config(None), 0)
    text = 0 if files.pos_emb is None else load_text_embedding(files.pos_emb).shape[0]
    return ModelShape(network_config("dit", files.dit), network_config("vae", files.vae), text)


def batch_flops(
    model: ModelShape, options: RestoreOptions, frames: int, padded: tuple[int, int]
) -> dict[str, float]:
    """FLOPs of encoding, denoising and decoding ``frames`` frames of ``padded`` (h, w) pixels."""
    vae = model.vae
    video = (pad_to_4n1(frames), *padded)  # (F, H, W) fed to the encoder
    latent = ((video[0] - 1) // vae.temporal_factor + 1,
              padded[0] // vae.spatial_factor, padded[1] // vae.spatial_factor)  # fmt: skip
    passes = options.steps * (1 if options.cfg_scale == 1.0 else 2)
    vae_share = 0.0 if model.vae_direct else 1.0
    return {
        "encode": vae_share * float(vae_encode_flops(vae, video).total),
        "dit": float(dit_forward_flops(model.dit, latent, model.text_tokens).total * passes),
        "decode": vae_share * float(vae_decode_flops(vae, latent).total),
    }


def device_rate(device: torch.device, dtype: torch.dtype = torch.float32) -> float:
    """FLOP/s a restoration may reach on ``device``: a timed matrix multiply times ``ACHIEVED``."""
    a = torch.randn(MATMUL_SIDE, MATMUL_SIDE, device=device, dtype=dtype)
    a @ a  # warm-up: kernels chosen, memory allocated
    repeats, began = 0, time.perf_counter()
    while repeats < 3 or time.perf_counter() - began < 0.1:
        a @ a
        repeats += 1
        if device.type == "cuda":
            torch.cuda.synchronize(device)
    seconds = time.perf_counter() - began
    return ACHIEVED * repeats * 2 * MATMUL_SIDE**3 / seconds


def estimate_seconds(
    model: ModelShape,
    options: RestoreOptions,
    batches: list[TemporalBatch],
    padded: tuple[int, int],
    rate: float,
) -> float:
    """Rough seconds to restore ``batches`` of frames of ``padded`` (h, w) at ``rate`` FLOP/s."""
    return sum(sum(batch_flops(model, options, b.length, padded).values()) for b in batches) / rate
