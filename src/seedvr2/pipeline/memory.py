"""Memory: the peak a job needs, the settings that lower it, and refusing what cannot fit.

The figure is an estimate from first principles, not a measurement: weights, plus the larger of
the DiT's activations (about ``ACTIVATION_WIDTHS`` hidden-size vectors per token) and the VAE's
(its widest full-resolution feature map over one temporal chunk, a few copies alive).
``benchmarks/restore_memory.py`` measures the real peaks to compare with. Every way a device
reports running out (CUDA, MPS, the CPU allocator, Python) becomes :class:`OutOfMemory`.
"""

from __future__ import annotations

import contextlib
import math
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import torch
import torch.distributed as dist

from seedvr2.errors import OutOfMemory, SeedVR2Error
from seedvr2.models import build_dit, build_vae
from seedvr2.models.dit import SeedVR2DiT
from seedvr2.models.vae import VideoAutoencoder
from seedvr2.weights import (
    HUB_PRESETS,
    CheckpointSummary,
    ModelFiles,
    locate_model,
    state_dict_summary,
)
from seedvr2.weights.formats import tensor_header

from . import runtime
from .batching import TemporalBatch, pad_to_4n1, plan_batches
from .models import default_model
from .options import RestoreOptions, RuntimeOptions
from .sizing import MULTIPLE, SizePlan, plan_size

ACTIVATION_WIDTHS = 24  # live (tokens, dim) tensors at the DiT's peak: qkv, attention, MLP, residuals
VAE_LIVE_MAPS = 6  # live full-resolution feature maps at the VAE decoder's peak
DEFAULT_CHUNK = 4  # frames per causal VAE chunk when the model does not say
ESCAPE = "--no-memory-check runs it anyway"  # the expert's way past a refusal


@dataclass(frozen=True)
class ModelFacts:
    """What the estimate needs to know of a model."""

    dit_parameters: int
    dit_width: int
    vae_parameters: int
    vae_channels: int  # channels of the VAE's full-resolution stage
    dit_depth: int = 1  # blocks (for --swap-blocks)

    @classmethod
    def of_files(cls, files: ModelFiles) -> ModelFacts:
        """Read from the weights files' headers: names and shapes, no tensor data."""
        dit = state_dict_summary(tensor_header(files.dit))
        vae = state_dict_summary(tensor_header(files.vae))
        return cls.of_summaries(dit, vae)

    @classmethod
    def of_summaries(cls, dit: CheckpointSummary, vae: CheckpointSummary) -> ModelFacts:
        return cls(dit.parameters, dit.width or 0, vae.parameters, vae.width or 0, dit.depth or 1)

    @classmethod
    def of_networks(cls, dit: SeedVR2DiT, vae: VideoAutoencoder) -> ModelFacts:
        """Of built networks (loaded, or on the meta device)."""
        return cls(
            sum(p.numel() for p in dit.parameters()),
            dit.config.dim,
            sum(p.numel() for p in vae.parameters()),
            vae.config.block_channels[0],
            dit.config.num_layers,
        )

    @classmethod
    def of_preset(cls, name: str) -> ModelFacts:
        """Of a released model (``3b``, ``7b``, ``7b-sharp``), built on the meta device."""
        with torch.device("meta"):
            return cls.of_networks(build_dit(name.removesuffix("-sharp")), build_vae())


def local_model(model: str | Path | None, cache_dir: str | Path | None = None) -> ModelFiles | str:
    """The files of ``--model`` (None: the bundled one) if local; never downloads. A released
    preset that is not downloaded yet is returned as its name.

    Raises:
        SeedVR2Error: a model that is neither local nor a preset (a repo id not downloaded yet).
    """
    spec = str(model) if model is not None else str(default_model())
    cache = None if cache_dir is None else Path(cache_dir)
    try:
        return locate_model(spec, cache_dir=cache, offline=True)
    except SeedVR2Error:
        if spec not in HUB_PRESETS:
            raise
        return spec


def model_facts(model: str | Path | None, cache_dir: str | Path | None = None) -> ModelFacts:
    """Facts of ``--model`` from local files only (see :func:`local_model`); a preset not
    downloaded yet is described from its architecture."""
    files = local_model(model, cache_dir)
    return ModelFacts.of_preset(files) if isinstance(files, str) else ModelFacts.of_files(files)


@dataclass(frozen=True)
class MemorySetup:
    """The run settings that change the memory peak besides :class:`RestoreOptions`."""

    dtype: torch.dtype = torch.float32
    offload: bool = False
    swap_blocks: int = 0
    device_type: str = "cuda"  # on the CPU, offloading and block swapping change nothing
    ranks: int = 1  # processes sharing each batch (sequence parallel): the DiT tokens are split

    @classmethod
    def of_runtime(cls, options: RuntimeOptions, device: torch.device, dtype: torch.dtype) -> MemorySetup:
        joined = options.sequence_parallel and dist.is_initialized()
        ranks = dist.get_world_size() if joined else 1
        return cls(dtype, options.offload, options.swap_blocks, device.type, ranks)

    @property
    def moves_weights(self) -> bool:
        """Whether --offload and --swap-blocks can lower the peak on this device."""
        return self.device_type != "cpu"


@dataclass(frozen=True)
class Workload:
    """What a job asks of the networks: its sizes and its frames (before any prepending)."""

    size: SizePlan
    frames: int


def job_batches(frames: int, options: RestoreOptions) -> list[TemporalBatch]:
    """Temporal batches of a ``frames``-long input, reversed prepended frames included."""
    prepend = min(options.prepend, frames - 1)
    return plan_batches(frames + prepend, options.batch_size, options.effective_overlap)


def estimate_peak_bytes(
    work: Workload, options: RestoreOptions, model: ModelFacts, setup: MemorySetup
) -> int:
    """Rough device memory peak of a job (see the module docstring)."""
    size = torch.empty((), dtype=setup.dtype).element_size()
    height, width = work.size.padded
    longest = max(batch.padded_length for batch in job_batches(work.frames, options))
    latent_frames = (pad_to_4n1(longest) - 1) // 4 + 1
    tokens = latent_frames * (height // 16) * (width // 16)
    dit = tokens * model.dit_width * ACTIVATION_WIDTHS * size // setup.ranks
    tiling = options.tiling
    tile_h = min(height, tiling.decode_tile or height)
    tile_w = min(width, tiling.decode_tile or width)
    chunk = longest if tiling.temporal_chunk == 0 else (tiling.temporal_chunk or DEFAULT_CHUNK)
    vae = model.vae_channels * (chunk + 2) * tile_h * tile_w * VAE_LIVE_MAPS * size
    swapped = min(setup.swap_blocks, model.dit_depth) if setup.moves_weights else 0
    resident = model.dit_depth - swapped + (2 if swapped else 0)  # + the block in use, prefetched
    dit_weights = model.dit_parameters * size * min(resident, model.dit_depth) // model.dit_depth
    vae_weights = model.vae_parameters * size
    if setup.offload and setup.moves_weights:
        return max(dit_weights + dit, vae_weights + vae)
    return dit_weights + vae_weights + max(dit, vae)


Setting = tuple[RestoreOptions, MemorySetup]


def fitting_changes(
    work: Workload,
    options: RestoreOptions,
    model: ModelFacts,
    setup: MemorySetup,
    available: int,
) -> list[str]:
    """Settings that bring the estimate under ``available`` bytes, mildest first.

    Each change is tried alone; when none fits alone they are stacked in order and the first
    fitting combination is returned; an empty list means nothing here is enough.
    """
    tile = min(512, max(work.size.padded) // 2 // 8 * 8)
    half_batch = (options.batch_size - 1) // 2 // 4 * 4 + 1
    half_depth = model.dit_depth // 2
    changes: list[tuple[str, Callable[[RestoreOptions, MemorySetup], Setting]]] = []
    if not setup.offload and setup.moves_weights:
        changes.append(("--offload", lambda o, s: (o, replace(s, offload=True))))
    if tile >= 64 and (options.tiling.decode_tile is None or options.tiling.decode_tile > tile):
        tiling = replace(options.tiling, encode_tile=tile, decode_tile=tile,
                         overlap=min(options.tiling.overlap, tile // 4 // 8 * 8))  # fmt: skip
        changes.append((f"--encode-tile {tile} --decode-tile {tile}",
                        lambda o, s: (replace(o, tiling=tiling), s)))  # fmt: skip
    if half_batch < options.batch_size:
        changes.append((f"--batch-size {half_batch}", lambda o, s: (
            replace(o, batch_size=half_batch, overlap=min(o.overlap, half_batch - 1)), s)))
    if setup.swap_blocks < half_depth and setup.moves_weights:
        changes.append((f"--swap-blocks {half_depth}",
                        lambda o, s: (o, replace(s, swap_blocks=half_depth))))  # fmt: skip
    if setup.dtype == torch.float32:
        changes.append(("--dtype bf16", lambda o, s: (o, replace(s, dtype=torch.bfloat16))))

    def fits(setting: Setting) -> bool:
        return estimate_peak_bytes(work, setting[0], model, setting[1]) <= available

    alone = [flag for flag, change in changes if fits(change(options, setup))]
    if alone:
        return alone
    flags, setting = [], (options, setup)
    for flag, change in changes:
        flags.append(flag)
        setting = change(*setting)
        if fits(setting):
            return [" ".join(flags)]
    return []


def largest_fitting_size(
    work: Workload, options: RestoreOptions, model: ModelFacts, setup: MemorySetup, available: int
) -> str | None:
    """The flag asking for the largest output that fits as is (``--scale`` when the job scales,
    else ``--resolution``); None when not even the smallest output fits."""
    source = work.size.source

    def fits(side: int) -> bool:
        size = plan_size(source, side, None, options.max_side)
        return estimate_peak_bytes(replace(work, size=size), options, model, setup) <= available

    low, high = MULTIPLE, max(MULTIPLE, min(work.size.output))  # fits(low), not fits(high)
    if not fits(low):
        return None
    while high - low > 1:
        middle = (low + high) // 2
        low, high = (middle, high) if fits(middle) else (low, middle)
    scale = math.floor(low / min(source) * 100) / 100  # never above the side found
    return f"--scale {scale:g}" if options.scale is not None and scale > 0 else f"--resolution {low}"


def advice(
    work: Workload, options: RestoreOptions, model: ModelFacts, setup: MemorySetup, available: int
) -> str:
    """What to change so a job fits in ``available`` bytes: settings, or the largest size."""
    ways = fitting_changes(work, options, model, setup, available)
    largest = largest_fitting_size(work, options, model, setup, available)
    if largest is not None:
        ways.append(f"{largest} (the largest size that fits as is)")
    return " or ".join(ways) or "a larger device or a smaller model (not even the smallest output fits)"


def check_fits(
    what: str,
    work: Workload,
    options: RestoreOptions,
    model: ModelFacts,
    setup: MemorySetup,
    devices: list[torch.device],
) -> None:
    """Refuse a job the devices cannot hold, before any work, naming what would fit.

    Replicas sharing a device need its memory once each; a device whose free memory cannot be
    told is not checked.

    Raises:
        OutOfMemory: one line: the estimate, the memory available, the advice and the escape hatch.
    """
    peak = estimate_peak_bytes(work, options, model, setup)
    for device, copies in Counter(devices).items():
        available = runtime.available_memory_bytes(device)
        if available is None or peak * copies <= available:
            continue
        height, width = work.size.output
        ways = advice(work, options, model, setup, available // copies)
        raise OutOfMemory(
            f"{what}: a {width}x{height} output needs about {amount(peak * copies)} of {device} "
            f"memory but {amount(available)} is available; try {ways}; {ESCAPE}"
        )


def after_out_of_memory(options: RestoreOptions, setup: MemorySetup, depth: int) -> str:
    """The settings to change once a run did run out, given those in use (each about halves a
    part of the peak); ``depth`` is the DiT's block count."""
    ways = ["--offload"] if setup.moves_weights and not setup.offload else []
    tile = options.tiling.decode_tile
    if tile is None or tile > 256:
        smaller = 512 if tile is None else max(256, tile // 2 // 8 * 8)
        ways.append(f"--encode-tile {smaller} --decode-tile {smaller}")
    if options.batch_size > 1:
        ways.append(f"--batch-size {(options.batch_size - 1) // 2 // 4 * 4 + 1}")
    if setup.device_type == "cuda" and setup.swap_blocks < depth:
        ways.append(f"--swap-blocks {min(depth, setup.swap_blocks + max(1, depth // 2))}")
    if setup.dtype == torch.float32 and setup.device_type != "cpu":
        ways.append("--dtype bf16")
    return ", ".join(ways) if ways else "a lower --resolution"


_RUNTIME_MESSAGES = ("out of memory", "can't allocate memory")  # CUDA, MPS, HIP; CPU allocator


def is_out_of_memory(error: BaseException) -> bool:
    """Whether ``error`` says a device or the host ran out of memory, in any of its forms."""
    if isinstance(error, MemoryError | torch.OutOfMemoryError):
        return True
    return isinstance(error, RuntimeError) and any(m in str(error) for m in _RUNTIME_MESSAGES)


@contextlib.contextmanager
def out_of_memory_as_error(message: Callable[[], str]) -> Iterator[None]:
    """Re-raise any out-of-memory error of the block as :class:`OutOfMemory` (``message()``)."""
    try:
        yield
    except (MemoryError, RuntimeError) as error:
        if not is_out_of_memory(error):
            raise
        raise OutOfMemory(message()) from None


def amount(count: int) -> str:
    """Bytes for people: MiB, GiB or TiB."""
    for unit, power in (("TiB", 40), ("GiB", 30)):
        if count >= 2**power:
            return f"{count / 2**power:.1f} {unit}"
    return f"{count / 2**20:.0f} MiB"
