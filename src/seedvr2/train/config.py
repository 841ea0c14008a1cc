"""Training run configuration: typed dataclasses loaded from YAML with dotted overrides.

One file configures one run of one stage (spec §1: ``diffusion`` pre-training, progressive
``distill``-ation, ``adversarial`` post-training; plus ``fidelity``, the one-step generator
fitted by L1/MSE alone, and ``vae`` for the small bundled VAE). Every
section has defaults; unknown keys, wrong types and impossible values raise
:class:`~seedvr2.errors.ConfigError` naming the dotted key (``data.phases[1].frames``).
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml

from seedvr2.errors import ConfigError

PASSTHROUGH = "passthrough"  # model.init / discriminator_init: a DiT that returns its condition

Stage = Literal["diffusion", "distill", "fidelity", "adversarial", "vae"]


@dataclass(frozen=True)
class LoRAConfig:
    """Low-rank adapters (PEFT) on the DiT's projections; the base weights stay frozen."""

    rank: int = 16  # r of every adapted projection
    alpha: float = 16.0  # the update is scaled by alpha / rank
    dropout: float = 0.0  # dropout on the adapters' input
    targets: tuple[str, ...] = ()  # of attn.proj_qkv, attn.proj_out, mlp.proj_in,
    # mlp.proj_in_gate (3B), mlp.proj_out; () = all of them
    base_dtype: Literal["fp32", "bf16"] = "fp32"  # frozen base weights (bf16: half the memory)
    # Adversarial stage: G and D on one frozen base in memory (each with its own adapter) when
    # adversarial.discriminator_init is model.init; false: D gets a copy of its own.
    share_base: bool = True


@dataclass(frozen=True)
class ModelConfig:
    """The trained network (the generator in the adversarial stage)."""

    dit: str | dict[str, Any] | None = "3b-tiny"  # DiT preset name, DiTConfig fields, or None:
    # the structure of the ``init`` weights file (its stored config or released size)
    # Starting weights: a training checkpoint or run folder (its EMA weights), a weights file, or
    # a model as ``seedvr2 restore --model`` takes it (preset 3b/7b/7b-sharp, folder, repo id);
    # or ``passthrough``: a DiT that returns its LQ condition exactly (x_0 = LQ latent) until
    # training opens its gates (seedvr2.models.dit.passthrough; 7B structure).
    init: str | None = None
    gradient_checkpointing: bool = False  # recompute block activations in the backward pass
    # Parameter-name prefixes of the generator kept as they start (fidelity, adversarial), e.g.
    # [vid_in, vid_out]: a pass-through's exact input/output maps stay exact while blocks learn.
    frozen: tuple[str, ...] = ()
    lora: LoRAConfig | None = None  # train adapters (also D's, adversarial) instead of all weights


@dataclass(frozen=True)
class LatentConfig:
    """How pixels become latents: the causal VAE, or a fixed pixel-unshuffle for small runs."""

    kind: Literal["vae", "pixel_unshuffle"] = "vae"
    vae: str | dict[str, Any] | None = "tiny"  # VAE preset or VAEConfig fields (kind "vae");
    # None: the structure of the ``vae_checkpoint`` weights file
    # weights of the VAE: a `vae` stage checkpoint, a weights file, or a model (preset, folder,
    # repo id: its VAE); None: random
    vae_checkpoint: str | None = None
    factor: int = 4  # pixel-unshuffle factor (kind "pixel_unshuffle"): 3 * factor**2 channels


@dataclass(frozen=True)
class TextConfig:
    """Text embeddings fed to the DiT's text stream (SeedVR2 inference: one fixed embedding)."""

    path: str | None = None  # (length, txt_in_dim) tensor file; None: a fixed seeded embedding
    null_path: str | None = None  # null/negative embedding for dropping and CFG; None: zeros
    length: int = 8  # tokens of the fixed embedding when ``path`` is None
    drop_prob: float = 0.0  # SD3-style: replace the embedding by the null one with this prob.


@dataclass(frozen=True)
class Phase:
    """One step range of the clip-growth schedule (SeedVR: 5@256² -> 9@512² -> 21@768²)."""

    start_step: int = 0  # first step of this phase
    frames: tuple[int, ...] = (1,)  # clip lengths drawn uniformly per step (1 = image)
    sizes: tuple[int, ...] = (256,)  # HQ crop area as the side of an equal-area square
    aspect_ratios: tuple[float, ...] = (1.0,)  # width / height of crops, drawn uniformly


@dataclass(frozen=True)
class DataConfig:
    """High-quality media, crops, the clip schedule and the LQ synthesis."""

    roots: tuple[str, ...] = ()  # folders searched recursively for videos and images
    # Folders of real pairs: FOLDER/lq/PATH and FOLDER/hq/PATH (any extension) are one clip
    # before and after, at any scale; LQ is then not synthesised. A bad pair stops the run.
    paired: tuple[str, ...] = ()
    sequences: bool = False  # in ``paired`` folders, a folder of images is one clip
    manifest: str | None = None  # file of entries: one path or JSON {"path", "text"} per line
    phases: tuple[Phase, ...] = (Phase(),)
    batch_size: int = 4  # clips per micro-step over all processes (global)
    scale: int = 4  # LQ = HQ / scale, then resized back to HQ size (spec §1a "Condition")
    # Degradation YAML (configs/degradations/); None: area resize. A list draws one entry per
    # clip, uniformly; an entry is a path or {path, scale} (the config at another scale), and
    # every entry's scale must divide ``scale``: one model for several scales.
    degradation: str | tuple[str | dict[str, Any], ...] | None = None
    workers: int = 0  # DataLoader worker processes per rank
    cache: str | None = None  # folder of precomputed latents (see ``latent_cache``)
    # Further caches drawn from with ``cache`` (every file alike, so each weighs by its count),
    # each written by another config; its cache.json, not this config's data, says what it holds.
    extra_caches: tuple[str, ...] = ()
    # Pixels per frame: a still image also serves multi-frame clips, as a straight pan at a speed
    # drawn per clip and axis from [-still_motion, still_motion] (fresh noise per frame then
    # teaches the DiT to use neighbouring frames). 0: stills serve single frames only.
    still_motion: int = 0


@dataclass(frozen=True)
class OptimConfig:
    """Optimiser; SeedVR2: AdamW wd 0.01 lr 1e-6; APT: Adam beta1 0, beta2 0.9 (spec §1c)."""

    name: Literal["adamw", "adam", "rmsprop"] = "adamw"
    lr: float = 1e-4
    betas: tuple[float, float] = (0.9, 0.999)  # rmsprop uses betas[1] as alpha
    eps: float = 1e-8
    weight_decay: float = 0.0
    warmup_steps: int = 0  # linear warm-up from 0 to ``lr``


@dataclass(frozen=True)
class RunConfig:
    """Steps, precision, parallelism, logging and checkpoints."""

    steps: int = 1000
    grad_accum: int = 1  # micro-steps per optimiser step
    grad_clip: float | None = None  # max global gradient norm; None: no clipping (APT)
    precision: Literal["fp32", "bf16"] = "fp32"  # bf16: autocast; weights, EMA, optimiser fp32
    parallel: Literal["none", "ddp", "fsdp"] = "none"  # ddp/fsdp need torchrun
    device: Literal["auto", "cpu", "cuda"] = "auto"
    ema_decay: float | None = 0.9998  # EMA of the trained network (SeedVR config); None: off
    log_every: int = 10
    sample_every: int = 0  # write sample videos/images every N steps; 0: never
    sample_steps: int = 8  # Euler steps of the diffusion-stage samples
    checkpoint_every: int = 500
    keep_last: int = 3  # checkpoints kept; older ones are deleted


@dataclass(frozen=True)
class DiffusionConfig:
    """Stage 1: v-prediction on the lerp schedule (spec §1a)."""

    timestep_loc: float = 0.0  # logit-normal location
    timestep_scale: float = 1.0  # logit-normal scale
    resolution_shift: bool = True  # shift training timesteps by clip size (spec §1a)
    condition_noise: float = 0.25  # LQ-latent noise level tau/T drawn in [0, this] (SeedVR)


@dataclass(frozen=True)
class DistillConfig:
    """Stage 2: progressive distillation 64 -> 32 -> ... -> 1 steps (spec §1b)."""

    teacher_steps: int = 64  # Euler steps of the first teacher
    final_steps: int = 1  # student steps of the last round
    round_steps: int = 10000  # optimiser steps per halving round (paper: ~10K)
    first_round_cfg: float = 1.0  # teacher guidance in round 1 (paper 7.5, needs a null text)
    condition_noise: float = 0.0  # SeedVR2 inference uses none


@dataclass(frozen=True)
class FidelityConfig:
    """The one-step generator fitted by L1 and squared error alone (the PSNR warm-up of ESRGAN)."""

    l1_weight: float = 1.0
    mse_weight: float = 0.0  # squared error on latents: PSNR's own criterion
    log_mse_weight: float = 0.0  # per-clip 10 log10 MSE: minus the mean PSNR of the batch
    relative_mse_weight: float = 0.0  # per-clip MSE / (the LQ latent's MSE + floor)
    # Latent MSE of a 26 dB clip (pixels in [-1, 1]): weights span ~4x between clean and heavily
    # degraded clips; a floor of 4e-4 (40 dB) let a few flat crops drive each step, and a CPU
    # probe learnt nothing in 300 steps where 1e-2 gained 0.1 dB at x2.
    relative_mse_floor: float = 1e-2
    # per clip, max(0, MSE - the LQ latent's MSE) / (the LQ latent's MSE + floor): a penalty for
    # being worse than the bicubic input, which weighs near-lossless clips most
    excess_mse_weight: float = 0.0
    excess_mse_floor: float = 1e-5  # a 56 dB clip's latent MSE
    condition_noise: float = 0.0


@dataclass(frozen=True)
class AdversarialConfig:
    """Stage 3: APT with RpGAN, approximate R1/R2, L1 and feature matching (spec §1c, §2)."""

    # D's backbone: a diffusion-stage checkpoint, or starting weights as model.init takes them.
    # The released models' diffusion-stage weights were never published: to fine-tune them,
    # start D from the generator's own weights (the same value as model.init, passthrough too).
    discriminator_init: str | None = None
    head_blocks: tuple[int, ...] = ()  # 1-indexed; () = proportional to (16, 26, 36) of 36
    head_heads: int = 8
    gan_loss: Literal["rpgan", "nonsaturating"] = "rpgan"
    r1_weight: float = 1000.0
    r2_weight: float = 1000.0
    sigma: float = 0.1  # std of the approximate-R1/R2 perturbation (APT video value)
    l1_weight: float = 0.1  # paper: 1.0 in ablations, 0.1 final
    mse_weight: float = 0.0  # squared error on latents (not in the paper; the bundled model's)
    feature_weight: float = 0.1
    shift_image: float = 1.0  # t_D = shift(U(0, T), s) for single images (APT)
    shift_video: float = 12.0  # ... and for clips
    condition_noise: float = 0.0
    disc_optim: OptimConfig = OptimConfig(name="adam", lr=1e-5, betas=(0.0, 0.9))


@dataclass(frozen=True)
class VAETrainConfig:
    """VAE stage: reconstruction L1 plus a small KL (our small bundled model)."""

    kl_weight: float = 1e-6


@dataclass(frozen=True)
class TrainConfig:
    """A whole training run."""

    stage: Stage = "diffusion"
    output_dir: str = "runs/default"
    seed: int = 0
    model: ModelConfig = ModelConfig()
    latent: LatentConfig = LatentConfig()
    text: TextConfig = TextConfig()
    data: DataConfig = DataConfig()
    optim: OptimConfig = OptimConfig()
    run: RunConfig = RunConfig()
    diffusion: DiffusionConfig = DiffusionConfig()
    distill: DistillConfig = DistillConfig()
    fidelity: FidelityConfig = FidelityConfig()
    adversarial: AdversarialConfig = AdversarialConfig()
    vae: VAETrainConfig = VAETrainConfig()

    def __post_init__(self) -> None:
        _validate(self)

    @property
    def shares_base(self) -> bool:
        """Whether G and D of an adversarial LoRA run sit on one frozen base (same weights)."""
        lora = self.model.lora
        return (self.stage == "adversarial" and lora is not None and lora.share_base
                and self.adversarial.discriminator_init == self.model.init)

    def to_dict(self) -> dict[str, Any]:
        """Plain dict (YAML/JSON-able), stored in every checkpoint."""
        return _plain(dataclasses.asdict(self))


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def _check(ok: bool, key: str, message: str) -> None:
    if not ok:
        raise ConfigError(f"{key}: {message}")


def _validate(cfg: TrainConfig) -> None:
    """Cross-field checks; each error names the key to change."""
    data, run = cfg.data, cfg.run
    _check(bool(data.roots or data.paired) or data.manifest is not None
           or data.cache is not None, "data.roots",
           "give data.roots, data.paired, data.manifest or data.cache")
    _check(not data.paired or cfg.stage in ("diffusion", "distill", "fidelity", "adversarial"),
           "data.paired", f"the {cfg.stage} stage trains without LQ; use data.roots")
    _check(cfg.stage != "vae" or data.cache is None, "data.cache",
           "the vae stage trains on pixels; remove data.cache")
    _check(not data.extra_caches or data.cache is not None, "data.extra_caches",
           "set data.cache too (the run's own cache; extra caches are drawn from with it)")
    caches = [Path(c).resolve() for c in (data.cache, *data.extra_caches) if c is not None]
    _check(len(set(caches)) == len(caches), "data.extra_caches",
           "names a folder twice, or data.cache again")
    _check(data.batch_size >= 1, "data.batch_size", f"must be >= 1, got {data.batch_size}")
    _check(data.scale >= 1, "data.scale", f"must be >= 1, got {data.scale}")
    _check(data.workers >= 0, "data.workers", f"must be >= 0, got {data.workers}")
    _check(data.still_motion >= 0, "data.still_motion", f"must be >= 0, got {data.still_motion}")
    _check(len(data.phases) >= 1, "data.phases", "needs at least one phase")
    _check(data.phases[0].start_step == 0, "data.phases[0].start_step",
           "the first phase starts at 0")
    for i, phase in enumerate(data.phases):
        key = f"data.phases[{i}]"
        if i:
            _check(phase.start_step > data.phases[i - 1].start_step, f"{key}.start_step",
                   "phases must start in increasing order")
        _check(bool(phase.frames) and all(f >= 1 for f in phase.frames), f"{key}.frames",
               f"need positive frame counts, got {list(phase.frames)}")
        _check(bool(phase.sizes) and all(s >= 16 for s in phase.sizes), f"{key}.sizes",
               f"need sizes >= 16, got {list(phase.sizes)}")
        _check(bool(phase.aspect_ratios) and all(a > 0 for a in phase.aspect_ratios),
               f"{key}.aspect_ratios", f"need positive ratios, got {list(phase.aspect_ratios)}")
    _check(run.steps >= 1, "run.steps", f"must be >= 1, got {run.steps}")
    _check(run.grad_accum >= 1, "run.grad_accum", f"must be >= 1, got {run.grad_accum}")
    _check(run.keep_last >= 1, "run.keep_last", f"must be >= 1, got {run.keep_last}")
    _check(run.checkpoint_every >= 1, "run.checkpoint_every", "must be >= 1")
    _check(run.log_every >= 1, "run.log_every", "must be >= 1")
    _check(run.ema_decay is None or 0.0 < run.ema_decay < 1.0, "run.ema_decay",
           f"must be in (0, 1) or null, got {run.ema_decay}")
    _check(run.grad_clip is None or run.grad_clip > 0, "run.grad_clip", "must be > 0 or null")
    optims = (("optim", cfg.optim), ("adversarial.disc_optim", cfg.adversarial.disc_optim))
    for key, optim in optims:
        _check(optim.lr > 0, f"{key}.lr", f"must be > 0, got {optim.lr}")
        _check(all(0 <= b < 1 for b in optim.betas), f"{key}.betas", "must be in [0, 1)")
    _check(cfg.latent.vae is not None or cfg.latent.vae_checkpoint is not None, "latent.vae",
           "null takes the structure from latent.vae_checkpoint; give one or a VAE preset")
    _check(cfg.latent.factor >= 1, "latent.factor", f"must be >= 1, got {cfg.latent.factor}")
    _check(0 <= cfg.text.drop_prob <= 1, "text.drop_prob", "must be in [0, 1]")
    _check(cfg.text.length >= 1, "text.length", "must be >= 1")
    lora = cfg.model.lora
    if lora is not None:
        _check(cfg.stage in ("diffusion", "adversarial"), "model.lora",
               f"adapters train in the diffusion and adversarial stages, not {cfg.stage!r}")
        _check(cfg.model.init is not None, "model.init",
               "model.lora adapts pretrained weights: name them (e.g. 3b or a model folder)")
        _check(lora.rank >= 1, "model.lora.rank", f"must be >= 1, got {lora.rank}")
        _check(lora.alpha > 0, "model.lora.alpha", f"must be > 0, got {lora.alpha}")
        _check(0 <= lora.dropout < 1, "model.lora.dropout", "must be in [0, 1)")
        _check(lora.base_dtype == "fp32" or run.precision == "bf16", "model.lora.base_dtype",
               "a bf16 base needs run.precision: bf16")
        _check(run.parallel != "fsdp", "run.parallel", "LoRA runs use none or ddp (fsdp: full "
               "fine-tuning)")
    _check(cfg.model.dit is not None or cfg.model.init not in (None, PASSTHROUGH), "model.dit",
           "null takes the structure from model.init's weights; give them or a DiT preset")
    dist = cfg.distill
    for key in ("teacher_steps", "final_steps"):
        n = getattr(dist, key)
        _check(n >= 1 and n & (n - 1) == 0, f"distill.{key}", f"must be a power of two, got {n}")
    _check(dist.final_steps < dist.teacher_steps, "distill.final_steps",
           f"must be below distill.teacher_steps {dist.teacher_steps}")
    _check(dist.round_steps >= 1, "distill.round_steps", "must be >= 1")
    fid = cfg.fidelity
    weights = (fid.l1_weight, fid.mse_weight, fid.log_mse_weight, fid.relative_mse_weight,
               fid.excess_mse_weight)
    _check(min(weights) >= 0, "fidelity.l1_weight", f"weights must be >= 0, got {weights}")
    _check(sum(weights) > 0, "fidelity.mse_weight", "fidelity.l1_weight, mse_weight, "
           "log_mse_weight, relative_mse_weight and excess_mse_weight are all 0: nothing to "
           "train on")
    for floor in ("relative_mse_floor", "excess_mse_floor"):
        _check(getattr(fid, floor) > 0, f"fidelity.{floor}",
               f"must be > 0, got {getattr(fid, floor)}")
    adv = cfg.adversarial
    _check(adv.sigma > 0, "adversarial.sigma", f"must be > 0, got {adv.sigma}")
    _check(adv.shift_image > 0 and adv.shift_video > 0, "adversarial.shift_video", "must be > 0")
    if cfg.stage == "distill":
        rounds = int(math.log2(dist.teacher_steps // dist.final_steps))
        _check(run.steps <= rounds * dist.round_steps, "run.steps",
               f"{run.steps} exceeds {rounds} rounds x distill.round_steps {dist.round_steps}")


# --------------------------------------------------------------------------------------------
# Dict -> dataclass conversion with key-naming errors


def _convert(tp: Any, value: Any, key: str) -> Any:
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if tp is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        for option in (a for a in args if a is not type(None)):
            try:
                return _convert(option, value, key)
            except ConfigError:
                continue
        raise ConfigError(f"{key}: {value!r} fits none of {[_name(a) for a in args]}")
    if origin is Literal:
        if value not in args:
            raise ConfigError(f"{key}: {value!r} is not one of {list(args)}")
        return value
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a mapping, got {value!r}")
        return from_dict(tp, value, key)
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{key}: expected a list, got {value!r}")
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_convert(args[0], v, f"{key}[{i}]") for i, v in enumerate(value))
        if len(value) != len(args):
            raise ConfigError(f"{key}: expected {len(args)} values, got {list(value)}")
        return tuple(_convert(a, v, f"{key}[{i}]") for i, (a, v) in enumerate(zip(args, value)))
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a mapping, got {value!r}")
        return dict(value)
    if tp is float:
        if isinstance(value, str):  # PyYAML reads 1e-4 (no dot) as a string
            try:
                return float(value)
            except ValueError:
                pass
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{key}: expected a number, got {value!r}")
        return float(value)
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{key}: expected an integer, got {value!r}")
        return value
    if tp in (bool, str):
        if not isinstance(value, tp):
            raise ConfigError(f"{key}: expected {tp.__name__}, got {value!r}")
        return value
    raise TypeError(f"unsupported config type {tp} at {key}")  # a bug in the schema


def _name(tp: Any) -> str:
    return getattr(tp, "__name__", str(tp))


def from_dict(cls: type, values: dict[str, Any], prefix: str = "") -> Any:
    """Build dataclass ``cls`` from a nested dict; unknown keys and bad types name the key."""
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    dotted = f"{prefix}." if prefix else ""
    unknown = sorted(set(values) - set(names))
    if unknown:
        raise ConfigError(f"unknown key {dotted}{unknown[0]}; known keys here: {names}")
    kwargs = {k: _convert(hints[k], v, f"{dotted}{k}") for k, v in values.items()}
    try:
        return cls(**kwargs)
    except ConfigError as error:
        if prefix:
            raise ConfigError(f"{prefix}: {error}") from None
        raise


def apply_override(values: dict[str, Any], override: str) -> None:
    """Set ``a.b.c=value`` (value parsed as YAML) in a nested dict, in place."""
    if "=" not in override:
        raise ConfigError(f"override {override!r} is not of the form key.path=value")
    path, raw = override.split("=", 1)
    parts = path.strip().split(".")
    node = values
    for depth, part in enumerate(parts[:-1]):
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ConfigError(f"override {path}: {'.'.join(parts[:depth + 1])} is not a section")
        node = child
    node[parts[-1]] = yaml.safe_load(raw)


def load_config(
    path: str | Path | None, overrides: list[str] | tuple[str, ...] = ()
) -> TrainConfig:
    """Read a YAML run config, apply dotted overrides, validate (spec style rule 7)."""
    values: dict[str, Any] = {}
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"config file {path} does not exist")
        try:
            values = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as error:
            raise ConfigError(f"{path} is not valid YAML: {error}") from None
        if not isinstance(values, dict):
            raise ConfigError(f"{path} must hold a mapping at the top level")
    for override in overrides:
        apply_override(values, override)
    return from_dict(TrainConfig, values)


def config_from_dict(values: dict[str, Any]) -> TrainConfig:
    """Inverse of :meth:`TrainConfig.to_dict` (checkpoints store the resolved config)."""
    return from_dict(TrainConfig, values)


__all__ = [
    "AdversarialConfig", "DataConfig", "DiffusionConfig", "DistillConfig", "LatentConfig",
    "LoRAConfig", "ModelConfig", "OptimConfig", "Phase", "RunConfig", "TextConfig", "TrainConfig",
    "VAETrainConfig", "apply_override", "config_from_dict", "from_dict", "load_config",
]
