"""One denoising pass over a batch of clips: pack, condition, sample, unpack (spec §6).

Dimension key: ``t, h, w`` latent grid of one clip, ``c`` = 16 latent channels, ``l`` = packed
tokens of every clip, ``L`` text tokens, ``E`` text embedding width.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from seedvr2.diffusion import (
    euler_sample,
    guided_velocity,
    model_input,
    sr_condition,
    uniform_trailing_timesteps,
)


def _pack(clips: Sequence[torch.Tensor]) -> torch.Tensor:  # (l, c)
    return torch.cat([clip.reshape(-1, clip.shape[-1]) for clip in clips])


def _unpack(packed: torch.Tensor, shapes: Sequence[torch.Size]) -> list[torch.Tensor]:
    sizes = [shape[0] * shape[1] * shape[2] for shape in shapes]
    return [
        part.reshape(*shape[:3], packed.shape[-1])
        for part, shape in zip(packed.split(sizes), shapes)
    ]


def _text_batch(text: torch.Tensor, clips: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The same prompt for every clip: packed ``(clips·L, E)`` and lengths ``(clips, 1)``."""
    lengths = torch.full((clips, 1), text.shape[0], dtype=torch.long, device=text.device)
    return text.repeat(clips, 1), lengths


@torch.no_grad()
def denoise_clips(
    dit: nn.Module,
    noise: Sequence[torch.Tensor],  # [(t, h, w, c)] x_T per clip
    lq_latents: Sequence[torch.Tensor],  # [(t, h, w, c)] encoded low-quality clips (scaled)
    text: torch.Tensor,  # (L, E) positive prompt embedding
    negative_text: torch.Tensor | None = None,  # (L', E), needed when cfg_scale != 1
    steps: int = 1,
    cfg_scale: float = 1.0,
    cfg_rescale: float = 0.0,
    cond_noise_scale: float = 0.0,
    aug_noise: Sequence[torch.Tensor] | None = None,  # [(t, h, w, c)] when cond_noise_scale > 0
) -> list[torch.Tensor]:  # [(t, h, w, c)] x_0 per clip
    """Restore latents: Euler sampling of the DiT from ``noise`` given the LQ condition.

    All clips run packed in one DiT call per step (the DiT keeps clips independent). One step at
    t = 1000 is SeedVR2's one-step generator; ``steps > 1`` and ``cfg_scale != 1`` serve models
    that were not distilled. The DiT runs in its parameters' dtype; the sampler's arithmetic runs
    in the dtype of ``noise`` (float32 recommended, as the official ``x_0 = x_T - v``).
    """
    if len(noise) != len(lq_latents) or not noise:
        raise ValueError(f"need as many noise as LQ latents (>0), got {len(noise)}, {len(lq_latents)}")
    shapes = [clip.shape for clip in noise]
    for clip, lq in zip(noise, lq_latents):
        if clip.shape != lq.shape:
            raise ValueError(f"noise {tuple(clip.shape)} and LQ latent {tuple(lq.shape)} differ")
    if cfg_scale != 1.0 and negative_text is None:
        raise ValueError("cfg_scale != 1 needs negative_text")
    augment = aug_noise if aug_noise is not None else [None] * len(noise)
    condition = _pack(
        [
            sr_condition(lq, cond_noise_scale, aug, tuple(lq.shape[:3]))
            for lq, aug in zip(lq_latents, augment)
        ]
    )  # (l, c + 1)
    dtype = next(dit.parameters()).dtype
    condition = condition.to(dtype)
    vid_shape = torch.tensor([shape[:3] for shape in shapes], device=condition.device)  # (b, 3)
    positive = _text_batch(text.to(dtype), len(shapes))
    negative = (
        _text_batch(negative_text.to(dtype), len(shapes)) if negative_text is not None else None
    )

    def velocity(prompt: tuple[torch.Tensor, torch.Tensor]):
        txt, txt_shape = prompt

        def predict_v(x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:  # (l, c)
            timestep = t.expand(len(shapes)).to(x_t.device)
            out = dit(
                vid=model_input(x_t.to(dtype), condition),
                txt=txt,
                vid_shape=vid_shape,
                txt_shape=txt_shape,
                timestep=timestep,
            )
            return out.to(x_t.dtype)

        return predict_v

    predict = guided_velocity(
        velocity(positive),
        velocity(negative) if negative is not None else velocity(positive),
        cfg_scale,
        cfg_rescale,
    )
    timesteps = uniform_trailing_timesteps(steps)
    return _unpack(euler_sample(predict, _pack(noise), timesteps), shapes)
