"""The restoration API: load a model once, restore clips, frame streams and arrays.

Dimension key: ``f`` frames, ``c`` colour channels (3, or 4 with alpha), ``h w`` source pixels,
``H W`` output pixels, ``t`` latent frames, ``z`` 16 latent channels.
"""

from __future__ import annotations

import contextlib
import itertools
import queue
import threading
import time
from collections import defaultdict, deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from einops import rearrange

from seedvr2.digests import file_sha256
from seedvr2.errors import InputError
from seedvr2.media import open_media
from seedvr2.models.dit import SeedVR2DiT
from seedvr2.models.dit.sequence_parallel import SequenceParallel
from seedvr2.models.vae import TileSpec, VideoAutoencoder
from seedvr2.models.vae.sequence_parallel import TimeSplit
from seedvr2.weights import ModelFiles, load_text_embedding, locate_model
from seedvr2.weights.adapters import check_base, merge_adapters, parse_adapter, read_adapter
from seedvr2.weights.networks import load_dit, load_vae

from .batching import TemporalBatch, crossfade_weights, pad_frames, pad_to_4n1, plan_batches
from .block_swap import attach_block_swap
from .color import color_correct, keep_change
from .compiling import compile_networks
from .denoise import denoise_clips
from .distributed import Team, join
from .estimate import ModelShape, batch_flops, device_rate, estimate_seconds
from .memory import (
    MemorySetup,
    ModelFacts,
    Workload,
    after_out_of_memory,
    check_fits,
    out_of_memory_as_error,
)
from .models import default_model
from .options import RestoreOptions, RuntimeOptions
from .progress import BatchProgress, Control, Progress
from .runtime import check_attention, check_finite, resolve_device, resolve_dtype
from .sizing import SizePlan, crop_output, plan_size, resize_and_pad, upscale_lq


@dataclass(frozen=True)
class LoadedModel:
    """The networks and prompt embeddings of one model, as loaded."""

    dit: SeedVR2DiT
    vae: VideoAutoencoder
    text: torch.Tensor  # (L, E) positive prompt embedding
    negative_text: torch.Tensor | None  # (L', E)
    files: ModelFiles
    lora: tuple[str, ...] = ()  # adapters merged into the DiT, as ``ADAPTER[:SCALE]``


@dataclass(frozen=True)
class StreamCursor:
    """Where a batched stream stands between two batches: all it needs to continue exactly."""

    next_batch: int  # index of the first batch not restored yet
    pending: torch.Tensor | None  # (k, c, H, W) output tail awaiting the next batch's cross-fade


@dataclass(frozen=True)
class BatchOutput:
    """Of a batch's restored frames, ``[first, stop)`` are final; those after wait to be blended."""

    batch: TemporalBatch
    first: int  # frames before it are prepended ones, dropped
    stop: int

    @property
    def frames(self) -> int:
        return self.stop - self.first

    @property
    def pending(self) -> int:
        return self.batch.length - self.stop


@dataclass(frozen=True)
class RestoredBatch:
    """The output frames one batch completes, and the stream's state after it."""

    frames: list[np.ndarray]  # each (H, W, c) float32 in [0, 1]
    cursor: StreamCursor


def _load(
    files: ModelFiles, dtype: torch.dtype, home: str | torch.device, dit_home: str | torch.device | None = None,
    lora: tuple[str, ...] = (),
) -> LoadedModel:
    """Load ``files`` onto ``home`` (the DiT onto ``dit_home`` when given), merging ``lora``."""
    if files.pos_emb is None:
        raise InputError(f"model {files.origin}: no positive text embedding (pos_emb) found")
    return LoadedModel(
        dit=_with_lora(load_dit(files.dit, dtype, home if dit_home is None else dit_home), files, lora),
        vae=load_vae(files.vae, dtype, home),
        text=load_text_embedding(files.pos_emb),
        negative_text=None if files.neg_emb is None else load_text_embedding(files.neg_emb),
        files=files,
        lora=lora,
    )


def _with_lora(dit: SeedVR2DiT, files: ModelFiles, lora: tuple[str, ...]) -> SeedVR2DiT:
    """``dit`` with the adapters ``lora`` (``ADAPTER[:SCALE]``) merged, each checked against the
    DiT file's SHA-256; the merged DiT runs as fast as the base."""
    if not lora:
        return dit
    adapters = [(read_adapter(path), scale) for path, scale in map(parse_adapter, lora)]
    digest = file_sha256(files.dit)
    for adapter, _ in adapters:
        check_base(adapter, digest, f"{files.origin} ({files.dit.name})")
    return merge_adapters(dit, adapters)


def _tile(size: int | None, overlap: int) -> TileSpec | None:
    return None if size is None else TileSpec(size, min(overlap, size - 8))


class Restorer:
    """A loaded model and the settings to restore with.

    Build with :meth:`from_pretrained`. :meth:`restore` takes an array or a file and returns
    frames; :meth:`stream` restores an iterable of frames lazily with bounded memory. With
    several ``runtime.devices``, each holds a copy of the model and restores whole batches in
    parallel; the cross-fades and the order are the same as on one device.
    """

    def __init__(
        self,
        model: LoadedModel,
        options: RestoreOptions | None = None,
        runtime: RuntimeOptions | None = None,
        replica_models: tuple[LoadedModel, ...] | None = None,
    ) -> None:
        self.model = model
        self.options = options or RestoreOptions()
        self.runtime = runtime or RuntimeOptions()
        names = self.runtime.device_names
        self.team: Team | None = join(names[0]) if self.runtime.sequence_parallel else None
        self.device = resolve_device(names[0]) if self.team is None else self.team.device
        model.dit.sequence_parallel = None if self.team is None else SequenceParallel()
        model.vae.time_split = None if self.team is None else TimeSplit()
        self.dtype = resolve_dtype(self.runtime.dtype, self.device)
        self.phase_seconds: defaultdict[str, float] = defaultdict(float)
        self.control = Control()
        self._rate: float | None = None  # FLOP/s of the devices, measured when first needed
        self.model.dit.attention_backend = self.runtime.attention
        home = torch.device("cpu") if self.runtime.offload else self.device
        for network in (model.dit, model.vae):
            network.to(dtype=self.dtype)
        if replica_models is None:  # loaded again: a deep copy can round differently on the CPU
            replica_models = tuple(_load(model.files, self.dtype, "cpu", lora=model.lora) for _ in names[1:])
        self.block_swap = attach_block_swap(model.dit, self.runtime.swap_blocks, self.device)
        if self.runtime.compile:
            compile_networks(model.dit, model.vae)
        self._move(model.dit, home)
        model.vae.to(home)
        self.replicas = [
            Restorer(m, self.options, replace(self.runtime, device=name, devices=()))
            for m, name in zip(replica_models, names[1:])
        ]
        for replica in self.replicas:
            replica.control = self.control

    @classmethod
    def from_pretrained(
        cls,
        model: str | Path | None = None,
        *,
        device: str = "auto",
        dtype: str = "auto",
        offload: bool = False,
        attention: str = "auto",
        devices: tuple[str, ...] = (),
        swap_blocks: int = 0,
        compile: bool = False,
        memory_check: bool = True,
        sequence_parallel: bool = False,
        cache_dir: str | Path | None = None,
        offline: bool = False,
        endpoint: str | None = None,
        lora: tuple[str, ...] | list[str] = (),
        **options: Any,
    ) -> Restorer:
        """Load a model: a preset (``3b``, ``7b``, ``7b-sharp``), a folder or a repo id.

        ``None`` loads the bundled small model. ``lora``: adapter folders (``seedvr2 export``
        of a LoRA run) as ``ADAPTER[:SCALE]``, merged into the DiT at load; an adapter made for
        another DiT file is refused. ``options`` are :class:`RestoreOptions` fields;
        ``devices`` (e.g. ``("cuda:0", "cuda:1")``) restore batches in parallel;
        ``memory_check=False`` lets jobs start whose estimated peak exceeds the free memory;
        ``sequence_parallel`` (under torchrun) splits each batch over the processes, see
        :meth:`restore_clip`.

        Raises:
            OutOfMemory: the device cannot hold the model, with the settings that lower its share.
        """
        runtime = RuntimeOptions(
            device=device, dtype=dtype, offload=offload, attention=attention, devices=tuple(devices),
            swap_blocks=swap_blocks, compile=compile, memory_check=memory_check,
            sequence_parallel=sequence_parallel,
        )
        files = locate_model(
            str(model if model is not None else default_model()),
            cache_dir=None if cache_dir is None else Path(cache_dir),
            offline=offline,
            endpoint=endpoint,
        )
        name = runtime.device_names[0]
        target = join(name).device if sequence_parallel else resolve_device(name)
        precision = resolve_dtype(dtype, target)
        check_attention(attention, target, precision)
        home = "cpu" if offload else target
        restore_options = RestoreOptions(**options)
        setup = MemorySetup.of_runtime(runtime, target, precision)

        def message() -> str:
            depth = ModelFacts.of_files(files).dit_depth
            advice = after_out_of_memory(restore_options, setup, depth)
            return f"out of {target.type} memory loading model {files.origin}; try {advice}"

        with out_of_memory_as_error(message):
            loaded = _load(files, precision, home, "cpu" if swap_blocks else home, tuple(lora))  # swap: CPU first
            return cls(loaded, restore_options, runtime)

    def with_options(self, **changes: Any) -> Restorer:
        """The same loaded model (and replicas) with some :class:`RestoreOptions` changed."""
        replicas = tuple(r.model for r in self.replicas)
        return Restorer(self.model, replace(self.options, **changes), self.runtime, replicas)

    # -- progress and cancelling ------------------------------------------------------------

    @property
    def on_progress(self) -> Callable[[Progress], None] | None:
        """Called with a :class:`~.progress.Progress` as each batch's phases advance (from the
        thread restoring the batch: one per device)."""
        return self.control.listener

    @on_progress.setter
    def on_progress(self, listener: Callable[[Progress], None] | None) -> None:
        self.control.listener = listener

    def cancel(self) -> None:
        """Stop the restoration under way (safe from any thread or a signal handler): it raises
        :class:`~.progress.Cancelled` within one DiT block, VAE tile, chunk or layer. Later
        restorations stop too, until :meth:`clear_cancel`."""
        self.control.cancel_request.set()

    def clear_cancel(self) -> None:
        """Let restorations run again after :meth:`cancel`."""
        self.control.cancel_request.clear()

    @property
    def color_correction(self) -> str:
        """The colour correction applied: ``options.color``, else the model's own."""
        return self.options.color or self.model.dit.config.color_correction

    @property
    def model_shape(self) -> ModelShape:
        """The network configs and prompt length, for FLOP counts and time estimates."""
        vae = self.model.vae
        return ModelShape(self.model.dit.config, vae.config, self.model.text.shape[0],
                          vae_direct=vae.space_to_depth_stages is not None)

    def estimate_seconds(self, source: tuple[int, int], frames: int) -> float:
        """Rough seconds to restore ``frames`` frames of ``source`` (h, w): the planned FLOPs
        over a measured rate of the devices (see :mod:`.estimate`)."""
        if self._rate is None:
            self._rate = device_rate(self.device, self.dtype) * len(self.devices)
        batches = [o.batch for o in self.batch_outputs(frames)]
        return estimate_seconds(self.model_shape, self.options, batches, self.plan_size(source).padded,
                                self._rate)  # fmt: skip

    def phase_totals(self) -> dict[str, float]:
        """Seconds spent so far per phase (encode, dit, decode), summed over all devices."""
        totals: defaultdict[str, float] = defaultdict(float)
        for restorer in (self, *self.replicas):
            for phase, seconds in restorer.phase_seconds.items():
                totals[phase] += seconds
        return dict(totals)

    @property
    def devices(self) -> list[torch.device]:
        """Every device this restorer runs on, the main one first."""
        return [self.device, *(r.device for r in self.replicas)]

    # -- memory -----------------------------------------------------------------------------

    @property
    def memory_setup(self) -> MemorySetup:
        """The settings in use that change the memory peak."""
        return MemorySetup.of_runtime(self.runtime, self.device, self.dtype)

    def check_memory(self, source: tuple[int, int], frames: int, what: str = "the input") -> None:
        """Refuse a clip of ``frames`` frames of ``source`` (h, w) that the devices cannot hold,
        unless ``runtime.memory_check`` is off.

        Raises:
            OutOfMemory: with the settings or the largest size that would fit.
        """
        if self.runtime.memory_check:
            facts = ModelFacts.of_networks(self.model.dit, self.model.vae)
            work = Workload(self.plan_size(source), frames)
            check_fits(what, work, self.options, facts, self.memory_setup, self.devices)

    def memory_advice(self) -> str:
        """The settings to change after running out of memory, given those in use."""
        return after_out_of_memory(self.options, self.memory_setup, len(self.model.dit.blocks))

    # -- planning ---------------------------------------------------------------------------

    def plan_size(self, source: tuple[int, int]) -> SizePlan:
        """Output and network sizes for frames of ``source`` (h, w)."""
        o = self.options
        return plan_size(source, o.resolution, o.scale, o.max_side)

    def plan_batches(self, num_frames: int, cuts: Iterable[int] = ()) -> list[TemporalBatch]:
        """Temporal batches of a clip of ``num_frames`` (after prepending), cut at ``cuts``."""
        o = self.options
        return plan_batches(num_frames, o.batch_size, o.effective_overlap, tuple(cuts))

    def batch_outputs(self, num_frames: int, cuts: Iterable[int] = ()) -> list[BatchOutput]:
        """What each batch of a clip of ``num_frames`` (before prepending) completes and keeps."""
        prepend = min(self.options.prepend, num_frames - 1)
        batches = self.plan_batches(num_frames + prepend, tuple(c + prepend for c in cuts))
        following = [*(b.blend for b in batches[1:]), 0]
        return [
            BatchOutput(batch, max(0, prepend - batch.start), batch.length - keep)
            for batch, keep in zip(batches, following)
        ]

    # -- one batch --------------------------------------------------------------------------

    @contextlib.contextmanager
    def _phase(self, name: str) -> Iterator[None]:
        """Add the wall time of a phase to :attr:`phase_seconds` (CUDA work waited for)."""
        began = time.perf_counter()
        yield
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        self.phase_seconds[name] += time.perf_counter() - began

    @contextlib.contextmanager
    def _on_device(self, network: torch.nn.Module) -> Iterator[None]:
        """Keep ``network`` on the device for a phase; with offload, send it back afterwards."""
        if not self.runtime.offload:
            yield
            return
        self._move(network, self.device)
        try:
            yield
        finally:
            network.to("cpu")

    def _move(self, network: torch.nn.Module, device: torch.device | str) -> None:
        """``network.to(device)``, except the DiT's swapped blocks, which stay on the CPU."""
        if self.block_swap is not None and network is self.model.dit:
            self.block_swap.move(network, device)
        else:
            network.to(device)

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

    def restore_clip(
        self, frames: torch.Tensor, plan: SizePlan, seed: int, batch: int = 0, completes: int | None = None
    ) -> torch.Tensor:  # (f, 3, h, w) [0, 1] -> (f, 3, H, W) [0, 1], float32 on the CPU
        """Restore one temporal batch: resize, encode, one DiT pass, decode, colour-correct.

        ``batch`` (its first frame) and ``completes`` (the output frames it finishes; default:
        all) describe it in :attr:`on_progress` events. Sequence parallel: rank 0 sends the batch
        to the other ranks (waiting in :meth:`follow`) and all restore it together; a rank that
        stops raises :class:`RankLost` here.
        """
        if self.team is None:
            return self._restore_clip(frames, plan, seed, batch, completes)
        if self.team.leads:
            self.team.announce(frames, plan, seed)
        with self.team.guard():
            return self._restore_clip(frames, plan, seed, batch, completes)

    def follow(self) -> None:
        """Ranks other than 0: restore the batches rank 0 announces until it is done."""
        self.team.follow(self.restore_clip)

    @torch.no_grad()
    def _restore_clip(
        self, frames: torch.Tensor, plan: SizePlan, seed: int, batch: int, completes: int | None
    ) -> torch.Tensor:
        o = self.options
        count = frames.shape[0]
        vae, dit, tiling = self.model.vae, self.model.dit, o.tiling
        flops = batch_flops(self.model_shape, o, count, plan.padded)
        progress = BatchProgress(self.control, batch, count if completes is None else completes, flops)
        factor = vae.config.spatial_factor
        grid = ((pad_to_4n1(count) - 1) // vae.config.temporal_factor + 1,
                plan.padded[0] // factor, plan.padded[1] // factor)  # latent (t, h, w); fmt: skip
        encodes = vae.network_calls(grid, decode=False, temporal_chunk=tiling.temporal_chunk,
                                    tile=_tile(tiling.encode_tile, tiling.overlap))  # fmt: skip
        decodes = vae.network_calls(grid, decode=True, temporal_chunk=tiling.temporal_chunk,
                                    tile=_tile(tiling.decode_tile, tiling.overlap))  # fmt: skip
        passes = o.steps * (1 if o.cfg_scale == 1.0 else 2)
        with self._phase("encode"), progress.phase("encode", [vae.encoder], encodes, vae.encoder.modules()):
            reference = resize_and_pad(frames.to(self.device, torch.float32), plan,
                                       dit.config.condition_resize)  # (f, 3, H, W)
            mean, std = self._encode(reference)
        generator = torch.Generator().manual_seed(seed)  # CPU draws: the same on every device

        def gaussian(shape: torch.Size) -> torch.Tensor:
            return torch.randn(shape, generator=generator).to(self.device)

        latent = mean + std * gaussian(mean.shape)  # posterior sample, as the official encode
        latent = latent * self.model.vae.config.scaling_factor
        latent = rearrange(latent, "1 z t h w -> t h w z") if latent.ndim == 5 else (
            rearrange(latent, "1 z h w -> 1 h w z")
        )
        noise = gaussian(latent.shape) * dit.config.start_noise  # x_T
        aug_noise = gaussian(latent.shape) if o.cond_noise_scale > 0 else None
        with (
            self._phase("dit"),
            self._on_device(dit),
            progress.phase("dit", dit.blocks, len(dit.blocks) * passes, dit.modules()),
        ):
            (restored,) = denoise_clips(
                dit,
                noise=[noise],
                lq_latents=[latent],
                text=self.model.text.to(self.device),
                negative_text=None if o.cfg_scale == 1.0 else self._negative_text(),
                steps=o.steps,
                cfg_scale=o.cfg_scale,
                cond_noise_scale=o.cond_noise_scale,
                aug_noise=None if aug_noise is None else [aug_noise],
            )
        with self._phase("decode"):
            with progress.phase("decode", [vae.decoder], decodes, vae.decoder.modules()):
                video = (self._decode(restored)[:count] + 1) / 2  # (f, 3, H, W) about [0, 1]
            check_finite(video, self.device, self.dtype)
            reference = crop_output(reference, plan)
            video = keep_change(color_correct(crop_output(video, plan), reference,
                                              self.color_correction),
                                reference, o.strength)
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
        frames: Iterable[np.ndarray],  # each (h, w, c), c = 3 or 4: floats in [0, 1] or integers
        num_frames: int | None = None,
        cuts: Iterable[int] = (),
    ) -> Iterator[np.ndarray]:  # each (H, W, c) float32 in [0, 1]
        """Restore frames lazily, batch by batch; memory does not grow with the clip length.

        Frames are those :meth:`restore` takes: floats in [0, 1] or integers over their full
        range (uint8, uint16). ``num_frames`` is needed for a one-pass iterator (a list gives its
        length); ``cuts`` are indices of frames that start a new shot. Alpha (c = 4) is resized,
        not restored.
        """
        for part in self.stream_batches(frames, num_frames, cuts):
            yield from part.frames

    def stream_batches(
        self,
        frames: Iterable[np.ndarray],  # each (h, w, c), as for stream()
        num_frames: int | None = None,
        cuts: Iterable[int] = (),
        resume: StreamCursor | None = None,
    ) -> Iterator[RestoredBatch]:
        """:meth:`stream` one batch at a time, each with the cursor to continue after it.

        With ``resume`` (a cursor of an earlier run of the same clip and settings), ``frames``
        is still the whole clip; the batches before the cursor are skipped and the rest restored
        with exactly the inputs, seeds and pending cross-fade tail of an uninterrupted run.
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
        layout = self.batch_outputs(num_frames, cuts)
        self.check_memory(plan.source, num_frames)
        cursor = resume or StreamCursor(0, None)
        clips = _batch_clips(feed, [o.batch for o in layout], cursor.next_batch, plan.source)
        outputs = self._restore_in_order(clips, plan, {o.batch.start: o.frames for o in layout})
        pending = cursor.pending

        def message() -> str:
            (h, w), (out_h, out_w) = plan.source, plan.output
            longest = max(o.batch.length for o in layout)
            return (f"out of {self.device.type} memory restoring {w}x{h} frames to {out_w}x{out_h} "
                    f"in batches of up to {longest}; try {self.memory_advice()}")  # fmt: skip

        with out_of_memory_as_error(message):
            for number, (batch, out) in enumerate(outputs, start=cursor.next_batch):
                if batch.blend:
                    weight = crossfade_weights(batch.blend).view(-1, 1, 1, 1)
                    out[: batch.blend] = pending * (1 - weight) + out[: batch.blend] * weight
                done = out[layout[number].first : layout[number].stop]  # prepended frames dropped
                pending = out[layout[number].stop :]
                yield RestoredBatch(
                    [rearrange(image, "c h w -> h w c").numpy() for image in done],
                    StreamCursor(number + 1, pending),
                )

    def _restore_in_order(
        self,
        clips: Iterator[tuple[TemporalBatch, torch.Tensor]],
        plan: SizePlan,
        completes: dict[int, int],
    ) -> Iterator[tuple[TemporalBatch, torch.Tensor]]:  # (f, c, h, w) -> (f, c, H, W)
        """Restore batches in order; with replicas, one batch per idle device at a time.

        ``completes`` maps each batch's first frame to the output frames it finishes.

        Replicas named on the same device (``cpu,cpu``) take turns: sharing one device gains
        nothing, and running alone keeps its numbers identical to a single-device run.
        """
        workers = [self, *self.replicas]
        if len(workers) == 1:
            for batch, clip in clips:
                yield batch, self._restore_frames(clip, plan, batch.start, completes[batch.start])
            return
        idle: queue.Queue[Restorer] = queue.Queue()
        for worker in workers:
            idle.put(worker)
        turns = {worker.device: threading.Lock() for worker in workers}

        def restore(batch: TemporalBatch, clip: torch.Tensor) -> torch.Tensor:
            worker = idle.get()
            try:
                with turns[worker.device]:
                    return worker._restore_frames(clip, plan, batch.start, completes[batch.start])
            finally:
                idle.put(worker)

        pool = ThreadPoolExecutor(
            len(workers),
            thread_name_prefix="seedvr2-device",
            initializer=torch.set_num_threads,  # CPU threads as in the caller's thread
            initargs=(torch.get_num_threads(),),
        )
        running: deque[tuple[TemporalBatch, Future[torch.Tensor]]] = deque()
        try:
            for batch, clip in clips:
                running.append((batch, pool.submit(restore, batch, clip)))
                if len(running) == len(workers):
                    batch, future = running.popleft()
                    yield batch, future.result()
            while running:
                batch, future = running.popleft()
                yield batch, future.result()
        finally:
            pool.shutdown(cancel_futures=True)

    def _restore_frames(
        self, clip: torch.Tensor, plan: SizePlan, start: int, completes: int
    ) -> torch.Tensor:  # (f, c, h, w) -> (f, c, H, W)
        rgb = self.restore_clip(clip[:, :3], plan, self.options.seed + start, start, completes)
        if clip.shape[1] == 3:
            return rgb
        alpha = upscale_lq(clip[:, 3:], plan.output)  # antialiased, whatever the model takes
        return torch.cat([rgb, alpha], dim=1)

    def restore(self, frames: np.ndarray | torch.Tensor | str | Path) -> np.ndarray:
        """Restore a clip held in memory, or a (short) media file read whole.

        Args:
            frames: (f, h, w, c) frames or one (h, w, c) image, c = 3 (RGB) or 4 (RGBA); floats
                in [0, 1] or integers (uint8, uint16: their full range); or the path of an image
                or video (use :func:`seedvr2.pipeline.restore_file` to stream long videos to a
                file instead).

        Returns:
            float32 frames in [0, 1], (f, H, W, c), or (H, W, c) for one image or an image file.

        Raises:
            OutOfMemory: the clip cannot fit (refused before restoring) or memory ran out.
        """
        with out_of_memory_as_error(lambda: (
            f"out of {self.device.type} memory holding a whole clip; restore long clips into a "
            "file with seedvr2.pipeline.restore_file or frame by frame with Restorer.stream"
        )):
            array, single = self._frames_array(frames)
            out = np.stack(list(self.stream(list(array))))
        return out[0] if single else out

    def _frames_array(
        self, frames: np.ndarray | torch.Tensor | str | Path
    ) -> tuple[np.ndarray, bool]:  # -> (f, h, w, c) float32, whether one image was given
        """The frames :meth:`restore` takes, as float32 in [0, 1]; a file is checked to fit first."""
        if isinstance(frames, (str, Path)):
            source = open_media(frames)
            if source.info.frame_count is not None:  # else checked by the stream, once read
                self.check_memory((source.info.height, source.info.width), source.info.frame_count,
                                  str(frames))  # fmt: skip
            array = np.stack([frame.image for frame in source.frames()])
            single = source.info.kind == "image"
        else:
            array = frames.numpy() if isinstance(frames, torch.Tensor) else np.asarray(frames)
            single = array.ndim == 3
            array = array[None] if single else array
        if array.ndim != 4 or array.shape[-1] not in (3, 4):
            raise InputError(
                f"restore() takes (f, h, w, c) or (h, w, c) frames with c = 3 or 4, got {array.shape}"
            )
        return _unit_float(array, "restore()"), single


def _unit_float(array: np.ndarray, where: str) -> np.ndarray:
    """Frames as float32 in [0, 1]: integers (uint8, uint16, ...) over their full range."""
    if np.issubdtype(array.dtype, np.integer):
        return (array / np.float32(np.iinfo(array.dtype).max)).astype(np.float32, copy=False)
    if not np.issubdtype(array.dtype, np.floating):
        raise InputError(f"{where} takes float or integer frames, got {array.dtype}")
    return array.astype(np.float32, copy=False)

def _batch_clips(
    frames: Iterator[np.ndarray], batches: list[TemporalBatch], first: int, size: tuple[int, int]
) -> Iterator[tuple[TemporalBatch, torch.Tensor]]:  # clips (f, c, h, w)
    """The source frames of ``batches[first:]``, read lazily; earlier frames are skipped."""
    window: list[np.ndarray] = []  # source frames from index `base`
    base = 0
    for batch in batches[first:]:
        skip = batch.start - base - len(window)  # frames before a resume point, never restored
        del window[: batch.start - base]
        base = batch.start
        while skip > 0 or base + len(window) < batch.stop:
            frame = next(frames, None)
            if frame is None:
                raise InputError(
                    f"the input ended after {base + len(window) - max(skip, 0)} frames; "
                    f"{batches[-1].stop} were announced"
                )
            if skip > 0:
                skip -= 1
                continue
            window.append(_checked_frame(frame, base + len(window), size))
        clip = torch.from_numpy(np.stack(window[: batch.length]))  # (f, h, w, c)
        yield batch, rearrange(clip, "f h w c -> f c h w")


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
    return _unit_float(np.asarray(frame), "stream()")
