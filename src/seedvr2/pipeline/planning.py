"""Dry runs: what a job will do (sizes, batches, tiles) and roughly how much memory it needs.

The memory figure is an estimate from first principles, not a measurement: weights, plus the
larger of the DiT's activations (about ``ACTIVATION_WIDTHS`` hidden-size vectors per token) and
the VAE's (its widest full-resolution feature map over one temporal chunk, a few copies alive).
``benchmarks/restore_memory.py`` measures the real peaks to compare with.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from seedvr2.media import MediaInfo
from seedvr2.weights import (
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

    @classmethod
    def of_files(cls, files: ModelFiles) -> ModelFacts:
        """Read from the weights files' names and shapes (memory-mapped, not loaded)."""
        dit = state_dict_summary(load_state_dict_file(files.dit))
        vae = state_dict_summary(load_state_dict_file(files.vae))
        return cls.of_summaries(dit, vae)

    @classmethod
    def of_summaries(cls, dit: CheckpointSummary, vae: CheckpointSummary) -> ModelFacts:
        return cls(dit.parameters, dit.width or 0, vae.parameters, vae.width or 0)


def model_facts(model: str | None) -> ModelFacts:
    """Facts of ``--model`` (None: the bundled one) from local files only; never downloads."""
    spec = str(model) if model is not None else str(default_model())
    return ModelFacts.of_files(locate_model(spec, offline=True))


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
    prepend = min(options.prepend, frames - 1)
    batches = plan_batches(frames + prepend, options.batch_size, options.effective_overlap)
    return JobPlan(job, source.info, frames, size, batches)


def estimate_peak_bytes(
    plan: JobPlan, options: RestoreOptions, model: ModelFacts, dtype: torch.dtype, offload: bool
) -> int:
    """Rough device memory peak of a job (see the module docstring)."""
    size = torch.empty((), dtype=dtype).element_size()
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
    dit_weights, vae_weights = model.dit_parameters * size, model.vae_parameters * size
    if offload:
        return max(dit_weights + dit, vae_weights + vae)
    return dit_weights + vae_weights + max(dit, vae)


def describe(plan: JobPlan, peak: int | None = None) -> str:
    """Lines a dry run prints for one job."""
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
        amount = f"{peak / 2**30:.1f} GiB" if peak >= 2**30 else f"{peak / 2**20:.0f} MiB"
        lines.append(f"  memory  about {amount} on the device (rough estimate)")
    return "\n".join(lines)
