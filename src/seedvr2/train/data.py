"""Training batches: a step schedule of clip shapes, random crops, LQ synthesis, workers.

Each optimiser step draws one clip shape (frames, height, width) from the active phase of the
clip-growth schedule (``data.phases``; images first, then longer clips, spec §1a/§1c curriculum);
every clip of that micro-batch has this shape. Sample ``index`` of the global batch is read,
cropped and degraded from its own :func:`~seedvr2.train.rng.generator`, so rank ``r`` of a DDP run
reads exactly the samples ``[r*b, (r+1)*b)`` a single process would read.

Dimension key: ``b`` clips, ``c`` channels, ``f`` frames, ``h w`` pixels.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import NamedTuple

import torch
import torch.nn.functional as F
from einops import rearrange
from torch.utils.data import DataLoader, Dataset, Sampler

from seedvr2.errors import ConfigError
from seedvr2.models.dit.config import ConditionResize
from seedvr2.pipeline.sizing import upscale_lq
from seedvr2.weights import load_text_embedding

from . import rng
from .config import DataConfig, Phase, TrainConfig
from .degrade import DegradationConfig, degrade_video, load_degradation_config
from .pairs import Pair, scan_pairs
from .sources import MediaEntry, SourceCache, build_index, read_clip

PREVIEW_STEP = 1 << 40  # the "step" of preview samples: beyond any run, so never a training key

# (video (c, f, h, w) in [0, 1], generator) -> LQ video (c, f, h/scale, w/scale) in [0, 1]
Degrader = Callable[[torch.Tensor, torch.Generator], torch.Tensor]


class SampleKey(NamedTuple):
    """Everything that determines one training sample."""

    step: int
    micro: int  # micro-step within the step (gradient accumulation)
    index: int  # position in the global batch
    frames: int
    height: int
    width: int


@dataclass
class PixelBatch:
    """HQ clips and their LQ conditions, all of one shape."""

    hq: torch.Tensor  # (b, c, f, h, w) in [-1, 1]
    lq: torch.Tensor | None  # (b, c, f, h, w) LQ resized back to HQ size, in [-1, 1]
    text: list[torch.Tensor | None]  # per clip: (l, txt_in_dim) from the manifest, or None
    keys: list[SampleKey]


def phase_at(phases: tuple[Phase, ...], step: int) -> Phase:
    """The schedule phase active at ``step``."""
    return [p for p in phases if p.start_step <= step][-1]


def crop_size(size: int, aspect: float, multiple: int) -> tuple[int, int]:
    """(h, w) with area about ``size**2``, ``w / h`` about ``aspect``, multiples of ``multiple``."""
    height = max(multiple, round(size / math.sqrt(aspect) / multiple) * multiple)
    width = max(multiple, round(size * math.sqrt(aspect) / multiple) * multiple)
    return height, width


def plan_shape(
    phases: tuple[Phase, ...], seed: int, step: int, micro: int, multiple: int
) -> tuple[int, int, int]:
    """(frames, height, width) shared by every clip of one micro-step."""
    phase = phase_at(phases, step)
    g = rng.generator(seed, "shape", step, micro)

    def pick(options: tuple) -> object:
        return options[int(torch.randint(len(options), (), generator=g))]

    frames = int(pick(phase.frames))
    height, width = crop_size(int(pick(phase.sizes)), float(pick(phase.aspect_ratios)), multiple)
    return frames, height, width


class StepSampler(Sampler[list[SampleKey]]):
    """This rank's sample keys for each micro-step from ``start_step`` to ``end_step``."""

    def __init__(
        self,
        data: DataConfig,
        seed: int,
        start_step: int,
        end_step: int,
        grad_accum: int,
        rank: int,
        world_size: int,
        multiple: int,
    ) -> None:
        if data.batch_size % world_size:
            raise ConfigError(
                f"data.batch_size {data.batch_size} is not divisible by {world_size} processes"
            )
        self.data, self.seed, self.multiple = data, seed, multiple
        self.start_step, self.end_step, self.grad_accum = start_step, end_step, grad_accum
        self.local = data.batch_size // world_size
        self.offset = rank * self.local

    def __len__(self) -> int:
        return (self.end_step - self.start_step) * self.grad_accum

    def __iter__(self) -> Iterator[list[SampleKey]]:
        for step in range(self.start_step, self.end_step):
            for micro in range(self.grad_accum):
                shape = plan_shape(self.data.phases, self.seed, step, micro, self.multiple)
                yield [SampleKey(step, micro, self.offset + i, *shape) for i in range(self.local)]


@dataclass(frozen=True)
class AreaDegradation:
    """The plain LQ when no degradation config is given: area down-scaling, 8-bit levels."""

    scale: int

    def __call__(self, video: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        del generator  # deterministic
        frames = rearrange(video, "c f h w -> f c h w")
        small = F.interpolate(frames, scale_factor=1 / self.scale, mode="area")
        return rearrange(torch.round(small.clamp(0, 1) * 255) / 255, "f c h w -> c f h w")


@dataclass(frozen=True)
class BicubicDegradation:
    """A clean LQ: antialiased bicubic down-scaling, 8-bit levels (as ``seedvr2 eval`` without
    ``--degradation``)."""

    scale: int

    def __call__(self, video: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        del generator  # deterministic
        frames = rearrange(video, "c f h w -> f c h w")
        size = (frames.shape[-2] // self.scale, frames.shape[-1] // self.scale)
        small = F.interpolate(frames, size=size, mode="bicubic", antialias=True,
                              align_corners=False)
        return rearrange(torch.round(small.clamp(0, 1) * 255) / 255, "f c h w -> c f h w")


CLEAN = {"area": AreaDegradation, "bicubic": BicubicDegradation}


@dataclass(frozen=True)
class RealDegradation:
    """The second-order real-world pipeline of :mod:`seedvr2.train.degrade` (spec §3)."""

    config: DegradationConfig

    def __call__(self, video: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        frames = degrade_video(rearrange(video, "c f h w -> f c h w"), self.config, generator)
        return rearrange(frames, "f c h w -> c f h w")


@dataclass(frozen=True)
class MixedDegradation:
    """One of several degradations per clip, drawn uniformly with the clip's generator."""

    choices: tuple[Degrader, ...]

    def __call__(self, video: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        pick = int(torch.randint(len(self.choices), (), generator=generator))
        return self.choices[pick](video, generator)


def build_degrader(path: str | tuple[str | dict, ...] | None, scale: int) -> Degrader:
    """The LQ synthesis of ``data.degradation``, or area down-scaling by ``scale`` when None.

    A single config must have the scale ``scale``. A list mixes entries (a path, a mapping
    ``{path, scale}`` that sets the config's scale, or ``{clean: area|bicubic, scale}``, a plain
    down-scale); each entry's scale must divide ``scale`` (crops are multiples of
    ``2 * scale``), which trains one model for several scales.
    """
    if path is None:
        return AreaDegradation(scale)
    if isinstance(path, tuple):
        if not path:
            raise ConfigError("data.degradation is an empty list; give configs or null")
        return MixedDegradation(tuple(_mixture_entry(item, scale) for item in path))
    config = load_degradation_config(path)
    if config.scale != scale:
        raise ConfigError(f"data.scale {scale} differs from the scale {config.scale} of the "
                          f"degradation config {path}")
    return RealDegradation(config)


def _mixture_entry(item: str | dict, scale: int) -> Degrader:
    """One entry of a ``data.degradation`` list: ``path``, ``{path, scale}`` or ``{clean, scale}``."""
    if isinstance(item, dict) and "clean" in item:
        if sorted(item) != ["clean", "scale"] or item["clean"] not in CLEAN:
            raise ConfigError(f"data.degradation entry {item!r}: a clean entry is {{clean: "
                              f"{'|'.join(CLEAN)}, scale: N}}")
        if not isinstance(item["scale"], int) or item["scale"] < 1 or scale % item["scale"]:
            raise ConfigError(f"data.degradation entry {item!r}: scale must be an integer that "
                              f"divides data.scale {scale}")
        return CLEAN[item["clean"]](item["scale"])
    if isinstance(item, dict):
        unknown = sorted(set(item) - {"path", "scale"})
        if unknown or "path" not in item:
            raise ConfigError(f"data.degradation entry {item!r}: expected keys path (or clean) "
                              f"and optionally scale (unknown: {unknown})")
        config = load_degradation_config(item["path"])
        if "scale" in item:
            if not isinstance(item["scale"], int) or item["scale"] < 1:
                raise ConfigError(f"data.degradation entry {item!r}: scale must be an integer "
                                  ">= 1")
            config = dataclasses.replace(config, scale=item["scale"])
    else:
        config = load_degradation_config(item)
    if scale % config.scale:
        raise ConfigError(f"data.degradation entry {item!r} has scale {config.scale}, which "
                          f"does not divide data.scale {scale}")
    return RealDegradation(config)


def _cover(video: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Up-scale ``(c, f, h, w)`` just enough to cover a ``height x width`` crop."""
    _, _, h, w = video.shape
    factor = max(height / h, width / w)
    if factor <= 1:
        return video
    size = (max(height, math.ceil(h * factor)), max(width, math.ceil(w * factor)))
    frames = F.interpolate(rearrange(video, "c f h w -> f c h w"), size=size, mode="bicubic",
                           antialias=True)
    return rearrange(frames.clamp(0, 1), "f c h w -> c f h w")


class ClipDataset(Dataset):
    """Map-style dataset over :class:`SampleKey`: decode, crop, flip, degrade."""

    def __init__(
        self,
        entries: list[MediaEntry | Pair],  # pairs bring their own LQ
        seed: int,
        degrader: Degrader | None,
        condition_resize: ConditionResize = "bicubic_antialias",  # the trained DiT's
        still_motion: int = 0,  # px per frame: stills serve multi-frame clips as pans
    ) -> None:
        self.entries, self.seed, self.degrader = entries, seed, degrader
        self.condition_resize = condition_resize
        self.still_motion = still_motion
        self.sources = SourceCache()  # per process: each data worker fills its own
        self._eligible: dict[int, list[MediaEntry]] = {}

    def eligible(self, frames: int) -> list[MediaEntry]:
        """Entries with at least ``frames`` frames (every entry serves single images; stills
        serve any length when ``still_motion`` is set)."""
        if frames not in self._eligible:
            found = [e for e in self.entries if e.frames >= frames or self._pans(e, frames)]
            if not found:
                longest = max(e.frames for e in self.entries)
                raise ConfigError(
                    f"data.phases asks for {frames}-frame clips; the longest video has {longest}"
                )
            self._eligible[frames] = found
        return self._eligible[frames]

    def __getitem__(self, key: SampleKey) -> dict:
        g = rng.generator(self.seed, "data", key.step, key.micro, key.index)
        options = self.eligible(key.frames)
        entry = options[int(torch.randint(len(options), (), generator=g))]
        if self._pans(entry, key.frames):
            clip = self._pan(entry, key, g)
        else:
            start = int(torch.randint(entry.frames - key.frames + 1, (), generator=g))
            if isinstance(entry, Pair):  # real LQ, cropped and flipped with its HQ
                clip = torch.cat(entry.read(start, key.frames, self.sources,
                                            self.condition_resize))  # (2c, f, h, w)
            else:
                clip = rearrange(read_clip(entry, start, key.frames, self.sources),
                                 "f h w c -> c f h w")
            clip = _cover(clip, key.height, key.width)
            top = int(torch.randint(clip.shape[2] - key.height + 1, (), generator=g))
            left = int(torch.randint(clip.shape[3] - key.width + 1, (), generator=g))
            clip = clip[:, :, top:top + key.height, left:left + key.width]
        if bool(torch.rand((), generator=g) < 0.5):
            clip = clip.flip(-1)
        lq = None
        if isinstance(entry, Pair):
            clip, lq = clip[:3], clip[3:] * 2 - 1
        elif self.degrader is not None:
            small = self.degrader(clip, g)
            # The condition as restore makes it for this DiT (``condition_resize``).
            frames = upscale_lq(rearrange(small, "c f h w -> f c h w"), (key.height, key.width),
                                self.condition_resize)
            lq = rearrange(frames, "f c h w -> c f h w") * 2 - 1
        text = load_text_embedding(entry.text) if entry.text else None
        return dict(hq=clip * 2 - 1, lq=lq, text=text, key=key)

    def _pans(self, entry: MediaEntry | Pair, frames: int) -> bool:
        """Whether this clip is a pan over a still (``still_motion``)."""
        return (self.still_motion > 0 and frames > 1 and entry.frames == 1
                and not isinstance(entry, Pair))

    def _pan(self, entry: MediaEntry, key: SampleKey, g: torch.Generator) -> torch.Tensor:
        """``(c, f, h, w)``: a crop window moving over a still at a per-clip integer velocity."""
        image = rearrange(read_clip(entry, 0, 1, self.sources), "1 h w c -> c 1 h w")
        velocity = torch.randint(-self.still_motion, self.still_motion + 1, (2,), generator=g)
        vy, vx = (int(v) for v in velocity)
        travel = key.frames - 1
        image = _cover(image, key.height + travel * abs(vy), key.width + travel * abs(vx))
        top = int(torch.randint(image.shape[2] - key.height - travel * abs(vy) + 1, (),
                                generator=g)) + max(0, -vy) * travel
        left = int(torch.randint(image.shape[3] - key.width - travel * abs(vx) + 1, (),
                                 generator=g)) + max(0, -vx) * travel
        return torch.cat([image[:, :, top + f * vy:top + f * vy + key.height,
                                left + f * vx:left + f * vx + key.width]
                          for f in range(key.frames)], dim=1)

    @staticmethod
    def collate(samples: list[dict]) -> PixelBatch:
        """Stack same-shape samples into a :class:`PixelBatch`."""
        lqs = [s["lq"] for s in samples]
        return PixelBatch(
            hq=torch.stack([s["hq"] for s in samples]),
            lq=None if lqs[0] is None else torch.stack(lqs),
            text=[s["text"] for s in samples],
            keys=[s["key"] for s in samples],
        )




def crop_multiple(stage_multiple: int, scale: int) -> int:
    """Crop sizes: the stage's multiple (latent cell x DiT patch) and even LQ sizes (2 scale)."""
    return math.lcm(stage_multiple, 2 * scale)


def build_clip_dataset(
    cfg: TrainConfig, frame_step: int, needs_lq: bool,
    condition_resize: ConditionResize = "bicubic_antialias",
) -> ClipDataset:
    """Index ``data.paired``, ``data.roots`` / ``data.manifest``; check the clip lengths. LQ
    conditions are up-scaled by ``condition_resize``, the trained DiT's."""
    data = cfg.data
    for i, phase in enumerate(data.phases):
        bad = [f for f in phase.frames if (f - 1) % frame_step]
        if bad:
            raise ConfigError(f"data.phases[{i}].frames: {bad} are not 1 + {frame_step}k "
                              "(the latent's temporal factor)")
    degrader = build_degrader(data.degradation, data.scale) if needs_lq else None
    entries: list[MediaEntry | Pair] = [p for f in data.paired for p in scan_pairs(f, data.sequences)]
    if data.roots or data.manifest is not None:
        entries += build_index(data.roots, data.manifest)
    return ClipDataset(entries, cfg.seed, degrader, condition_resize, data.still_motion)


def make_loader(dataset: Dataset, sampler: Iterable[list[SampleKey]], workers: int) -> DataLoader:
    """A DataLoader over whole micro-batches (the sampler yields lists of keys)."""
    return DataLoader(
        dataset,
        batch_sampler=sampler,
        num_workers=workers,
        collate_fn=dataset.collate,
        persistent_workers=False,
        prefetch_factor=2 if workers else None,
    )
