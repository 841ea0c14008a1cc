"""The restoration API: load a model once, restore clips, frame streams and arrays.

Dimension key: ``f`` frames, ``c`` colour channels (3, or 4 with alpha), ``h w`` source pixels,
``H W`` output pixels, ``t`` latent frames, ``z`` 16 latent channels.
"""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from einops import rearrange

from seedvr2.errors import InputError
from seedvr2.models.dit import SeedVR2DiT
from seedvr2.models.vae import TileSpec, VideoAutoencoder
from seedvr2.weights import ModelFiles, load_text_embedding, locate_model
from seedvr2.weights.networks import load_dit, load_vae

from .batching import TemporalBatch, crossfade_weights, pad_frames, pad_to_4n1, plan_batches
from .color import color_correct
from .denoise import denoise_clips
from .models import default_model
from .options import RestoreOptions, RuntimeOptions
from .runtime import resolve_device, resolve_dtype
from .sizing import SizePlan, crop_output, plan_size, resize_and_pad


@dataclass(frozen=True)
class LoadedModel:
    """The networks and prompt embeddings of one model, as loaded."""

    dit: SeedVR2DiT
    vae: VideoAutoencoder
    text: torch.Tensor  # (L, E) positive prompt embedding
    negative_text: torch.Tensor | None  # (L', E)
    files: ModelFiles


def _tile(size: int | None, overlap: int) -> TileSpec | None:
    return None if size is None else TileSpec(size, min(overlap, size - 8))


class Restorer:
    """A loaded model and the settings to restore with.

    Build with :meth:`from_pretrained`. :meth:`restore` takes an array or a file and returns
    frames; :meth:`stream` restores an iterable of frames lazily with bounded memory.
    """

    def __init__(
        self,
        model: LoadedModel,
        options: RestoreOptions | None = None,
        runtime: RuntimeOptions | None = None,
    ) -> None:
        self.model = model
        self.options = options or RestoreOptions()
        self.runtime = runtime or RuntimeOptions()
        self.device = resolve_device(self.runtime.device)
        self.dtype = resolve_dtype(self.runtime.dtype, self.device)
        self.model.dit.attention_backend = self.runtime.attention
        home = torch.device("cpu") if self.runtime.offload else self.device
        for network in (model.dit, model.vae):
            network.to(device=home, dtype=self.dtype)

    @classmethod
    def from_pretrained(
        cls,
        model: str | Path | None = None,
        *,
        device: str = "auto",
        dtype: str = "auto",
        offload: bool = False,
        attention: str = "auto",
        cache_dir: str | Path | None = None,
        offline: bool = False,
        endpoint: str | None = None,
        **options: Any,
    ) -> Restorer:
        """Load a model: a preset (``3b``, ``7b``, ``7b-sharp``), a folder or a repo id.

        ``None`` loads the bundled small model. ``options`` are :class:`RestoreOptions` fields.
        """
        runtime = RuntimeOptions(device=device, dtype=dtype, offload=offload, attention=attention)
        files = locate_model(
            str(model if model is not None else default_model()),
            cache_dir=None if cache_dir is None else Path(cache_dir),
            offline=offline,
            endpoint=endpoint,
        )
        target = resolve_device(device)
        precision = resolve_dtype(dtype, target)
        home = "cpu" if offload else target
        if files.pos_emb is None:
            raise InputError(f"model {files.origin}: no positive text embedding (pos_emb) found")
        loaded = LoadedModel(
            dit=load_dit(files.dit, precision, home),
            vae=load_vae(files.vae, precision, home),
            text=load_text_embedding(files.pos_emb),
            negative_text=None if files.neg_emb is None else load_text_embedding(files.neg_emb),
            files=files,
        )
        return cls(loaded, RestoreOptions(**options), runtime)

    def with_options(self, **changes: Any) -> Restorer:
        """The same loaded model with some :class:`RestoreOptions` changed."""
        return Restorer(self.model, replace(self.options, **changes), self.runtime)

    # -- planning ---------------------------------------------------------------------------

    def plan_size(self, source: tuple[int, int]) -> SizePlan:
        """Output and network sizes for frames of ``source`` (h, w)."""
        o = self.options
        return plan_size(source, o.resolution, o.scale, o.max_side)

    def plan_batches(self, num_frames: int, cuts: Iterable[int] = ()) -> list[TemporalBatch]:
        """Temporal batches of a clip of ``num_frames`` (after prepending), cut at ``cuts``."""
        o = self.options
        return plan_batches(num_frames, o.batch_size, o.effective_overlap, tuple(cuts))

    # -- one batch --------------------------------------------------------------------------

    @contextlib.contextmanager
    def _on_device(self, network: torch.nn.Module) -> Iterator[None]:
        """Keep ``network`` on the device for a phase; with offload, send it back afterwards."""
        if not self.runtime.offload:
            yield
            return
        network.to(self.device)
        try:
            yield
        finally:
            network.to("cpu")

    def _encode(
        self, frames: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:  # (f, 3, H, W) -> 2 x (1, z, t, H/8, W/8) or image
        """Posterior mean and std of ``2x - 1`` padded to 4n+1 frames (one frame: an image)."""
        vae, tiling = self.model.vae, self.options.tiling
        video = pad_frames(frames, pad_to_4n1(frames.shape[0])) * 2 - 1
        video = video[:1] if video.shape[0] == 1 else rearrange(video, "f c h w -> 1 c f h w")
        with self._on_device(vae):
            posterior = vae.encode(
                video.to(self.device, self.dtype),
                temporal_chunk=tiling.temporal_chunk,
                tile=_tile(tiling.encode_tile, tiling.overlap),
            )
        return posterior.mean.float(), posterior.std.float()

    def _decode(self, latent: torch.Tensor) -> torch.Tensor:  # (t, h, w, z) -> (F, 3, H, W)
        vae, tiling = self.model.vae, self.options.tiling
        z = rearrange(latent / vae.config.scaling_factor, "t h w z -> 1 z t h w")
        if z.shape[2] == 1:
            z = z[:, :, 0]  # an image latent
        with self._on_device(vae):
            video = vae.decode(
                z.to(self.dtype),
                temporal_chunk=tiling.temporal_chunk,
                tile=_tile(tiling.decode_tile, tiling.overlap),
            ).float()
        return video if video.ndim == 4 else rearrange(video, "1 c f h w -> f c h w")

    @torch.no_grad()
    def restore_clip(
        self, frames: torch.Tensor, plan: SizePlan, seed: int
    ) -> torch.Tensor:  # (f, 3, h, w) [0, 1] -> (f, 3, H, W) [0, 1], float32 on the CPU
        """Restore one temporal batch: resize, encode, one DiT pass, decode, colour-correct."""
        o = self.options
        count = frames.shape[0]
        reference = resize_and_pad(frames.to(self.device, torch.float32), plan)  # (f, 3, H, W)
        mean, std = self._encode(reference)
        generator = torch.Generator().manual_seed(seed)  # CPU draws: the same on every device

        def gaussian(shape: torch.Size) -> torch.Tensor:
            return torch.randn(shape, generator=generator).to(self.device)

        latent = mean + std * gaussian(mean.shape)  # posterior sample, as the official encode
        latent = latent * self.model.vae.config.scaling_factor
        latent = rearrange(latent, "1 z t h w -> t h w z") if latent.ndim == 5 else (
            rearrange(latent, "1 z h w -> 1 h w z")
        )
        noise = gaussian(latent.shape)
        aug_noise = gaussian(latent.shape) if o.cond_noise_scale > 0 else None
        with self._on_device(self.model.dit):
            (restored,) = denoise_clips(
                self.model.dit,
                noise=[noise],
                lq_latents=[latent],
                text=self.model.text.to(self.device),
                negative_text=None if o.cfg_scale == 1.0 else self._negative_text(),
                steps=o.steps,
                cfg_scale=o.cfg_scale,
                cond_noise_scale=o.cond_noise_scale,
                aug_noise=None if aug_noise is None else [aug_noise],
            )
        video = (self._decode(restored)[:count] + 1) / 2  # (f, 3, H, W) about [0, 1]
        video = color_correct(crop_output(video, plan), crop_output(reference, plan), o.color)
        return video.clamp_(0, 1).cpu()

    def _negative_text(self) -> torch.Tensor:
        if self.model.negative_text is None:
            raise InputError(
                f"--cfg-scale {self.options.cfg_scale} needs a negative prompt embedding "
                f"(neg_emb), which model {self.model.files.origin} lacks; use --cfg-scale 1"
            )
        return self.model.negative_text.to(self.device)

    # -- streams ----------------------------------------------------------------------------

    def stream(
        self,
        frames: Iterable[np.ndarray],  # each (h, w, c) float32 in [0, 1], c = 3 or 4
        num_frames: int | None = None,
        cuts: Iterable[int] = (),
    ) -> Iterator[np.ndarray]:  # each (H, W, c) float32 in [0, 1]
        """Restore frames lazily, batch by batch; memory does not grow with the clip length.

        ``num_frames`` is needed for a one-pass iterator (a list gives its length); ``cuts`` are
        indices of frames that start a new shot. Alpha (c = 4) is resized, not restored.
        """
        if num_frames is None:
            if not hasattr(frames, "__len__"):
                raise InputError("stream(): pass num_frames for an iterator of frames")
            num_frames = len(frames)  # type: ignore[arg-type]
        if num_frames < 1:
            raise InputError("the input has no frames")
        source = iter(frames)
        first = _checked_frame(next(source, None), 0)
        plan = self.plan_size(first.shape[:2])
        prepend = min(self.options.prepend, num_frames - 1)
        head = [first, *itertools.islice(source, prepend)]
        lead = [head[i] for i in range(prepend, 0, -1)]  # frames prepend..1, reversed
        feed = itertools.chain(lead, head, source)
        cuts = tuple(c + prepend for c in cuts)
        batches = self.plan_batches(num_frames + prepend, cuts)
        outputs = self._stream_batches(feed, batches, plan)
        yield from itertools.islice(outputs, prepend, None)

    def _stream_batches(
        self, frames: Iterator[np.ndarray], batches: list[TemporalBatch], plan: SizePlan
    ) -> Iterator[np.ndarray]:
        window: list[np.ndarray] = []  # source frames from index `base`
        base = 0
        pending: torch.Tensor | None = None  # (k, c, H, W) tail awaiting the next batch's blend
        for number, batch in enumerate(batches):
            del window[: batch.start - base]
            base = batch.start
            while base + len(window) < batch.stop:
                frame = next(frames, None)
                if frame is None:
                    raise InputError(
                        f"the input ended after {base + len(window)} frames; "
                        f"{batches[-1].stop} were announced"
                    )
                window.append(_checked_frame(frame, base + len(window), plan.source))
            clip = torch.from_numpy(np.stack(window[: batch.length]))  # (f, h, w, c)
            out = self._restore_frames(rearrange(clip, "f h w c -> f c h w"), plan, batch.start)
            if batch.blend:
                weight = crossfade_weights(batch.blend).view(-1, 1, 1, 1)
                out[: batch.blend] = pending * (1 - weight) + out[: batch.blend] * weight
            following = batches[number + 1] if number + 1 < len(batches) else None
            keep = following.blend if following is not None else 0
            for image in out[: batch.length - keep]:
                yield rearrange(image, "c h w -> h w c").numpy()
            pending = out[batch.length - keep :]

    def _restore_frames(
        self, clip: torch.Tensor, plan: SizePlan, start: int
    ) -> torch.Tensor:  # (f, c, h, w) -> (f, c, H, W)
        rgb = self.restore_clip(clip[:, :3], plan, self.options.seed + start)
        if clip.shape[1] == 3:
            return rgb
        alpha = F.interpolate(
            clip[:, 3:].float(), size=plan.output, mode="bicubic", antialias=True
        ).clamp_(0, 1)
        return torch.cat([rgb, alpha], dim=1)

    def restore(self, frames: np.ndarray | torch.Tensor) -> np.ndarray:
        """Restore a whole clip held in memory: (f, h, w, c) or one (h, w, c) image in [0, 1]."""
        array = frames.numpy() if isinstance(frames, torch.Tensor) else np.asarray(frames)
        single = array.ndim == 3
        if single:
            array = array[None]
        if array.ndim != 4:
            raise InputError(f"restore() takes (f, h, w, c) or (h, w, c) frames, got {array.shape}")
        out = np.stack(list(self.stream(list(array.astype(np.float32, copy=False)))))
        return out[0] if single else out


def _checked_frame(
    frame: np.ndarray | None, index: int, size: tuple[int, int] | None = None
) -> np.ndarray:
    if frame is None:
        raise InputError("the input has no frames")
    if frame.ndim != 3 or frame.shape[2] not in (3, 4):
        raise InputError(f"frame {index}: expected (h, w, 3|4) pixels, got shape {frame.shape}")
    if size is not None and tuple(frame.shape[:2]) != tuple(size):
        raise InputError(
            f"frame {index} is {frame.shape[1]}x{frame.shape[0]} but the clip started at "
            f"{size[1]}x{size[0]}; frames of one clip must share a size"
        )
    return np.asarray(frame, dtype=np.float32)
