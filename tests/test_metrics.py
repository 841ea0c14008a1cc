"""Quality metrics: closed forms, independent references, the promised errors."""

from __future__ import annotations

import importlib.util
import math
import sys

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from seedvr2.errors import CheckpointError, InputError
from seedvr2.eval.metrics import (
    DISTS,
    LPIPS,
    METRICS,
    dists,
    get_metric,
    grid_ratio,
    lpips,
    niqe,
    psnr,
    pyiqa_metric,
    speck_fraction,
    ssim,
    warping_error,
)
from seedvr2.eval.metrics.niqe import PRISTINE_PARAMS, imresize


def gaussian_blur(image: torch.Tensor, sigma: float) -> torch.Tensor:
    """Blur ``(c, h, w)`` with a Gaussian of radius 3 sigma, replicated borders."""
    radius = math.ceil(3 * sigma)
    x = torch.arange(-radius, radius + 1, dtype=image.dtype)
    g = torch.exp(-(x**2) / (2 * sigma**2))
    kernel = (g[:, None] * g[None, :] / g.sum() ** 2).expand(image.shape[0], 1, -1, -1)
    padded = F.pad(image[None], (radius,) * 4, mode="replicate")
    return F.conv2d(padded, kernel, groups=image.shape[0])[0]


def smooth_texture(height: int, width: int, seed: int = 0) -> torch.Tensor:
    """Blurred RGB noise in [0, 1]: textured enough for flow and SSIM, smooth like an image."""
    noise = torch.rand(3, height, width, generator=torch.Generator().manual_seed(seed))
    blurred = gaussian_blur(noise, sigma=2.0)
    return (blurred - blurred.min()) / (blurred.max() - blurred.min())


def astronaut() -> torch.Tensor:
    data = pytest.importorskip("skimage.data")
    return torch.from_numpy(data.astronaut()).permute(2, 0, 1).double() / 255


# --- PSNR / SSIM -------------------------------------------------------------------------------


@pytest.mark.parametrize("offset", [0.01, 0.1])
def test_psnr_of_constant_offset_is_closed_form(offset: float) -> None:
    a = torch.full((2, 3, 16, 16), 0.4, dtype=torch.float64)
    assert psnr(a + offset, a) == pytest.approx(20 * math.log10(1 / offset), abs=1e-9)
    # On BT.601 luma the offset becomes (65.481 + 128.553 + 24.966) * offset on [0, 255].
    expected_y = 20 * math.log10(255 / (219.0 * offset))
    assert psnr(a + offset, a, y_channel=True) == pytest.approx(expected_y, abs=1e-9)


def test_psnr_of_identical_frames_is_inf() -> None:
    a = smooth_texture(16, 16)
    assert psnr(a, a) == math.inf


def test_psnr_crop_border_ignores_the_border() -> None:
    a = smooth_texture(20, 20)
    b = a.clone()
    b[:, :2] = 1 - b[:, :2]
    assert psnr(a, b, crop_border=2) == math.inf
    assert psnr(a, b) < 30


def test_clip_score_is_mean_of_frame_scores() -> None:
    a = torch.stack([smooth_texture(24, 24, seed) for seed in (1, 2)])
    b = (a + 0.05 * torch.randn(a.shape, generator=torch.Generator().manual_seed(3))).clamp(0, 1)
    for metric in (psnr, ssim):
        assert metric(a, b) == pytest.approx((metric(a[0], b[0]) + metric(a[1], b[1])) / 2)


def test_ssim_of_identical_frames_is_one() -> None:
    a = smooth_texture(32, 40)
    assert ssim(a, a) == pytest.approx(1.0, abs=1e-12)
    assert ssim(a, a, y_channel=True) == pytest.approx(1.0, abs=1e-12)


@pytest.mark.parametrize("y_channel", [False, True])
def test_ssim_matches_scikit_image(y_channel: bool) -> None:
    metrics = pytest.importorskip("skimage.metrics")
    a = smooth_texture(48, 64, seed=4).double()
    b = (
        a
        + 0.1
        * torch.randn(a.shape, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    ).clamp(0, 1)
    if y_channel:  # MATLAB rgb2ycbcr luma on [0, 255], written out independently
        to_255 = [16 + 65.481 * x[0] + 128.553 * x[1] + 24.966 * x[2] for x in (a, b)]
        channel_axis = None
    else:
        to_255 = [255 * x.permute(1, 2, 0) for x in (a, b)]
        channel_axis = -1
    expected = metrics.structural_similarity(
        to_255[0].numpy(),
        to_255[1].numpy(),
        gaussian_weights=True,
        sigma=1.5,
        use_sample_covariance=False,
        data_range=255,
        channel_axis=channel_axis,
    )
    assert ssim(a, b, y_channel=y_channel) == pytest.approx(expected, abs=1e-6)


@pytest.mark.parametrize(
    ("a", "b", "message"),
    [
        (torch.zeros(3, 8, 8), torch.zeros(3, 8, 9), "same shape"),
        (torch.zeros(3, 8, 8), torch.full((3, 8, 8), 255.0), r"\[0, 1\]"),
        (torch.zeros(3, 8, 8, dtype=torch.uint8), torch.zeros(3, 8, 8), "float tensor"),
        (torch.zeros(2, 8, 8), torch.zeros(2, 8, 8), "1 or 3 channels"),
    ],
)
def test_fidelity_rejects_bad_inputs(a: torch.Tensor, b: torch.Tensor, message: str) -> None:
    with pytest.raises(InputError, match=message):
        psnr(a, b)


def test_y_channel_needs_rgb_and_ssim_needs_11_pixels() -> None:
    grey = torch.zeros(1, 16, 16)
    with pytest.raises(InputError, match="RGB"):
        ssim(grey, grey, y_channel=True)
    small = torch.zeros(3, 16, 16)
    with pytest.raises(InputError, match="11x11"):
        ssim(small, small, crop_border=3)


# --- NIQE --------------------------------------------------------------------------------------


def test_imresize_half_samples_matlab_pixel_centres() -> None:
    # The cubic kernel reproduces linear functions: away from the mirrored edges, output pixel k
    # of a halved ramp x_j = j lies at input coordinate 2k + 0.5 (MATLAB's half-pixel convention).
    ramp = torch.arange(64, dtype=torch.float64).expand(8, 64)
    half = imresize(ramp, 0.5)
    assert half.shape == (4, 32)
    assert torch.allclose(half[:, 4:-4], 2 * torch.arange(4, 28, dtype=torch.float64) + 0.5)


def test_niqe_prefers_the_natural_photo_to_its_degraded_copy() -> None:
    photo = astronaut()
    noise = torch.randn(photo.shape, generator=torch.Generator().manual_seed(0), dtype=photo.dtype)
    degraded = (gaussian_blur(photo, sigma=3.0) + 0.1 * noise).clamp(0, 1)
    clean_score, degraded_score = niqe(photo), niqe(degraded)
    assert 2.0 < clean_score < 6.0
    assert degraded_score > clean_score + 3


# pyiqa 0.1.16 (``pyiqa.archs.niqe_arch.calculate_niqe``, color_space "yiq", run offline with the
# official pristine model of ``niqe_pris_params.npz``) on scikit-image 0.26 photos. pyiqa's Y
# weights (0.299, 0.587, 0.114) differ from MATLAB rgb2gray's (0.2989, 0.5870, 0.1140) in the
# fourth digit, which moves these scores by at most 0.003. Images with flat regions (``page``)
# differ by ~0.02 more: pyiqa keeps the filter's rounding noise there (see ``mscn``).
PYIQA_NIQE = {"astronaut": 3.0628, "camera": 3.0959, "coins": 3.6227, "chelsea": 2.5721,
              "gravel": 4.3337}


@pytest.mark.parametrize(("name", "expected"), PYIQA_NIQE.items())
def test_niqe_matches_pyiqa_on_scikit_image_photos(name: str, expected: float) -> None:
    data = pytest.importorskip("skimage.data")
    pixels = torch.from_numpy(getattr(data, name)()).double() / 255
    frame = pixels.permute(2, 0, 1) if pixels.ndim == 3 else pixels[None]
    assert niqe(frame) == pytest.approx(expected, abs=0.005)


def test_niqe_rejects_frames_smaller_than_a_block() -> None:
    with pytest.raises(InputError, match="96x96"):
        niqe(torch.zeros(3, 64, 128))


def test_niqe_rejects_a_missing_or_foreign_pristine_model(tmp_path) -> None:
    frame = smooth_texture(96, 192)
    with pytest.raises(CheckpointError, match="does not exist"):
        niqe(frame, params_path=tmp_path / "absent.npz")
    foreign = tmp_path / "foreign.npz"
    np.savez(foreign, something=np.zeros(3))
    with pytest.raises(CheckpointError, match="not a NIQE pristine model"):
        niqe(frame, params_path=foreign)


def test_niqe_reads_the_matlab_pristine_model_format(tmp_path) -> None:
    scipy_io = pytest.importorskip("scipy.io")
    with np.load(PRISTINE_PARAMS) as params:
        scipy_io.savemat(
            tmp_path / "modelparameters.mat",
            {"mu_prisparam": params["mu_pris_param"], "cov_prisparam": params["cov_pris_param"]},
        )
    frame = smooth_texture(96, 192)
    assert niqe(frame, params_path=tmp_path / "modelparameters.mat") == pytest.approx(niqe(frame))


# --- LPIPS / DISTS -----------------------------------------------------------------------------


@pytest.fixture
def no_default_weights(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    """Hide torch hub's checkpoint folder and any installed lpips / DISTS-pytorch package."""
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *args: None if name in ("lpips", "DISTS_pytorch") else find_spec(name, *args),
    )


@pytest.mark.usefixtures("no_default_weights")
def test_lpips_without_weights_names_the_files_needed() -> None:
    a = smooth_texture(32, 32)
    with pytest.raises(
        CheckpointError, match=r"alexnet-owt-7be5be79\.pth.*lpips/weights/v0\.1/alex\.pth"
    ):
        lpips(a, a)


@pytest.mark.usefixtures("no_default_weights")
def test_dists_without_weights_names_the_files_needed() -> None:
    a = smooth_texture(32, 32)
    with pytest.raises(CheckpointError, match=r"vgg16-397923af\.pth.*DISTS_pytorch/weights\.pt"):
        dists(a, a)


@pytest.mark.usefixtures("no_default_weights")
def test_perceptual_weights_file_must_exist(tmp_path) -> None:
    a = smooth_texture(32, 32)
    with pytest.raises(CheckpointError, match="does not exist"):
        lpips(a, a, weights_path=tmp_path / "missing.pth")


@pytest.mark.usefixtures("no_default_weights")
@pytest.mark.parametrize("net", ["alex", "vgg"])
def test_lpips_is_zero_for_identical_and_positive_for_different_frames(tmp_path, net: str) -> None:
    torch.manual_seed(0)
    path = tmp_path / f"lpips_{net}.pth"
    torch.save(LPIPS(net).state_dict(), path)  # random backbone, uniform heads
    a, b = smooth_texture(64, 64, seed=1), smooth_texture(64, 64, seed=2)
    assert lpips(a, a, path, net=net) == 0.0
    assert lpips(a, b, path, net=net) > 0.0


@pytest.mark.usefixtures("no_default_weights")
def test_lpips_reads_torchvision_and_lpips_package_layouts(tmp_path) -> None:
    torch.manual_seed(0)
    model = LPIPS("alex")
    for head in model.heads:
        torch.nn.init.uniform_(head.weight)
    state = model.state_dict()
    backbone = {k: v for k, v in state.items() if k.startswith("features.")}
    backbone["classifier.1.weight"] = torch.zeros(4, 4)  # torchvision's ImageNet head, unused
    heads = {f"lin{k[6]}.model.1.weight": v for k, v in state.items() if k.startswith("heads.")}
    torch.save(backbone, tmp_path / "alexnet.pth")
    torch.save(heads, tmp_path / "alex_heads.pth")
    torch.save(state, tmp_path / "full.pth")
    a, b = smooth_texture(64, 64, seed=1), smooth_texture(64, 64, seed=2)
    split = lpips(a, b, [tmp_path / "alexnet.pth", tmp_path / "alex_heads.pth"])
    assert split == pytest.approx(lpips(a, b, tmp_path / "full.pth"), rel=1e-6)


@pytest.mark.usefixtures("no_default_weights")
def test_lpips_rejects_weights_of_another_backbone(tmp_path) -> None:
    torch.save(LPIPS("vgg").state_dict(), tmp_path / "vgg.pth")
    a = smooth_texture(32, 32)
    with pytest.raises(CheckpointError, match="do not fit"):
        lpips(a, a, tmp_path / "vgg.pth", net="alex")


@pytest.mark.usefixtures("no_default_weights")
def test_dists_is_zero_for_identical_and_positive_for_different_frames(tmp_path) -> None:
    torch.manual_seed(0)
    model = DISTS()
    # The official module's layout: stage<k>.<torchvision index>, L2-pool filters, mean/std.
    official = {
        f"stage1.{k.split('.', 1)[1]}": v
        for k, v in model.state_dict().items()
        if k.startswith("features.")
    }
    official |= {
        "alpha": model.alpha,
        "beta": model.beta,
        "mean": torch.zeros(1, 3, 1, 1),
        "std": torch.ones(1, 3, 1, 1),
    }
    official["stage2.4.filter"] = torch.zeros(64, 1, 3, 3)
    torch.save(official, tmp_path / "dists.pth")
    a, b = smooth_texture(64, 64, seed=1), smooth_texture(64, 64, seed=2)
    assert dists(a, a, tmp_path / "dists.pth") == pytest.approx(0.0, abs=1e-6)
    assert dists(a, b, tmp_path / "dists.pth") > 1e-4


# --- warping error -----------------------------------------------------------------------------


def _shifted_clip(frames: int, step: int) -> torch.Tensor:
    canvas = smooth_texture(64, 64 + step * frames, seed=6)
    return torch.stack([canvas[:, :, step * t : step * t + 64] for t in range(frames)])


@pytest.mark.parametrize("flow", ["farneback", "dis"])
def test_warping_error_orders_static_shifted_and_noise_clips(flow: str) -> None:
    pytest.importorskip("cv2")
    static = smooth_texture(64, 64, seed=6).expand(4, 3, 64, 64)
    noise = torch.rand(4, 3, 64, 64, generator=torch.Generator().manual_seed(7))
    static_error = warping_error(static, flow)
    shifted_error = warping_error(_shifted_clip(4, 2), flow)
    noise_error = warping_error(noise, flow)
    assert static_error < 1e-5
    assert shifted_error < 2e-3
    assert noise_error > 0.1


def test_warping_error_needs_two_frames() -> None:
    with pytest.raises(InputError, match="at least 2 frames"):
        warping_error(torch.zeros(1, 3, 16, 16))


def test_warping_error_without_opencv_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "cv2", None)
    with pytest.raises(InputError, match="opencv-python-headless"):
        warping_error(torch.zeros(2, 3, 16, 16))


# --- pyiqa, registry ---------------------------------------------------------------------------


def test_pyiqa_metric_without_pyiqa_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pyiqa", None)
    with pytest.raises(InputError, match="pip install pyiqa"):
        pyiqa_metric("musiq", torch.zeros(3, 32, 32))


def test_pyiqa_metric_points_dover_to_the_official_code() -> None:
    with pytest.raises(InputError, match="VQAssessment/DOVER"):
        pyiqa_metric("dover", torch.zeros(3, 32, 32))


def test_unknown_metric_lists_the_valid_names() -> None:
    with pytest.raises(InputError, match="psnr.*ssim"):
        get_metric("psnr2")


def test_registry_flags() -> None:
    assert get_metric("psnr").higher_is_better and get_metric("psnr").needs_reference
    assert not get_metric("lpips").higher_is_better
    assert not get_metric("niqe").higher_is_better and not get_metric("niqe").needs_reference
    assert get_metric("musiq").higher_is_better and not get_metric("musiq").needs_reference
    a = smooth_texture(16, 16)
    b = (a + 0.05).clamp(0, 1)
    assert METRICS["psnr_y"].fn(a, b) == psnr(a, b, y_channel=True)
    with pytest.raises(TypeError):
        METRICS["new"] = METRICS["psnr"]  # type: ignore[index]


def test_grid_ratio_finds_a_token_grid_and_only_at_its_period() -> None:
    torch.manual_seed(0)
    noise = torch.rand(1, 3, 72, 72)
    smooth = F.avg_pool2d(F.pad(noise, (2, 2, 2, 2), mode="reflect"), 5, 1)[0][:, 4:-4, 4:-4]
    blocks = torch.rand(3, 16, 16).repeat_interleave(4, 1).repeat_interleave(4, 2) * 0.05
    assert 0.95 < grid_ratio(smooth, 4) < 1.05
    assert grid_ratio(smooth + blocks, 4) > 1.15  # offsets per 4x4 block
    assert grid_ratio(torch.stack([smooth + blocks] * 2), 3) < 1.05  # another period: no grid
    doubled = F.interpolate(smooth[None], scale_factor=2, mode="nearest")[0]  # x2, 2-periodic
    assert grid_ratio(doubled, 4) > 1.5  # naive: every 4th boundary is an input-pixel one
    assert 0.9 < grid_ratio(doubled, 4, scale=2) < 1.1  # against input-pixel boundaries


def test_speck_fraction_counts_isolated_pixels_only() -> None:
    flat = torch.full((3, 32, 32), 0.5)
    assert speck_fraction(flat) == 0.0
    spotted = flat.clone()
    spotted[1, 5, 5] = 0.9  # bright in one channel
    spotted[:, 20, 9] = 0.1  # dark
    spotted[:, 10:12, 20:22] = 1.0  # a 2x2 patch: not isolated
    assert speck_fraction(spotted) == 2 / (32 * 32)
