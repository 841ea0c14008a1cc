"""Weights that make a DiT return its LQ condition exactly: ``x_0 = LQ latent`` in one step.

A restoration model that starts as the identity of its (bicubic up-scaled) input can only be
trained *away* from bicubic where the loss says it is better (``model.init: passthrough``, used
by ``configs/train/small_relative.yaml``, the start of the bundled model, and earlier
experiments).

The model predicts the velocity ``v = x_T - x_0``, so ``x_0 = cond`` needs ``v = x_t - cond``:

* ``vid_in`` copies each patch's ``x_t`` values to the first ``P`` channels of the residual
  stream and its LQ-latent values to the next ``P`` (``P = vid_out_channels * ph * pw``); the
  mask channel and the remaining ``dim - 2P`` channels start at zero;
* every block's residual branches end in zero: the output projections of its attention and
  MLP are zero (Fixup / zero-init-residual style) with the gates open at 1 (the time
  embedding's last layer is zero, the learned ``ada`` gates 1), so each block adds exactly
  ``0`` while the first training step already gets full-size gradients on those projections
  (closed gates instead, as adaLN-Zero, left the model at the pass-through for 500 steps of a
  CPU run: the gates' gradients are a weak correlation with random features);
* ``vid_out`` reads ``stream[:P] - stream[P:2P]``.

A deterministic generator (``start_noise: 0``) always gets ``x_t = 0``, so when its width holds
only the LQ lanes (``P <= dim < 2P``: large patches, 8x8-pixel tokens over the 2x space-to-depth
latent) ``vid_in`` copies the LQ latent to the first ``P`` channels and ``vid_out`` reads
``-stream[:P]``: the same ``v = x_t - cond`` for that ``x_t``. Wider models keep both copies.

This needs the 7B structure's plain output head (``out_norm: false``): an RMSNorm before
``vid_out`` would make the map non-linear.
"""

from __future__ import annotations

import torch

from seedvr2.errors import ConfigError

from .model import SeedVR2DiT


def passthrough_channels(dit: SeedVR2DiT) -> int:
    """``P``: the values of ``x_t`` (or of the LQ latent) in one patched token."""
    _, ph, pw = dit.config.patch_size
    return dit.config.vid_out_channels * ph * pw


def carries_x_t(dit: SeedVR2DiT) -> bool:
    """Whether the pass-through copies ``x_t`` too: always, except for a deterministic generator
    too narrow for both copies (module docstring)."""
    return dit.config.start_noise != 0 or dit.config.dim >= 2 * passthrough_channels(dit)


def check_passthrough(dit: SeedVR2DiT) -> None:
    """Raise a :class:`ConfigError` saying why ``dit`` cannot start as a pass-through."""
    cfg = dit.config
    problems = []
    if cfg.out_norm:
        problems.append("out_norm must be false (the 7B structure's plain output head)")
    if cfg.vid_in_channels != 2 * cfg.vid_out_channels + 1:
        problems.append(f"vid_in_channels must be 2 x vid_out_channels + 1 = "
                        f"{2 * cfg.vid_out_channels + 1}, got {cfg.vid_in_channels}")
    lanes = passthrough_channels(dit) * (2 if carries_x_t(dit) else 1)
    if cfg.dim < lanes:
        problems.append(f"dim must be at least {lanes} (x_t and the LQ latent of a patch side by "
                        f"side; the LQ latent alone with start_noise 0), got {cfg.dim}")
    if problems:
        raise ConfigError("model.init: passthrough needs " + "; ".join(problems))


@torch.no_grad()
def make_passthrough(dit: SeedVR2DiT) -> SeedVR2DiT:
    """Set ``dit``'s in/out projections, residual branch ends and gates so that it returns
    ``v = x_t - cond``. Every other weight keeps its (random) initialisation."""
    check_passthrough(dit)
    c = dit.config.vid_out_channels
    channels = dit.config.vid_in_channels  # per latent pixel: [x_t (c) | cond (c) | mask (1)]
    patch = passthrough_channels(dit)
    pixels = patch // c  # ph * pw; patchify orders a token's values (dy, dx, channel)
    lq = patch if carries_x_t(dit) else 0  # first stream channel of the LQ copy
    w_in, w_out = dit.vid_in.proj.weight, dit.vid_out.proj.weight  # (d, pixels*channels), (P, d)
    w_in.zero_()
    w_out.zero_()
    dit.vid_in.proj.bias.zero_()
    dit.vid_out.proj.bias.zero_()
    for pixel in range(pixels):
        for k in range(c):
            lane = pixel * c + k  # this value's place in the output token
            w_in[lq + lane, pixel * channels + c + k] = 1.0  # LQ latent
            w_out[lane, lq + lane] = -1.0
            if lq:
                w_in[lane, pixel * channels + k] = 1.0  # x_t
                w_out[lane, lane] = 1.0
    dit.emb_in.proj_out.weight.zero_()
    dit.emb_in.proj_out.bias.zero_()
    for name, param in dit.blocks.named_parameters():
        if name.endswith("_gate"):
            param.fill_(1.0)
        elif ".attn.proj_out." in name or (".mlp." in name and ".proj_out." in name):
            param.zero_()
    return dit
