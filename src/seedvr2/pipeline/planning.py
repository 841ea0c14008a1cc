"""Dry runs: what a job will do (sizes, batches, tiles) and roughly how much memory it needs.

The memory figure is an estimate from first principles, not a measurement: weights, plus the
larger of the DiT's activations (about ``ACTIVATION_WIDTHS`` hidden-size vectors per token) and
the VAE's (its widest full-resolution feature map over one temporal chunk, a few copies alive).
``benchmarks/restore_memory.py`` measures the real peaks to compare with.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

import torch

from seedvr2.errors import SeedVR2Error
from seedvr2.media import MediaInfo
from seedvr2.models import build_dit, build_vae
from seedvr2.weights import (
    HUB_PRESETS,
    CheckpointSummary,
    ModelFiles,
    load_state_dict_file,
    locate_model,
    state_dict_summary,
)

from .batching import TemporalBatch, pad_to_4n1, plan_batches
from .jobs import InputSelection, Job, frame_count, open_input
from .models import default_model
from .options import RestoreOptions
from .sizing import SizePlan, plan_size

ACTIVATION_WIDTHS = 24  # live (tokens, dim) tensors at the DiT's peak: qkv, attention, MLP, residuals
VAE_LIVE_MAPS = 6  # live full-resolution feature maps at the VAE decoder's peak
DEFAULT_CHUNK = 4  # frames per causal VAE chunk when the model does not say


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
        """Read from the weights files' names and shapes (memory-mapped, not loaded)."""
        dit = state_dict_summary(load_state_dict_file(files.dit))
        vae = state_dict_summary(load_state_dict_file(files.vae))
        return cls.of_summaries(dit, vae)

    @classmethod
    def of_summaries(cls, dit: CheckpointSummary, vae: CheckpointSummary) -> ModelFacts:
        return cls(dit.parameters, dit.width or 0, vae.parameters, vae.width or 0, dit.depth or 1)


    @classmethod
    def of_preset(cls, name: str) -> ModelFacts:
        """Of a released model (``3b``, ``7b``, ``7b-sharp``), built on the meta device."""
        with torch.device("meta"):
            dit, vae = build_dit(name.removesuffix("-sharp")), build_vae()
        return cls(
            sum(p.numel() for p in dit.parameters()),
            dit.config.dim,
            sum(p.numel() for p in vae.parameters()),
            vae.config.block_channels[0],
            dit.config.num_layers,
        )


def model_facts(model: str | None) -> ModelFacts:
    """Facts of ``--model`` (None: the bundled one) from local files only; never downloads.

    A released preset that is not downloaded yet is described from its architecture.
    """
    spec = str(model) if model is not None else str(default_model())
    try:
        return ModelFacts.of_files(locate_model(spec, offline=True))
    except SeedVR2Error:
        if spec not in HUB_PRESETS:
            raise
        return ModelFacts.of_preset(spec)


@dataclass(frozen=True)
class JobPlan:
    """A job as it would run."""

    job: Job
    info: MediaInfo
    frames: int
    size: SizePlan
    batches: list[TemporalBatch]


def plan_job(options: RestoreOptions, job: Job, selection: InputSelection) -> JobPlan:
    """Open the input (no decoding beyond counting) and plan sizes and batches."""
    source = open_input(job, selection)
    frames = frame_count(source)
    size = plan_size((source.info.height, source.info.width), options.resolution, options.scale,
                     options.max_side)  # fmt: skip
    return JobPlan(job, source.info, frames, size, _job_batches(frames, options))


@dataclass(frozen=True)
class MemorySetup:
    """The run settings that change the memory peak besides :class:`RestoreOptions`."""

    dtype: torch.dtype = torch.float32
    offload: bool = False
    swap_blocks: int = 0


def estimate_peak_bytes(
    plan: JobPlan, options: RestoreOptions, model: ModelFacts, setup: MemorySetup
) -> int:
    """Rough device memory peak of a job (see the module docstring)."""
    size = torch.empty((), dtype=setup.dtype).element_size()
    height, width = plan.size.padded
    longest = max(batch.padded_length for batch in plan.batches)
    latent_frames = (pad_to_4n1(longest) - 1) // 4 + 1
    tokens = latent_frames * (height // 16) * (width // 16)
    dit = tokens * model.dit_width * ACTIVATION_WIDTHS * size
    tiling = options.tiling
    tile_h = min(height, tiling.decode_tile or height)
    tile_w = min(width, tiling.decode_tile or width)
    chunk = longest if tiling.temporal_chunk == 0 else (tiling.temporal_chunk or DEFAULT_CHUNK)
    vae = model.vae_channels * (chunk + 2) * tile_h * tile_w * VAE_LIVE_MAPS * size
    swapped = min(setup.swap_blocks, model.dit_depth)
    resident = model.dit_depth - swapped + (2 if swapped else 0)  # + the block in use, prefetched
    dit_weights = model.dit_parameters * size * min(resident, model.dit_depth) // model.dit_depth
    vae_weights = model.vae_parameters * size
    if setup.offload:
        return max(dit_weights + dit, vae_weights + vae)
    return dit_weights + vae_weights + max(dit, vae)


Setting = tuple[RestoreOptions, MemorySetup]


def fitting_changes(
    plan: JobPlan,
    options: RestoreOptions,
    model: ModelFacts,
    setup: MemorySetup,
    available: int,
) -> list[str]:
    """Settings that bring the estimate under ``available`` bytes, mildest first.

    Each change is tried alone; when none fits alone they are stacked in order and the first
    fitting combination is returned; an empty list means nothing here is enough.
    """
    tile = min(512, max(plan.size.padded) // 2 // 8 * 8)
    half_batch = (options.batch_size - 1) // 2 // 4 * 4 + 1
    half_depth = model.dit_depth // 2
    changes: list[tuple[str, Callable[[RestoreOptions, MemorySetup], Setting]]] = []
    if not setup.offload:
        changes.append(("--offload", lambda o, s: (o, replace(s, offload=True))))
    if tile >= 64 and (options.tiling.decode_tile is None or options.tiling.decode_tile > tile):
        tiling = replace(options.tiling, encode_tile=tile, decode_tile=tile,
                         overlap=min(options.tiling.overlap, tile // 4 // 8 * 8))  # fmt: skip
        changes.append((f"--encode-tile {tile} --decode-tile {tile}",
                        lambda o, s: (replace(o, tiling=tiling), s)))  # fmt: skip
    if half_batch < options.batch_size:
        changes.append((f"--batch-size {half_batch}", lambda o, s: (
            replace(o, batch_size=half_batch, overlap=min(o.overlap, half_batch - 1)), s)))
    if setup.swap_blocks < half_depth:
        changes.append((f"--swap-blocks {half_depth}",
                        lambda o, s: (o, replace(s, swap_blocks=half_depth))))  # fmt: skip
    if setup.dtype == torch.float32:
        changes.append(("--dtype bf16", lambda o, s: (o, replace(s, dtype=torch.bfloat16))))

    def fits(setting: Setting) -> bool:
        opts, mem = setting
        return estimate_peak_bytes(_replan(plan, opts), opts, model, mem) <= available

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


def _replan(plan: JobPlan, options: RestoreOptions) -> JobPlan:
    """``plan`` with the batches ``options`` give (sizes do not change)."""
    return replace(plan, batches=_job_batches(plan.frames, options))


def _job_batches(frames: int, options: RestoreOptions) -> list[TemporalBatch]:
    """Temporal batches of a ``frames``-long input, reversed prepended frames included."""
    prepend = min(options.prepend, frames - 1)
    return plan_batches(frames + prepend, options.batch_size, options.effective_overlap)


def describe(
    plan: JobPlan,
    peak: int | None = None,
    available: int | None = None,
    changes: list[str] | None = None,
) -> str:
    """Lines a dry run prints for one job; ``changes`` are printed when ``peak > available``."""
    info, size = plan.info, plan.size
    lengths = sorted({batch.length for batch in plan.batches})
    lines = [
        f"{plan.job.source} -> {plan.job.output}",
        f"  input   {info.width}x{info.height}, {plan.frames} frame(s), {float(info.fps):.3f} fps, "
        f"{info.bit_depth}-bit{', alpha' if info.has_alpha else ''}"
        f"{', audio' if info.has_audio else ''}",
        f"  output  {size.output[1]}x{size.output[0]} (networks see {size.padded[1]}x"
        f"{size.padded[0]}, padded then cropped)",
        f"  batches {len(plan.batches)} of {'/'.join(map(str, lengths))} frame(s)",
    ]
    if plan.job.output.exists():
        lines.append("  note    the output exists (needs --overwrite or --skip-existing)")
    if peak is not None:
        of = f" of {_amount(available)} available" if available is not None else ""
        lines.append(f"  memory  about {_amount(peak)} on the device{of} (rough estimate)")
        if available is not None and peak > available:
            advice = " or ".join(changes or []) or "a lower --resolution or a larger device"
            lines.append(f"  warning will not fit; try {advice}")
    return "\n".join(lines)


def _amount(count: int) -> str:
    return f"{count / 2**30:.1f} GiB" if count >= 2**30 else f"{count / 2**20:.0f} MiB"
