"""Degradation settings: typed, validated dataclasses loaded from YAML (spec §3).

The YAML file (``configs/degradations/*.yaml``) is the one place the values live: every field is
required, unknown keys are errors naming the key, and nothing is evaluated. A range is written
``[low, high]``; ranges that drift per frame (RealBasicVSR) take ``[low, high, step]``.
"""

from __future__ import annotations

import math
import types
import typing
from collections.abc import Mapping
from dataclasses import MISSING, dataclass, fields, is_dataclass
from pathlib import Path
from typing import Any

import av
import yaml

from seedvr2.errors import ConfigError

KERNEL_TYPES = (
    "iso", "aniso", "generalized_iso", "generalized_aniso", "plateau_iso", "plateau_aniso", "sinc",
)
INTERPOLATIONS = ("area", "bilinear", "bicubic")
RESIZE_MODES = ("up", "down", "keep")
CRF_CODECS = ("libx264", "libx265")  # constant rate factor; other encoders get a fixed quantiser


def _check(ok: bool, message: str) -> None:
    if not ok:
        raise ConfigError(message)


def _check_prob(value: float, name: str) -> None:
    _check(0.0 <= value <= 1.0, f"{name} must be a probability in [0, 1], got {value}")


def _check_distribution(probs: Mapping[str, float], valid: tuple[str, ...], name: str) -> None:
    unknown = sorted(set(probs) - set(valid))
    _check(not unknown, f"{name}: unknown names {unknown}; valid names are {list(valid)}")
    _check(all(p >= 0 for p in probs.values()), f"{name}: probabilities must be >= 0")
    total = sum(probs.values())
    _check(abs(total - 1.0) < 1e-3, f"{name}: probabilities sum to {total:.4f}, not 1")


def _check_pair(pair: tuple[float, float], name: str, low: float, high: float) -> None:
    _check(low <= pair[0] <= pair[1] <= high,
           f"{name} must satisfy {low} <= low <= high <= {high}, got {list(pair)}")


def _check_kernel_sizes(sizes: tuple[int, ...]) -> None:
    _check(bool(sizes) and all(k >= 3 and k % 2 for k in sizes),
           f"kernel_sizes must be odd and >= 3, got {list(sizes)}")


def _check_cutoff(cutoff: Range, name: str) -> None:
    # π is written rounded in YAML (RealBasicVSR: 3.1416), hence the tolerance
    _check(cutoff.low > 0 and cutoff.high <= math.pi + 1e-4,
           f"{name} must lie in (0, π], got [{cutoff.low}, {cutoff.high}]")


def _check_choices(chosen: tuple[str, ...], valid: tuple[str, ...], name: str) -> None:
    unknown = sorted(set(chosen) - set(valid))
    _check(bool(chosen) and not unknown,
           f"{name} must be a non-empty subset of {list(valid)}, got {list(chosen)}")


@dataclass(frozen=True)
class Range:
    """Uniform range ``[low, high]``; ``drift`` is the per-frame random-walk step (0: fixed)."""

    low: float
    high: float
    drift: float = 0.0

    def __post_init__(self) -> None:
        _check(self.low <= self.high, f"range low {self.low} exceeds high {self.high}")
        _check(self.drift >= 0, f"range drift must be >= 0, got {self.drift}")


@dataclass(frozen=True)
class BlurConfig:
    """Random blur kernel (Real-ESRGAN's mixed kernels), drawn once per clip."""

    prob: float  # a clip is blurred with this probability
    kernel_sizes: tuple[int, ...]  # odd sizes, uniform
    kernel_probs: dict[str, float]  # kernel type -> probability (KERNEL_TYPES)
    sigma: Range  # σx, σy of the Gaussian-family kernels, pixels
    rotation: Range  # radians
    beta_generalized: Range  # shape β of the generalized Gaussian
    beta_plateau: Range  # shape β of the plateau kernel
    sinc_cutoff_small: Range  # sinc ω (radians/pixel) for sizes < 13 (low ω needs wide kernels)
    sinc_cutoff_large: Range  # sinc ω for sizes >= 13

    def __post_init__(self) -> None:
        _check_prob(self.prob, "prob")
        _check_kernel_sizes(self.kernel_sizes)
        _check_distribution(self.kernel_probs, KERNEL_TYPES, "kernel_probs")
        _check(self.sigma.low > 0, f"sigma must be > 0, got {self.sigma.low}")
        _check(self.beta_generalized.low > 0 and self.beta_plateau.low > 0, "betas must be > 0")
        _check_cutoff(self.sinc_cutoff_small, "sinc_cutoff_small")
        _check_cutoff(self.sinc_cutoff_large, "sinc_cutoff_large")


@dataclass(frozen=True)
class ResizeConfig:
    """Random up/down-scaling relative to the current size, to even sizes (fixed per clip)."""

    mode_probs: dict[str, float]  # "up" / "down" / "keep" -> probability
    scale: tuple[float, float]  # up: U(1, high), down: U(low, 1)
    interpolations: tuple[str, ...]  # uniform over these (INTERPOLATIONS)

    def __post_init__(self) -> None:
        _check_distribution(self.mode_probs, RESIZE_MODES, "mode_probs")
        _check(0 < self.scale[0] <= 1 <= self.scale[1],
               f"scale must satisfy 0 < low <= 1 <= high, got {list(self.scale)}")
        _check_choices(self.interpolations, INTERPOLATIONS, "interpolations")


@dataclass(frozen=True)
class NoiseConfig:
    """Additive Gaussian or Poisson noise; a fresh noise field per frame."""

    prob: float  # a clip gets noise with this probability
    gaussian_prob: float  # Gaussian, else Poisson
    gaussian_sigma: Range  # std in 8-bit levels (divided by 255)
    poisson_scale: Range  # multiplier of the shot noise
    gray_prob: float  # one noise field shared by the three channels

    def __post_init__(self) -> None:
        for name in ("prob", "gaussian_prob", "gray_prob"):
            _check_prob(getattr(self, name), name)
        _check(self.gaussian_sigma.low >= 0 and self.poisson_scale.low >= 0,
               "noise levels must be >= 0")


@dataclass(frozen=True)
class JPEGConfig:
    """JPEG compression of every frame (IJG quality scale)."""

    prob: float
    quality: Range  # 1..100

    def __post_init__(self) -> None:
        _check_prob(self.prob, "prob")
        _check(self.quality.low >= 1 and self.quality.high <= 100,
               f"quality must lie in [1, 100], got [{self.quality.low}, {self.quality.high}]")


@dataclass(frozen=True)
class CodecConfig:
    """Video codec round trip of the whole clip (RealBasicVSR), codec and rate fixed per clip."""

    prob: float
    codecs: tuple[str, ...]  # uniform; must be FFmpeg encoders available to PyAV
    crf: tuple[float, float]  # libx264 / libx265 constant rate factor, 0-51 (lower is better)
    qscale: tuple[float, float]  # other encoders (mpeg4): fixed quantiser, 2-31 (lower is better)
    fps: int  # frame rate written in the stream (x264/x265 rate control depends on it)

    def __post_init__(self) -> None:
        _check_prob(self.prob, "prob")
        _check(bool(self.codecs), "codecs must not be empty")
        missing = sorted(set(self.codecs) - av.codecs_available)
        _check(not missing, f"codecs {missing} are not available in this PyAV build")
        _check_pair(self.crf, "crf", 0, 51)
        _check_pair(self.qscale, "qscale", 1, 31)
        _check(self.fps > 0, f"fps must be > 0, got {self.fps}")


@dataclass(frozen=True)
class OrderConfig:
    """One order of the second-order model: blur -> resize -> noise -> JPEG -> codec."""

    blur: BlurConfig
    resize: ResizeConfig
    noise: NoiseConfig
    jpeg: JPEGConfig
    codec: CodecConfig | None  # None: no codec in this order


@dataclass(frozen=True)
class SincConfig:
    """The sinc (ringing) filter of the final step."""

    prob: float
    kernel_sizes: tuple[int, ...]
    cutoff: Range  # ω, radians per pixel

    def __post_init__(self) -> None:
        _check_prob(self.prob, "prob")
        _check_kernel_sizes(self.kernel_sizes)
        _check_cutoff(self.cutoff, "cutoff")


@dataclass(frozen=True)
class FinalConfig:
    """Last step: {resize to HQ/scale + sinc} and {codec} in random order (RealBasicVSR)."""

    interpolations: tuple[str, ...]  # of the resize to the LQ size
    sinc: SincConfig
    codec: CodecConfig | None
    codec_first_prob: float  # probability that the codec runs before the resize

    def __post_init__(self) -> None:
        _check_choices(self.interpolations, INTERPOLATIONS, "interpolations")
        _check_prob(self.codec_first_prob, "codec_first_prob")


@dataclass(frozen=True)
class DegradationConfig:
    """Second-order real-world degradation of video clips (Real-ESRGAN / RealBasicVSR)."""

    scale: int  # LQ = HQ / scale (4 in SeedVR2's benchmarks)
    drift: bool  # per-frame parameter drift (RealBasicVSR); False: every parameter fixed per clip
    first: OrderConfig
    second: OrderConfig
    final: FinalConfig

    def __post_init__(self) -> None:
        _check(self.scale >= 1, f"scale must be >= 1, got {self.scale}")


def _convert(tp: Any, value: Any, key: str) -> Any:
    """``value`` from YAML as type ``tp``, or a ConfigError naming ``key``."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):  # X | None
        if value is None:
            return None
        return _convert(next(a for a in args if a is not type(None)), value, key)
    if tp is Range:
        _check(isinstance(value, list) and len(value) in (2, 3),
               f"{key} must be [low, high] or [low, high, drift], got {value!r}")
        return _build(Range, dict(zip(("low", "high", "drift"), value)), key)
    if is_dataclass(tp):
        return _build(tp, value, key)
    if origin is tuple:
        _check(isinstance(value, list), f"{key} must be a list, got {value!r}")
        item_types = args[:-1] * len(value) if args[-1] is Ellipsis else args
        _check(len(item_types) == len(value), f"{key} must have {len(args)} items, got {value!r}")
        return tuple(_convert(t, v, f"{key}[{i}]") for i, (t, v) in
                     enumerate(zip(item_types, value)))
    if origin is dict:
        _check(isinstance(value, dict), f"{key} must be a mapping, got {value!r}")
        return {str(k): _convert(args[1], v, f"{key}.{k}") for k, v in value.items()}
    if tp is float:
        _check(isinstance(value, (int, float)) and not isinstance(value, bool),
               f"{key} must be a number, got {value!r}")
        return float(value)
    _check(isinstance(value, tp) and (tp is bool or not isinstance(value, bool)),
           f"{key} must be {tp.__name__}, got {value!r}")
    return value


def _build(cls: type, data: Any, key: str) -> Any:
    """Dataclass ``cls`` from a YAML mapping: fields without a default are required, no unknown
    keys; errors raised by the dataclass's own checks get the dotted key as prefix."""
    where = key or "degradation config"
    _check(isinstance(data, dict), f"{where} must be a mapping, got {data!r}")
    prefix = f"{key}." if key else ""
    names = [f.name for f in fields(cls)]
    for name in data:
        _check(name in names, f"unknown key {prefix}{name} (valid keys: {names})")
    for f in fields(cls):
        _check(f.name in data or f.default is not MISSING, f"missing key {prefix}{f.name}")
    hints = typing.get_type_hints(cls)
    values = {name: _convert(hints[name], data[name], prefix + name) for name in data}
    try:
        return cls(**values)
    except ConfigError as error:
        raise ConfigError(f"{where}: {error}") from None


def parse_degradation_config(data: Mapping[str, Any]) -> DegradationConfig:
    """A :class:`DegradationConfig` from a (YAML-loaded) mapping, validated."""
    return _build(DegradationConfig, dict(data), "")


def load_degradation_config(path: str | Path) -> DegradationConfig:
    """Read and validate a degradation YAML (``configs/degradations/realesrgan_video.yaml``)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"degradation config {path} does not exist")
    with path.open() as file:
        return parse_degradation_config(yaml.safe_load(file) or {})
