"""Degradation synthesis (spec §3): config validation, kernels, JPEG, codecs, the full pipeline."""

import copy
import io
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from seedvr2.errors import ConfigError, InputError
from seedvr2.train.degrade import (
    DegradationConfig,
    Range,
    degrade_video,
    gaussian_kernels,
    jpeg_compress,
    load_degradation_config,
    parse_degradation_config,
    sinc_kernels,
    video_compress,
)
from seedvr2.train.degrade.sampling import walk

CONFIG = Path(__file__).resolve().parents[1] / "configs" / "degradations" / "realesrgan_video.yaml"


@pytest.fixture(scope="module")
def raw() -> dict:
    return yaml.safe_load(CONFIG.read_text())


@pytest.fixture(scope="module")
def config(raw) -> DegradationConfig:
    return parse_degradation_config(raw)


def _clip(frames: int = 4, size: int = 64, seed: int = 0) -> torch.Tensor:
    """A smooth random clip with a moving pattern, in [0, 1]."""
    g = torch.Generator().manual_seed(seed)
    base = torch.nn.functional.interpolate(torch.rand(1, 3, 6, 6, generator=g), size=size + 8,
                                           mode="bicubic").clamp(0, 1)[0]
    return torch.stack([base[:, i:i + size, 2 * i:2 * i + size] for i in range(frames)])


def _psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(10 * torch.log10(1 / (a.double() - b.double()).square().mean()))


# --- configuration ------------------------------------------------------------------------------


def test_shipped_config_loads(config):
    assert load_degradation_config(CONFIG) == config
    assert config.scale == 4 and config.second.codec is None
    assert config.first.blur.sigma == Range(0.2, 3.0, 0.02)


@pytest.mark.parametrize(
    ("path", "value", "message"),
    [
        (("first", "blur", "bogus"), 1.0, "unknown key first.blur.bogus"),
        (("final", "sinc", "cutoff"), [2.0, 1.0], "final.sinc.cutoff"),
        (("first", "jpeg", "quality"), "high", "first.jpeg.quality must be"),
        (("first", "blur", "kernel_probs", "box"), 0.0, "unknown names \\['box'\\]"),
        (("first", "codec", "codecs"), ["libnope"], "not available"),
        (("scale",), 2.5, "scale must be int"),
        (("drift",), 1, "drift must be bool"),
    ],
)
def test_config_errors_name_the_key(raw, path, value, message):
    bad = copy.deepcopy(raw)
    node = bad
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    with pytest.raises(ConfigError, match=message):
        parse_degradation_config(bad)


def test_config_missing_key_is_an_error(raw):
    bad = copy.deepcopy(raw)
    del bad["second"]["noise"]["gray_prob"]
    with pytest.raises(ConfigError, match="missing key second.noise.gray_prob"):
        parse_degradation_config(bad)


def test_missing_config_file_is_an_error(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_degradation_config(tmp_path / "none.yaml")


# --- random draws and kernels -------------------------------------------------------------------


def test_drift_walk_stays_in_range_and_moves_at_most_one_step_per_frame():
    values = walk(torch.Generator().manual_seed(0), Range(0.2, 3.0, 0.5), 200, drift=True)
    assert values.min() >= 0.2 and values.max() <= 3.0
    assert values.diff().abs().max() <= 0.5 + 1e-12
    assert values.unique().numel() > 1
    fixed = walk(torch.Generator().manual_seed(0), Range(0.2, 3.0, 0.5), 5, drift=False)
    assert fixed.unique().numel() == 1


def test_isotropic_gaussian_kernel_matches_the_closed_form():
    sigma = 1.3
    kernel = gaussian_kernels(7, torch.tensor([sigma]), torch.tensor([sigma]),
                              torch.tensor([0.7]))[0]  # rotation is irrelevant when isotropic
    r = torch.arange(7, dtype=torch.float64) - 3
    expected = torch.exp(-(r[:, None] ** 2 + r[None, :] ** 2) / (2 * sigma**2))
    assert torch.allclose(kernel.double(), expected / expected.sum(), atol=1e-6)


def test_anisotropic_kernel_rotates_with_the_angle():
    wide = gaussian_kernels(9, torch.tensor([3.0]), torch.tensor([0.5]), torch.tensor([0.0]))[0]
    tall = gaussian_kernels(9, torch.tensor([3.0]), torch.tensor([0.5]),
                            torch.tensor([math.pi / 2]))[0]
    assert torch.allclose(wide, tall.T, atol=1e-6)
    assert wide[4].sum() > wide[:, 4].sum()  # elongated along x


@pytest.mark.parametrize("profile", ["generalized", "plateau"])
def test_shaped_kernels_are_normalised_and_peak_at_the_centre(profile):
    kernel = gaussian_kernels(11, torch.tensor([1.5, 2.0]), torch.tensor([1.0, 2.0]),
                              torch.tensor([0.3, 0.0]), torch.tensor([1.5, 2.0]), profile)
    assert torch.allclose(kernel.sum(dim=(1, 2)), torch.ones(2))
    assert (kernel.flatten(1).argmax(1) == 60).all()


def test_sinc_kernel_is_normalised_circular_and_wider_for_lower_cutoff():
    kernels = sinc_kernels(13, torch.tensor([math.pi / 4, math.pi / 2]))
    assert torch.allclose(kernels.sum(dim=(1, 2)), torch.ones(2))
    assert torch.allclose(kernels[0], kernels[0].T, atol=1e-7)
    assert kernels[0, 6, 6] < kernels[1, 6, 6]  # lower cutoff spreads the mass


# --- JPEG and codecs ----------------------------------------------------------------------------


def test_jpeg_matches_libjpeg_through_pillow():
    image_module = pytest.importorskip("PIL.Image")
    clip = _clip(frames=1, size=48)
    pixels = (clip[0].permute(1, 2, 0) * 255).round().byte().numpy()
    buffer = io.BytesIO()
    image_module.fromarray(pixels).save(buffer, format="JPEG", quality=40)
    reference = torch.from_numpy(np.array(image_module.open(buffer))).permute(2, 0, 1) / 255
    ours = jpeg_compress(clip, torch.tensor([40.0]))[0]
    assert _psnr(ours, reference) > 38  # rounding differences only (IDCT, colour conversion)


def test_jpeg_quality_orders_fidelity_per_frame():
    clip = _clip(frames=2, size=40)
    out = jpeg_compress(clip, torch.tensor([20.0, 95.0]))
    assert out.shape == clip.shape
    assert _psnr(out[0], clip[0]) < _psnr(out[1], clip[1])


@pytest.mark.parametrize(("codec", "quality"), [("libx264", 30.0), ("mpeg4", 12.0)])
def test_codec_round_trip_changes_the_signal_keeps_the_shape_and_is_reproducible(codec, quality):
    clip = _clip(frames=5, size=30)[:, :, :, :22]  # 30x22 is padded to codec-friendly sizes
    out = video_compress(clip, codec, quality)
    assert out.shape == clip.shape
    assert 20 < _psnr(out, clip) < 45
    assert torch.equal(out, video_compress(clip, codec, quality))


# --- the pipeline -------------------------------------------------------------------------------


def test_degradation_is_deterministic_given_a_seed(config):
    clip = _clip()
    a = degrade_video(clip, config, torch.Generator().manual_seed(3))
    b = degrade_video(clip, config, torch.Generator().manual_seed(3))
    c = degrade_video(clip, config, torch.Generator().manual_seed(4))
    assert torch.equal(a, b) and not torch.equal(a, c)


@pytest.mark.parametrize("seed", range(3))
def test_output_is_lq_size_in_range_and_on_8_bit_levels(config, seed):
    clip = _clip()
    lq = degrade_video(clip, config, torch.Generator().manual_seed(seed))
    assert lq.shape == (4, 3, 16, 16) and lq.dtype == clip.dtype
    assert lq.min() >= 0 and lq.max() <= 1
    assert torch.equal(lq, torch.round(lq * 255) / 255)


def test_scale_two_and_resize_back_to_the_hq_size(config):
    import dataclasses

    clip = _clip()
    two = dataclasses.replace(config, scale=2)
    assert degrade_video(clip, two, torch.Generator().manual_seed(0)).shape == (4, 3, 32, 32)
    back = degrade_video(clip, config, torch.Generator().manual_seed(0), resize_back=True)
    assert back.shape == clip.shape and back.min() >= 0 and back.max() <= 1


def test_identical_frames_stay_identical_without_noise_codecs_and_drift(raw):
    quiet = copy.deepcopy(raw)
    quiet["drift"] = False
    for order in ("first", "second"):
        quiet[order]["noise"]["prob"] = 0.0
        quiet[order]["codec"] = None
    quiet["final"]["codec"] = None
    config = parse_degradation_config(quiet)
    clip = _clip(frames=1).repeat(5, 1, 1, 1)
    for seed in range(4):
        lq = degrade_video(clip, config, torch.Generator().manual_seed(seed))
        assert all(torch.equal(lq[0], frame) for frame in lq[1:]), seed


def test_bad_clips_are_rejected(config):
    with pytest.raises(InputError, match="divisible"):
        degrade_video(torch.rand(2, 3, 30, 32), config, torch.Generator())
    with pytest.raises(InputError, match="frames, 3, height, width"):
        degrade_video(torch.rand(3, 32, 32), config, torch.Generator())


# --- statistics of each degradation, measured on the output ------------------------------------


def _only(raw: dict, **changes) -> DegradationConfig:
    """The shipped config at scale 1 with every step off, then ``changes`` applied.

    ``changes`` maps a dotted path (``first__noise__prob``) to a value; the result degrades
    through the whole pipeline (random draws, units, final quantisation) with one step active.
    """
    quiet = copy.deepcopy(raw)
    quiet.update(scale=1, drift=False)
    for order in ("first", "second"):
        quiet[order]["blur"]["prob"] = 0.0
        quiet[order]["resize"]["mode_probs"] = {"up": 0.0, "down": 0.0, "keep": 1.0}
        quiet[order]["noise"]["prob"] = 0.0
        quiet[order]["jpeg"]["prob"] = 0.0
        quiet[order]["codec"] = None
    quiet["final"]["sinc"]["prob"] = 0.0
    quiet["final"]["codec"] = None
    for path, value in changes.items():
        node = quiet
        *parents, leaf = path.split("__")
        for key in parents:
            node = node[key]
        node[leaf] = value
    return parse_degradation_config(quiet)


def _grey(frames: int = 2, size: int = 64, level: float = 0.5) -> torch.Tensor:
    return torch.full((frames, 3, size, size), level)


def _noisy(raw: dict, seed: int, **noise) -> torch.Tensor:
    """Noise of the pipeline with only first-order noise on, on a mid-grey clip."""
    settings = {"first__noise__prob": 1.0, **{f"first__noise__{k}": v for k, v in noise.items()}}
    clip = _grey()
    return degrade_video(clip, _only(raw, **settings), torch.Generator().manual_seed(seed)) - clip


@pytest.mark.parametrize("sigma", [2.0, 15.0])
def test_gaussian_noise_sigma_is_in_8_bit_levels(raw, sigma):
    noise = _noisy(raw, 0, gaussian_prob=1.0, gray_prob=0.0, gaussian_sigma=[sigma, sigma])
    # the output is quantised: +1/12 level² of rounding noise
    assert float(noise.std() * 255) == pytest.approx(math.sqrt(sigma**2 + 1 / 12), rel=0.03)
    assert abs(float(noise.mean() * 255)) < 0.3


def test_gaussian_noise_sigma_stays_in_its_configured_range(raw):
    for seed in range(6):
        noise = _noisy(raw, seed, gaussian_prob=1.0, gray_prob=0.0, gaussian_sigma=[4.0, 9.0])
        assert 4.0 * 0.97 < float(noise.std() * 255) < 9.0 * 1.03, seed


def test_poisson_noise_has_the_shot_noise_variance_of_256_levels(raw):
    # Poisson(256 x) / 256 has variance x / 256; at x = 0.5 and scale s: std s sqrt(0.5 / 256)
    noise = _noisy(raw, 0, gaussian_prob=0.0, gray_prob=0.0, poisson_scale=[2.0, 2.0])
    assert float(noise.std()) == pytest.approx(2.0 * math.sqrt(0.5 / 256), rel=0.04)


@pytest.mark.parametrize("gaussian", [True, False])
def test_grey_noise_is_one_field_for_all_channels_and_colour_noise_is_not(raw, gaussian):
    kind = {"gaussian_prob": float(gaussian), "gaussian_sigma": [10.0, 10.0],
            "poisson_scale": [2.0, 2.0]}
    grey = _noisy(raw, 0, gray_prob=1.0, **kind)
    assert torch.equal(grey[:, 0], grey[:, 1]) and torch.equal(grey[:, 0], grey[:, 2])
    colour = _noisy(raw, 0, gray_prob=0.0, **kind).flatten(2)
    correlation = torch.corrcoef(colour.transpose(0, 1).flatten(1))
    assert correlation[0, 1].abs() < 0.05 and correlation[1, 2].abs() < 0.05


def _edge_width(raw: dict, seed: int, sigma: list[float]) -> float:
    """Std of the blurred edge's derivative (= the kernel's marginal std) through the pipeline."""
    config = _only(raw, first__blur__prob=1.0, first__blur__kernel_probs={"iso": 1.0},
                   first__blur__kernel_sizes=[21], first__blur__sigma=sigma)
    clip = torch.zeros(1, 3, 48, 48)
    clip[..., 24:] = 1.0  # a vertical edge between columns 23 and 24
    out = degrade_video(clip, config, torch.Generator().manual_seed(seed))
    derivative = out[0, 0, 24].double().diff()
    x = torch.arange(len(derivative), dtype=torch.float64)
    centre = (derivative * x).sum() / derivative.sum()
    return float(((derivative * (x - centre) ** 2).sum() / derivative.sum()).sqrt())


def test_blur_sigma_is_in_pixels_and_within_its_configured_range(raw):
    assert _edge_width(raw, 0, [2.0, 2.0]) == pytest.approx(2.0, rel=0.03)
    widths = [_edge_width(raw, seed, [1.0, 2.5]) for seed in range(8)]
    assert all(0.97 < w < 2.5 * 1.03 for w in widths), widths
    assert max(widths) - min(widths) > 0.5  # drawn from the range, not fixed


@pytest.mark.parametrize(("mode", "low", "high"), [("down", 0.5, 0.8), ("up", 1.0, 1.5)])
def test_random_resize_factor_stays_in_its_configured_range(raw, monkeypatch, mode, low, high):
    from seedvr2.train.degrade import pipeline

    sizes: list[int] = []
    resize = pipeline.resize

    def recording(clip, size, interpolation):
        out = resize(clip, size, interpolation)
        sizes.append(out.shape[-1])
        return out

    monkeypatch.setattr(pipeline, "resize", recording)
    probs = {"up": 0.0, "down": 0.0, "keep": 0.0, mode: 1.0}
    scale = [low, 1.5] if mode == "down" else [0.5, high]  # the other side is never used
    config = _only(raw, first__resize__mode_probs=probs, first__resize__scale=scale)
    factors = []
    for seed in range(10):
        sizes.clear()
        degrade_video(_grey(1, 40), config, torch.Generator().manual_seed(seed))
        factors.append(sizes[0] / 40)  # the first resize is the random one; then back to 40
    assert all(low - 2 / 40 <= f <= high for f in factors), factors
    assert max(factors) - min(factors) > (high - low) / 3, factors


def _pipeline_psnr(raw: dict, **changes) -> float:
    clip = _clip(frames=3, size=48)
    out = degrade_video(clip, _only(raw, **changes), torch.Generator().manual_seed(0))
    return _psnr(out, clip)


def test_jpeg_quality_in_the_pipeline_orders_fidelity(raw):
    psnrs = [_pipeline_psnr(raw, first__jpeg__prob=1.0, first__jpeg__quality=[q, q])
             for q in (10, 40, 95)]
    assert psnrs[0] < psnrs[1] - 2 < psnrs[2] - 4, psnrs


@pytest.mark.parametrize(("codec", "key", "values"),
                         [("libx264", "crf", (40, 28, 12)), ("mpeg4", "qscale", (25, 10, 2))])
def test_codec_quality_in_the_pipeline_orders_fidelity(raw, codec, key, values):
    def codec_at(value: float) -> dict:
        return {"prob": 1.0, "codecs": [codec], "crf": [18, 35], "qscale": [2, 20], "fps": 25,
                key: [value, value]}

    psnrs = [_pipeline_psnr(raw, final__codec=codec_at(v), final__codec_first_prob=1.0)
             for v in values]
    assert psnrs[0] < psnrs[1] - 1 < psnrs[2] - 2, psnrs
