"""Second-order real-world degradation of a video clip (spec §3).

Real-ESRGAN's second-order model (Wang et al. 2021, §3.2) with RealBasicVSR's video additions
(Chan et al. 2022, §4.2): each order blurs, resizes, adds noise and JPEG-compresses (the first
also runs a video codec); then {resize to HQ/scale + sinc} and {codec} run in random order, and
the result is quantised to 8 bits. SeedVR/SeedVR2 follow Upscale-A-Video, which uses this
pipeline. Discrete choices are drawn once per clip; continuous parameters drift per frame
(``config.drift``); noise fields are fresh per frame. Every draw comes from the caller's
``torch.Generator``, so a seed fixes the output.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from seedvr2.errors import InputError

from .codec import video_compress
from .config import (
    CRF_CODECS,
    CodecConfig,
    DegradationConfig,
    FinalConfig,
    NoiseConfig,
    OrderConfig,
    ResizeConfig,
)
from .jpeg import jpeg_compress
from .kernels import random_blur_kernels, random_sinc_kernels
from .ops import add_gaussian_noise, add_poisson_noise, blur, even_size, quantize, resize
from .sampling import bernoulli, choice, uniform, walk, weighted_choice


def _random_resize(clip: torch.Tensor, config: ResizeConfig, g: torch.Generator) -> torch.Tensor:
    mode = weighted_choice(g, config.mode_probs)
    interpolation = choice(g, config.interpolations)
    if mode == "keep":
        return clip
    factor = uniform(g, 1.0, config.scale[1]) if mode == "up" else uniform(g, config.scale[0], 1)
    return resize(clip, even_size(*clip.shape[-2:], factor), interpolation)


def _random_noise(
    clip: torch.Tensor, config: NoiseConfig, drift: bool, g: torch.Generator
) -> torch.Tensor:
    gaussian = bernoulli(g, config.gaussian_prob)
    gray = bernoulli(g, config.gray_prob)
    frames = clip.shape[0]
    if gaussian:
        sigma = walk(g, config.gaussian_sigma, frames, drift) / 255
        return add_gaussian_noise(clip, sigma, gray, g)
    return add_poisson_noise(clip, walk(g, config.poisson_scale, frames, drift), gray, g)


def _random_codec(clip: torch.Tensor, config: CodecConfig, g: torch.Generator) -> torch.Tensor:
    if not bernoulli(g, config.prob):
        return clip
    codec = choice(g, config.codecs)
    quality = uniform(g, *(config.crf if codec in CRF_CODECS else config.qscale))
    return video_compress(clip, codec, quality, config.fps)


def _apply_order(
    clip: torch.Tensor, config: OrderConfig, drift: bool, g: torch.Generator
) -> torch.Tensor:
    """blur -> resize -> noise -> JPEG (-> codec): one order of the degradation model."""
    frames = clip.shape[0]
    if bernoulli(g, config.blur.prob):
        clip = blur(clip, random_blur_kernels(config.blur, frames, drift, g))
    clip = _random_resize(clip, config.resize, g)
    if bernoulli(g, config.noise.prob):
        clip = _random_noise(clip, config.noise, drift, g)
    if bernoulli(g, config.jpeg.prob):
        clip = jpeg_compress(clip, walk(g, config.jpeg.quality, frames, drift))
    if config.codec is not None:
        clip = _random_codec(clip, config.codec, g)
    return clip


def _apply_final(
    clip: torch.Tensor,
    config: FinalConfig,
    size: tuple[int, int],
    drift: bool,
    g: torch.Generator,
) -> torch.Tensor:
    """{resize to ``size`` + sinc} and {codec}, the codec first with ``codec_first_prob``."""
    codec_first = config.codec is not None and bernoulli(g, config.codec_first_prob)
    if codec_first:
        clip = _random_codec(clip, config.codec, g)
    clip = resize(clip, size, choice(g, config.interpolations))
    if bernoulli(g, config.sinc.prob):
        clip = blur(clip, random_sinc_kernels(config.sinc, clip.shape[0], drift, g))
    if config.codec is not None and not codec_first:
        clip = _random_codec(clip, config.codec, g)
    return clip


def degrade_video(
    clip: torch.Tensor,  # (f, 3, h, w) in [0, 1]
    config: DegradationConfig,
    generator: torch.Generator,
    *,
    resize_back: bool = False,
) -> torch.Tensor:  # (f, 3, h / scale, w / scale), or (f, 3, h, w) with resize_back
    """Synthesise the low-quality version of an HQ clip.

    Args:
        clip: HQ frames, float in [0, 1]; ``h`` and ``w`` divisible by ``config.scale``.
        config: the degradation settings (:func:`load_degradation_config`).
        generator: the source of every random draw (CPU or the clip's device).
        resize_back: bicubic-resize the LQ back to ``(h, w)``, SeedVR2's input convention (the
            LQ is brought to the output size before VAE encoding; spec §1a). Not re-quantised.

    Returns:
        The LQ clip in [0, 1] on 8-bit levels (before ``resize_back``), in ``clip``'s dtype.
    """
    if clip.ndim != 4 or clip.shape[1] != 3 or not clip.is_floating_point():
        raise InputError(
            f"expected a float clip (frames, 3, height, width), got {clip.dtype} "
            f"{tuple(clip.shape)}"
        )
    height, width = clip.shape[-2:]
    if height % config.scale or width % config.scale:
        raise InputError(f"clip size {height}x{width} is not divisible by scale {config.scale}")
    lq = clip.float()
    for order in (config.first, config.second):
        lq = _apply_order(lq, order, config.drift, generator)
    lq_size = (height // config.scale, width // config.scale)
    lq = quantize(_apply_final(lq, config.final, lq_size, config.drift, generator))
    if resize_back:
        lq = F.interpolate(lq, size=(height, width), mode="bicubic", align_corners=False)
        lq = lq.clamp(0, 1)
    return lq.to(clip.dtype)
