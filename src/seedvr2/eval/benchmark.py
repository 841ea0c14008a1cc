"""``seedvr2 eval``: restore benchmark clips with models and baselines, score every output.

Paired mode (default): each input is ground truth; its LQ is made by :mod:`.protocol`, every
method up-scales the LQ back to the GT size, and full- and no-reference metrics are computed on
the 8-bit quantised outputs. ``reference=False``: each input is a real low-quality clip, methods
up-scale it by ``scale`` and only no-reference metrics are computed.

A metric that cannot run here (LPIPS/DISTS weights absent, pyiqa missing) is reported as
unavailable with the reason instead of failing the benchmark.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from einops import rearrange

from seedvr2.errors import CheckpointError, InputError
from seedvr2.media import IMAGE_EXTENSIONS, VIDEO_EXTENSIONS, read_frames
from seedvr2.pipeline import Restorer

from .baselines import BASELINES, Upscaler
from .metrics import get_metric
from .protocol import clip_seed, crop_to_multiple, synthesize_lq

FULL_REFERENCE_METRICS = ("psnr", "ssim", "lpips", "dists", "niqe", "warping_error")
NO_REFERENCE_METRICS = ("niqe", "warping_error")
GROUND_TRUTH = "ground_truth"  # the row of no-reference metrics of the GT itself


@dataclass(frozen=True)
class BenchmarkSettings:
    """What to evaluate and how (see the module docstring)."""

    scale: int = 4
    degradation: str | None = None  # degradation YAML; None: bicubic down-scaling
    seed: int = 0
    max_frames: int | None = None  # frames read per clip (None: all)
    reference: bool = True  # False: inputs are real LQ clips (no-reference metrics only)
    metrics: tuple[str, ...] | None = None  # None: FULL_/NO_REFERENCE_METRICS
    baselines: tuple[str, ...] = tuple(BASELINES)

    def __post_init__(self) -> None:
        if self.scale not in (2, 4):
            raise InputError(f"scale must be 2 or 4, got {self.scale}")
        if self.max_frames is not None and self.max_frames < 1:
            raise InputError(f"max_frames must be >= 1, got {self.max_frames}")
        unknown = sorted(set(self.baselines) - set(BASELINES))
        if unknown:
            raise InputError(f"unknown baseline {unknown[0]!r}; choose from {sorted(BASELINES)}")
        for name in self.chosen_metrics:
            if get_metric(name).needs_reference and not self.reference:
                raise InputError(f"metric {name!r} needs ground truth; drop it with --no-reference")

    @property
    def chosen_metrics(self) -> tuple[str, ...]:
        if self.metrics is not None:
            return self.metrics
        return FULL_REFERENCE_METRICS if self.reference else NO_REFERENCE_METRICS


@dataclass
class BenchmarkResult:
    """Scores per (method, clip), plus why some metrics could not be computed."""

    settings: BenchmarkSettings
    methods: list[str]
    metrics: list[str]
    clips: list[str] = field(default_factory=list)
    scores: dict[tuple[str, str], dict[str, float]] = field(default_factory=dict)
    seconds: dict[tuple[str, str], float] = field(default_factory=dict)  # restoration wall time
    notes: dict[str, str] = field(default_factory=dict)  # metric -> why it is missing

    def mean(self, method: str, metric: str) -> float:
        """Mean over clips (NaN when no clip has the value)."""
        values = [self.scores[(method, c)].get(metric, math.nan) for c in self.clips
                  if (method, c) in self.scores]
        values = [v for v in values if not math.isnan(v)]
        return sum(values) / len(values) if values else math.nan


def collect_inputs(paths: Sequence[str | Path]) -> list[Path]:
    """Media files given directly or found directly inside given folders, sorted by name."""
    media = IMAGE_EXTENSIONS | VIDEO_EXTENSIONS
    found: list[Path] = []
    for path in map(Path, paths):
        if path.is_dir():
            found += sorted(p for p in path.iterdir() if p.suffix.lower() in media)
        elif path.is_file():
            found.append(path)
        else:
            raise InputError(f"{path} does not exist")
    if not found:
        raise InputError(f"no images or videos in {[str(p) for p in paths]}")
    return found


def model_upscaler(restorer: Restorer) -> Upscaler:
    """A :class:`Restorer` as an up-scaler of (f, h, w, 3) frames."""

    def upscale(lq: np.ndarray, scale: int) -> np.ndarray:
        out = restorer.with_options(scale=scale, resolution=None).restore(lq)
        expected = (lq.shape[1] * scale, lq.shape[2] * scale)
        if out.shape[1:3] != expected:
            raise InputError(f"the model returned {out.shape[1:3]}, expected {expected}")
        return out

    return upscale


def eight_bit_frames(frames: np.ndarray) -> torch.Tensor:  # (f, h, w, 3) -> (f, 3, h, w) 8-bit levels
    """Frames as scored: clipped to [0, 1] and rounded to 8-bit levels."""
    x = torch.from_numpy(np.ascontiguousarray(frames))
    return rearrange(torch.round(x.clamp(0, 1) * 255) / 255, "f h w c -> f c h w")


class _Scorer:
    """Computes the chosen metrics, remembering the ones that cannot run here."""

    def __init__(self, metrics: list[str], notes: dict[str, str]) -> None:
        self.metrics, self.notes = metrics, notes

    def score(self, output: np.ndarray, gt: np.ndarray | None) -> dict[str, float]:
        out, ref = eight_bit_frames(output), None if gt is None else eight_bit_frames(gt)
        values = {}
        for name in self.metrics:
            metric = get_metric(name)
            if name in self.notes and self.notes[name].startswith("unavailable"):
                continue
            if metric.needs_reference and ref is None:
                continue
            if name == "warping_error" and out.shape[0] < 2:
                self.notes.setdefault(name, "clips only (images have one frame)")
                continue
            try:
                values[name] = metric.fn(out, ref) if metric.needs_reference else metric.fn(out)
            except CheckpointError as err:  # weights or packages absent: skip this metric
                self.notes[name] = f"unavailable: {err}"
            except InputError as err:  # e.g. NIQE on frames under 96 px
                self.notes.setdefault(name, f"skipped for some inputs: {err}")
        return values


def run_benchmark(
    inputs: Sequence[str | Path],
    models: dict[str, Restorer],
    settings: BenchmarkSettings,
    on_output: Callable[[str, dict[str, np.ndarray]], None] | None = None,
    log: Callable[[str], None] = lambda _: None,
) -> BenchmarkResult:
    """Evaluate ``models`` (name -> Restorer) and the baselines on ``inputs``.

    ``on_output(clip, frames)`` receives each clip's LQ, outputs and GT (for crop images).
    """
    methods: dict[str, Upscaler] = {name: BASELINES[name] for name in settings.baselines}
    for name, restorer in models.items():
        if name in methods:
            raise InputError(f"model name {name!r} clashes with a baseline")
        methods[name] = model_upscaler(restorer)
    metrics = list(settings.chosen_metrics)
    result = BenchmarkResult(settings, list(methods), metrics)
    scorer = _Scorer(metrics, result.notes)
    for path in collect_inputs(inputs):
        clip = path.name
        frames = read_frames(path, max_frames=settings.max_frames)[..., :3]  # (f, h, w, 3)
        if settings.reference:
            gt: np.ndarray | None = crop_to_multiple(frames, settings.scale)
            lq = synthesize_lq(gt, settings.scale, settings.degradation,
                               clip_seed(settings.seed, clip))
        else:
            gt, lq = None, frames
        result.clips.append(clip)
        outputs = {"input": lq}
        for name, upscale in methods.items():
            log(f"{clip}: {name}")
            start = time.perf_counter()
            outputs[name] = upscale(lq, settings.scale)
            result.seconds[(name, clip)] = time.perf_counter() - start
            result.scores[(name, clip)] = scorer.score(outputs[name], gt)
        if gt is not None:
            outputs[GROUND_TRUTH] = gt
            no_ref = [m for m in metrics if not get_metric(m).needs_reference]
            result.scores[(GROUND_TRUTH, clip)] = _Scorer(no_ref, result.notes).score(gt, None)
        if on_output is not None:
            on_output(clip, outputs)
    if settings.reference:
        result.methods.append(GROUND_TRUTH)
    return result
