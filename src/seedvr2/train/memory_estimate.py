"""``seedvr2 train CONFIG --dry-run``: a run's per-GPU memory peak, on paper, before any weights load.

The networks are built on the meta device by the stages' own code (structure from ``model.dit``,
or the starting weights' header, or a preset's architecture when not downloaded), so weights,
gradients, optimiser states and the EMA are counted from the real parameter tensors: exact
(buffers, a few kB, left out). Activations are a model, per video token and DiT block:

* saved for the backward pass without checkpointing: ``SAVED_DIM * d + SAVED_HIDDEN * h`` values
  of 4 bytes (width ``d``, MLP hidden ``h``); measured on the CPU with ``saved_tensors_hooks``
  (``tests/test_memory_estimate.py``); under bf16 autocast the same bytes (fp32 residuals and
  norms are saved besides the bf16 copies the matmuls keep);
* with gradient checkpointing: each block's input (``d`` values, counted at 4 bytes: its dtype
  at most), plus one block's full set while it is recomputed.

Left out: text tokens (tens per clip), attention score matrices (GPU flash/memory-efficient
attention keeps none), transient gradients of activations, allocator fragmentation; a fixed
``CUDA_RESERVE`` covers the CUDA context and allocator slack. The adversarial stage peaks in G's
step (G's graph plus D's up to its last head, one version of the batch) or D's step (D's graph
over four versions: ``x, x+σε, x̂, x̂+σε``); VAE encoding (no gradients) is a phase of its own.
"""

from __future__ import annotations

import copy
import math
import shlex
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import torch
import yaml
from torch import nn

from seedvr2.errors import ConfigError
from seedvr2.models import build_dit, build_vae
from seedvr2.models.dit import DiTConfig, SeedVR2DiT, resolve_dit_config
from seedvr2.models.vae import VAEConfig, resolve_vae_config
from seedvr2.pipeline.memory import VAE_LIVE_MAPS, amount, local_model
from seedvr2.weights.networks import network_config

from .checkpoint import is_training_checkpoint
from .config import Phase, TrainConfig, apply_override, config_from_dict, load_config
from .networks import adapt, seeded

SAVED_DIM = 16  # values per token and block saved for backward, times the width d ...
SAVED_HIDDEN = 6  # ... plus times the MLP hidden width (fp32 bytes, also under bf16 autocast)
ACTIVATION_BYTES = 4
CUDA_RESERVE = 2**30  # CUDA context and allocator slack (an allowance, not a model)
OPTIMIZER_STATES = {"adam": 2, "adamw": 2, "rmsprop": 1}  # per trainable value, plus a step


@dataclass(frozen=True)
class Part:
    """One line of the table: what, how many bytes, how it was counted."""

    name: str
    bytes: int
    note: str = ""


@dataclass(frozen=True)
class Estimate:
    """Memory held all run long plus the largest of the phases (G step, D step, encoding)."""

    structure: str  # the model, as found
    settings: list[str]
    resident: list[Part]
    phases: dict[str, list[Part]]  # transient: activations and the stepping network's grads

    @property
    def peak_phase(self) -> str:
        return max(self.phases, key=lambda name: sum(p.bytes for p in self.phases[name]))

    @property
    def total(self) -> int:
        return sum(p.bytes for p in self.resident + self.phases[self.peak_phase])


# ------------------------------------------------------------------ structure without weights


def _network_config(spec: str | None, role: str) -> DiTConfig | VAEConfig | None:
    """The structure of the starting weights ``spec`` names, from file headers only (a preset not
    downloaded: its architecture); None when ``spec`` is a training checkpoint or run folder."""
    path = Path(spec).expanduser()
    if path.is_file():
        return None if is_training_checkpoint(path) else network_config(role, path)
    if (path / "checkpoints").is_dir():
        return None
    files = local_model(spec)
    if isinstance(files, str):  # a released preset, not downloaded
        name = files.removesuffix("-sharp")
        return resolve_dit_config(name) if role == "dit" else resolve_vae_config(None)
    return network_config(role, getattr(files, role))


def dit_structure(dit: str | dict | None, init: str | None, what: str) -> DiTConfig:
    if dit is not None:
        return resolve_dit_config(dit)
    found = _network_config(init, "dit")
    if found is None:
        raise ConfigError(f"model.dit: null takes the structure from a weights file or model; "
                          f"{what} {init} is a training checkpoint: name its DiT")
    return found


def vae_structure(cfg: TrainConfig) -> VAEConfig | None:
    """The codec's VAE structure (None: pixel-unshuffle, no weights)."""
    latent = cfg.latent
    if latent.kind == "pixel_unshuffle":
        return None
    if latent.vae is not None:
        return resolve_vae_config(latent.vae)
    found = _network_config(latent.vae_checkpoint, "vae")
    if found is None:
        raise ConfigError("latent.vae: null takes the structure from a weights file or model; "
                          f"latent.vae_checkpoint {latent.vae_checkpoint} is a training checkpoint")
    return found


def _meta_dit(dit: str | dict | None, init: str | None, what: str, seed: int,
              index: int) -> SeedVR2DiT:
    """``networks.starting_dit`` without the weights: the structure on the meta device."""
    config = dit_structure(dit, init, what)
    with torch.device("meta"):
        return seeded(seed, index, lambda: build_dit(config))


@dataclass(frozen=True)
class Trained:
    """A network the run steps: its module, optimiser and whether an EMA copy is kept."""

    name: str
    module: nn.Module
    optimizer: str
    ema: bool
    graph_blocks: int  # DiT blocks its forward runs


def trained_networks(cfg: TrainConfig) -> tuple[list[Trained], list[nn.Module]]:
    """The stage's trained networks and its frozen extras (a teacher), on the meta device."""
    meta, ema, lora = torch.device("meta"), cfg.run.ema_decay is not None, cfg.model.lora
    if cfg.stage == "adversarial":
        from .adversarial import build_networks

        generator, discriminator = build_networks(cfg, meta, _meta_dit)
        depth = max(discriminator.config.head_blocks)
        return [Trained("generator", generator, cfg.optim.name, ema,
                        generator.config.num_layers),
                Trained("discriminator", discriminator, cfg.adversarial.disc_optim.name, False,
                        depth)], []
    dit = _meta_dit(cfg.model.dit, cfg.model.init, "model.init", cfg.seed, 0)
    if lora is not None:
        adapt(dit, lora, cfg.seed, 0, "dit")
    main = Trained("dit", dit, cfg.optim.name, ema, dit.config.num_layers)
    extras = [copy.deepcopy(dit)] if cfg.stage == "distill" else []  # the frozen teacher
    return [main], extras


# ------------------------------------------------------------------ counting


def _bytes(params: Iterable[torch.Tensor]) -> int:
    return sum(p.numel() * p.element_size() for p in params)


def _unique(modules: Iterable[nn.Module]) -> list[nn.Parameter]:
    """Parameters of ``modules``, each once (shared bases are one tensor)."""
    seen: dict[int, nn.Parameter] = {}
    for module in modules:
        for p in module.parameters():
            seen.setdefault(id(p), p)
    return list(seen.values())


def _trainable(module: nn.Module) -> list[nn.Parameter]:
    return [p for p in module.parameters() if p.requires_grad]


def optimizer_bytes(params: list[nn.Parameter], name: str) -> int:
    """Adam/AdamW: two states per value; RMSProp: one; plus each tensor's fp32 step count."""
    return OPTIMIZER_STATES[name] * _bytes(params) + 4 * len(params)


def clip_tokens(phase: Phase, spatial: int, temporal: int, patch: tuple[int, int, int]) -> int:
    """Video tokens of the largest clip of a phase (an area-equal crop of its largest size)."""
    frames = (max(phase.frames) - 1) // temporal + 1
    side = max(phase.sizes) // spatial
    return frames * (side // patch[1]) * (side // patch[2])


def saved_per_token(config: DiTConfig) -> int:
    """Bytes one block saves for the backward pass, per video token (no checkpointing)."""
    return ACTIVATION_BYTES * (SAVED_DIM * config.dim + SAVED_HIDDEN * config.mlp_hidden)


def activation_bytes(config: DiTConfig, tokens: int, graphs: list[tuple[int, int]],
                     checkpointing: bool) -> int:
    """Activations kept for the backward pass of forwards ``graphs`` = [(versions of the batch,
    DiT blocks)] over ``tokens`` per version; a checkpointed block is recomputed over all the
    versions of its forward at once."""
    per_block = saved_per_token(config)
    if not checkpointing:
        return sum(n * tokens * blocks * per_block for n, blocks in graphs)
    inputs = sum(n * tokens * blocks * config.dim * ACTIVATION_BYTES for n, blocks in graphs)
    return inputs + max(n for n, _ in graphs) * tokens * per_block


def _shard(count: int, shards: int) -> int:
    return math.ceil(count / shards)


def estimate(cfg: TrainConfig, gpus: int = 1) -> Estimate:
    """The per-GPU memory of ``cfg``'s run on ``gpus`` processes (see the module docstring)."""
    processes = gpus if cfg.run.parallel != "none" else 1
    shards = processes if cfg.run.parallel == "fsdp" else 1
    trained, extras = trained_networks(cfg)
    vae = vae_structure(cfg)
    dit_config: DiTConfig = trained[0].module.config
    frozen = [p for p in _unique([t.module for t in trained] + extras) if not p.requires_grad]
    shared = " (one base for G and D)" if cfg.shares_base else ""
    resident = [Part(f"weights, frozen{shared}", _shard(_bytes(frozen), shards),
                     _dtypes(frozen))] if frozen else []
    for t in trained:
        params = _trainable(t.module)
        resident.append(Part(f"weights, {t.name} (trained)", _shard(_bytes(params), shards),
                             f"{sum(p.numel() for p in params) / 1e6:.1f} M {_dtypes(params)}"))
        resident.append(Part(f"optimiser, {t.name}", _shard(optimizer_bytes(params, t.optimizer),
                                                             shards),
                             f"{t.optimizer}: {OPTIMIZER_STATES[t.optimizer]} states per value"))
        if t.ema:
            resident.append(Part(f"EMA copy, {t.name}", _shard(_bytes(params), shards),
                                 "of the trained weights only"))
        if cfg.run.parallel == "ddp" and processes > 1:
            resident.append(Part(f"DDP gradient buckets, {t.name}", _bytes(params),
                                 "all-reduce copies of the gradients"))
    if vae is not None:
        with torch.device("meta"):
            codec = build_vae(vae)
        resident.append(Part("weights, VAE (frozen)", _bytes(codec.parameters()), "fp32"))
    if cfg.run.device != "cpu":
        resident.append(Part("CUDA context, allocator slack", CUDA_RESERVE, "allowance"))
    phases = _phases(cfg, trained, vae, dit_config, processes, shards)
    return Estimate(_describe(cfg, dit_config), _settings(cfg, trained, processes), resident,
                    phases)


def _phases(cfg: TrainConfig, trained: list[Trained], vae: VAEConfig | None, dit: DiTConfig,
            processes: int, shards: int) -> dict[str, list[Part]]:
    """Transient memory of each phase of a step at the largest clip of the schedule."""
    clips = math.ceil(cfg.data.batch_size / processes)
    spatial, temporal = (vae.spatial_factor, vae.temporal_factor) if vae else (
        cfg.latent.factor, 1)
    tokens = clips * max(clip_tokens(p, spatial, temporal, dit.patch_size)
                         for p in cfg.data.phases)
    ckpt = cfg.model.gradient_checkpointing
    how = "checkpointed" if ckpt else "all saved"
    phases: dict[str, list[Part]] = {}
    if vae is not None and cfg.data.cache is None:
        frames, side = (max(max(p.frames) for p in cfg.data.phases),
                        max(max(p.sizes) for p in cfg.data.phases))
        size = 2 if cfg.run.precision == "bf16" else 4
        maps = vae.block_channels[0] * (frames + 2) * side * side * VAE_LIVE_MAPS * size * clips
        phases["VAE encoding"] = [Part("activations, VAE encoder", maps, "no gradients")]
    g_blocks, d_blocks = trained[0].graph_blocks, trained[-1].graph_blocks
    graphs = {"generator": [(1, g_blocks), (1, d_blocks)],  # G, then D on x̂ (D's real: no grad)
              "discriminator": [(4, d_blocks)]}  # one D forward over x, x+σε, x̂, x̂+σε
    for t in trained:
        graph = graphs.get(t.name, [(1, t.graph_blocks)])
        grads = _shard(_bytes(_trainable(t.module)), shards)
        shown = " + ".join(f"{n} x {tokens} tokens x {blocks} blocks" for n, blocks in graph)
        phases[f"{t.name} step"] = [
            Part(f"activations, {t.name} step", activation_bytes(dit, tokens, graph, ckpt),
                 f"{shown}, {how}"),
            Part(f"gradients, {t.name}", grads, "trained weights only"),
        ]
    return phases


def _dtypes(params: list[nn.Parameter]) -> str:
    names = sorted({str(p.dtype).removeprefix("torch.").replace("bfloat16", "bf16")
                    .replace("float32", "fp32") for p in params})
    return "/".join(names)


def _describe(cfg: TrainConfig, dit: DiTConfig) -> str:
    with torch.device("meta"):
        count = sum(p.numel() for p in build_dit(dit).parameters())
    source = f"model.dit {cfg.model.dit}" if cfg.model.dit is not None else \
        f"the header of model.init {cfg.model.init}"
    return (f"DiT of {dit.num_layers} blocks, width {dit.dim}, MLP {dit.mlp_hidden}: "
            f"{count / 1e9:.2f} B parameters (from {source}; nothing loaded)")


def _settings(cfg: TrainConfig, trained: list[Trained], processes: int) -> list[str]:
    lora, run = cfg.model.lora, cfg.run
    out = [f"stage {cfg.stage}, {processes} process(es), run.parallel {run.parallel}"]
    if lora is None:
        out.append("full fine-tune (all weights trained, fp32 master weights)")
    else:
        out.append(f"LoRA rank {lora.rank} on {list(lora.targets) or 'all projections'}, base "
                   f"{lora.base_dtype}" + (", one base shared by G and D" if cfg.shares_base
                                           else ""))
    out.append(f"precision {run.precision} (autocast), gradient checkpointing "
               f"{'on' if cfg.model.gradient_checkpointing else 'off'}")
    phases = cfg.data.phases
    out.append(f"batch {cfg.data.batch_size} (global), crops up to "
               f"{max(max(p.sizes) for p in phases)}^2 x {max(max(p.frames) for p in phases)} "
               f"frames, data.cache {'set' if cfg.data.cache else 'none (VAE encodes)'}")
    out.append("optimisers " + ", ".join(f"{t.name}: {t.optimizer}" for t in trained)
               + f"; EMA {'of ' + trained[0].name if run.ema_decay is not None else 'off'}")
    return out


# ------------------------------------------------------------------ what would fit


def _with(cfg: TrainConfig, overrides: list[str]) -> TrainConfig | None:
    """``cfg`` with dotted overrides, or None when they make it invalid."""
    values = cfg.to_dict()
    try:
        for override in overrides:
            apply_override(values, override)
        return config_from_dict(values)
    except ConfigError:
        return None


def _phases_override(cfg: TrainConfig, change: Callable[[Phase], dict]) -> str:
    phases = [{"start_step": p.start_step, "frames": list(p.frames), "sizes": list(p.sizes),
               "aspect_ratios": list(p.aspect_ratios), **change(p)} for p in cfg.data.phases]
    flow = yaml.safe_dump(phases, default_flow_style=True, width=10**6).strip()
    return f"data.phases={flow}"


def candidate_changes(cfg: TrainConfig, frame_step: int) -> list[list[list[str]]]:
    """Families of overrides that lower the peak, mildest family first; within a family,
    milder options first (the batch halves, clip lengths and crop sizes step down)."""
    lora = cfg.model.lora
    out: list[list[list[str]]] = []
    if not cfg.model.gradient_checkpointing:
        out.append([["model.gradient_checkpointing=true"]])
    if lora is None and cfg.stage in ("diffusion", "adversarial") and cfg.model.init:
        out.append([["model.lora={}", "run.parallel=none"] if cfg.run.parallel == "fsdp"
                    else ["model.lora={}"]])
    if lora is not None and not lora.share_base and cfg.stage == "adversarial":
        out.append([["model.lora.share_base=true"]])
    if lora is not None and lora.base_dtype == "fp32":
        out.append([["model.lora.base_dtype=bf16", "run.precision=bf16"]])
    if cfg.data.batch_size > 1:
        halved = sorted({max(1, cfg.data.batch_size >> k)
                         for k in range(1, cfg.data.batch_size.bit_length())}, reverse=True)
        out.append([[f"data.batch_size={n}"] for n in halved])
    longest = max(max(p.frames) for p in cfg.data.phases)
    out.append([[_phases_override(cfg, lambda p, n=n: {"frames": sorted({min(f, n)
                                                                          for f in p.frames})})]
                for n in range(longest - frame_step, 0, -frame_step)])
    side = max(max(p.sizes) for p in cfg.data.phases)
    out.append([[_phases_override(cfg, lambda p, n=n: {"sizes": sorted({min(s, n)
                                                                        for s in p.sizes})})]
                for n in range(side - 64, 63, -64)])
    return [family for family in out if family]


def fitting_changes(cfg: TrainConfig, available: int, gpus: int = 1) -> list[list[str]]:
    """Overrides that bring the estimate under ``available`` bytes: the mildest fitting option
    of each family alone, else the strongest of each family stacked in order until it fits;
    empty when nothing here is enough."""
    frame_step = 1 if cfg.latent.kind == "pixel_unshuffle" else 4

    def fits(overrides: list[str]) -> bool:
        changed = _with(cfg, overrides)
        return changed is not None and estimate(changed, gpus).total <= available

    families = candidate_changes(cfg, frame_step)
    alone = [next(o for o in family if fits(o)) for family in families if fits(family[-1])]
    if alone:
        return alone
    stacked: list[str] = []
    for family in families:
        stacked += family[-1]
        if fits(stacked):
            return [stacked]
    return []


# ------------------------------------------------------------------ the command


def report(est: Estimate, available: int | None, where: str, ways: list[list[str]]) -> str:
    """The dry run's text: structure, settings, the table, and whether and how it fits."""
    lines = [f"model: {est.structure}", *(f"  {s}" for s in est.settings), ""]
    width = max(len(p.name) for p in est.resident + [q for ps in est.phases.values() for q in ps])
    for part in est.resident:
        lines.append(f"  {part.name:<{width}}  {amount(part.bytes):>10}  {part.note}")
    for name, parts in est.phases.items():
        peak = " (the peak)" if name == est.peak_phase else ""
        lines.append(f"  during the {name}{peak}: {amount(sum(p.bytes for p in parts))}")
        for part in parts:
            lines.append(f"    {part.name:<{width - 2}}  {amount(part.bytes):>10}  {part.note}")
    lines.append(f"  {'total (per GPU)':<{width}}  {amount(est.total):>10}")
    if available is None:
        lines.append("no GPU to compare with; ask with --gpu-memory 24GiB")
    elif est.total <= available:
        lines.append(f"fits {where} ({amount(available)}), {amount(available - est.total)} spare")
    else:
        advice = " or ".join(shlex.join(way) for way in ways) or \
            "a larger GPU or more of them with run.parallel=fsdp"
        lines.append(f"does not fit {where} ({amount(available)}); would fit with: {advice}")
    return "\n".join(lines)


def dry_run(config: str | Path, overrides: list[str] | tuple[str, ...] = (),
            gpu_memory: int | None = None, gpus: int = 1) -> str:
    """``seedvr2 train CONFIG --dry-run``: resolve the config, estimate the per-GPU peak, and
    compare it with ``gpu_memory`` bytes (default: GPU 0's total memory, when there is one)."""
    cfg = load_config(config, overrides)
    est = estimate(cfg, gpus)
    available, where = gpu_memory, "the memory given"
    if available is None and torch.cuda.is_available():
        available = torch.cuda.get_device_properties(0).total_memory
        where = torch.cuda.get_device_name(0)
    ways = [] if available is None or est.total <= available else fitting_changes(
        cfg, available, gpus)
    return report(est, available, where, ways)
