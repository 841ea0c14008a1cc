"""The pass-through DiT init (bundled seedvr2-small's start): x_0 = LQ latent exactly."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from seedvr2 import Restorer
from seedvr2.errors import ConfigError
from seedvr2.eval.baselines import bicubic
from seedvr2.models.dit import build_dit
from seedvr2.models.dit.config import COLOR_CORRECTION_NAMES
from seedvr2.models.dit.passthrough import make_passthrough
from seedvr2.models.vae.space_to_depth import space_to_depth_config, space_to_depth_vae
from seedvr2.pipeline.color import COLOR_CORRECTIONS
from seedvr2.pipeline.sizing import SizePlan, resize_and_pad

SMALL = dict(dim=128, heads=2, head_dim=64, num_layers=2, mm_layers=1, mlp_type="gelu",
             expand_ratio=2.0, rope_type="rope3d", rope_dim=32, out_norm=False,
             last_block_vid_only=False, txt_in_dim=16, vid_in_channels=25, vid_out_channels=12,
             num_windows=(2, 2, 2))


def _velocity(dit, x_t: torch.Tensor, cond: torch.Tensor, shapes: list) -> torch.Tensor:
    vid = torch.cat([x_t, cond, torch.ones(len(x_t), 1)], dim=1)
    txt = torch.randn(4 * len(shapes), dit.config.txt_in_dim)
    return dit(vid, txt, torch.tensor(shapes), torch.tensor([[4]] * len(shapes)), 1000.0)


@pytest.mark.parametrize("patch", [(1, 1, 1), (1, 2, 2)])
def test_the_velocity_is_x_t_minus_the_condition(patch) -> None:
    torch.manual_seed(0)
    dit = make_passthrough(build_dit({**SMALL, "patch_size": patch}))
    shapes = [[3, 8, 12], [1, 4, 6]]  # two packed clips
    rows = sum(t * h * w for t, h, w in shapes)
    x_t, cond = torch.randn(rows, 12), torch.rand(rows, 12) * 2 - 1
    v = _velocity(dit, x_t, cond, shapes)
    assert (x_t - v - cond).abs().max() < 1e-5


def test_a_deterministic_generator_too_narrow_for_x_t_passes_the_condition_alone() -> None:
    """8x8-pixel tokens (patch 4 over the 2x space-to-depth latent): P = 192 > dim / 2."""
    torch.manual_seed(0)
    narrow = {**SMALL, "dim": 256, "heads": 4, "patch_size": (1, 4, 4), "start_noise": 0.0}
    dit = make_passthrough(build_dit(narrow))
    shapes = [[2, 8, 12]]
    cond = torch.rand(2 * 8 * 12, 12) * 2 - 1
    v = _velocity(dit, torch.zeros_like(cond), cond, shapes)  # start_noise 0: x_t = 0
    assert (-v - cond).abs().max() < 1e-5
    with pytest.raises(ConfigError, match="dim must be at least 384"):  # x_t may be non-zero
        make_passthrough(build_dit({**narrow, "start_noise": 1.0}))
    with pytest.raises(ConfigError, match="dim must be at least 192"):
        make_passthrough(build_dit({**narrow, "dim": 128, "heads": 2}))


def test_training_moves_the_output_from_the_first_step() -> None:
    torch.manual_seed(1)
    dit = make_passthrough(build_dit(SMALL))
    shapes = [[1, 8, 8]]
    x_t, cond = torch.randn(64, 12), torch.rand(64, 12) * 2 - 1
    loss = (x_t - _velocity(dit, x_t, cond, shapes)).sub(cond * 0.5).abs().mean()
    loss.backward()
    ends = {n: p.grad.abs().sum() for n, p in dit.blocks.named_parameters()
            if "proj_out" in n and ".txt." not in n}  # text matters once video is moved
    assert len(ends) == 8 and all(g > 0 for g in ends.values())  # zero, not stuck
    torch.optim.Adam(dit.parameters(), lr=1e-2).step()
    with torch.no_grad():
        assert (x_t - _velocity(dit, x_t, cond, shapes) - cond).abs().max() > 1e-3


def test_structures_that_cannot_pass_through_are_refused() -> None:
    with pytest.raises(ConfigError, match="out_norm must be false"):
        make_passthrough(build_dit({**SMALL, "out_norm": True}))
    with pytest.raises(ConfigError, match="dim must be at least 96"):
        make_passthrough(build_dit({**SMALL, "dim": 64, "heads": 1}))


def _model_folder(folder, dit) -> None:
    config = space_to_depth_config((16, 32))
    vae = space_to_depth_vae(config)
    for name, net, cfg in (("dit", dit, dit.config), ("vae", vae, config)):
        save_file({k: v.contiguous() for k, v in net.state_dict().items()},
                  str(folder / f"{name}.safetensors"),
                  metadata={"config": json.dumps(cfg.to_dict()), "network": name})
    save_file({"pos_emb": torch.randn(4, 16)}, str(folder / "pos_emb.safetensors"))


def test_a_passthrough_model_restores_to_the_up_scaled_input(tmp_path) -> None:
    """Whole pipeline (exact space-to-depth VAE, one step, colour correction): the antialiased
    bicubic up-scale restore makes, to 8-bit rounding."""
    torch.manual_seed(2)
    _model_folder(tmp_path, make_passthrough(build_dit(SMALL)))
    rng = np.random.default_rng(0)
    frames = rng.random((3, 20, 28, 3)).astype(np.float32)
    out = Restorer.from_pretrained(tmp_path, device="cpu", scale=2).restore(frames)
    plan = SizePlan(source=(20, 28), output=(40, 56), padded=(48, 64))
    expected = resize_and_pad(torch.from_numpy(frames).permute(0, 3, 1, 2), plan)[..., :40, :56]
    got = torch.from_numpy(out).permute(0, 3, 1, 2)  # float frames in, float frames out
    assert got.shape == expected.shape
    assert (got - expected).abs().max() <= 0.5 / 255 + 1e-4


def test_condition_resize_bicubic_makes_the_pass_through_the_bicubic_baseline(tmp_path) -> None:
    """A DiT whose config says ``condition_resize: bicubic`` gets plain bicubic conditions, so
    its pass-through restores exactly to the evaluation's bicubic baseline (sharper than the
    antialiased up-scale the released models take)."""
    torch.manual_seed(4)
    _model_folder(tmp_path, make_passthrough(build_dit({**SMALL, "condition_resize": "bicubic"})))
    frames = np.random.default_rng(5).random((1, 20, 28, 3)).astype(np.float32)
    out = Restorer.from_pretrained(tmp_path, device="cpu", scale=2).restore(frames)
    baseline = bicubic(frames, 2)
    assert np.abs(out - baseline).max() <= 0.5 / 255 + 1e-4
    softer = resize_and_pad(torch.from_numpy(frames).permute(0, 3, 1, 2),
                            SizePlan(source=(20, 28), output=(40, 56), padded=(48, 64)))
    assert np.abs(softer.permute(0, 2, 3, 1)[:, :40, :56].numpy() - baseline).max() > 0.05


def test_an_unknown_condition_resize_is_refused() -> None:
    with pytest.raises(ConfigError, match="condition_resize 'lanczos' is not one of"):
        build_dit({**SMALL, "condition_resize": "lanczos"})


def test_the_colour_corrections_a_dit_may_name_are_the_pipelines() -> None:
    assert set(COLOR_CORRECTION_NAMES) == set(COLOR_CORRECTIONS)
    with pytest.raises(ConfigError, match="color_correction 'sepia' is not one of"):
        build_dit({**SMALL, "color_correction": "sepia"})


@pytest.mark.parametrize("start_noise", [0.0, 1.0])
def test_start_noise_zero_makes_a_deterministic_generator(tmp_path, start_noise) -> None:
    torch.manual_seed(3)
    dit = build_dit({**SMALL, "start_noise": start_noise})  # random weights: noise matters
    _model_folder(tmp_path, dit)
    frames = np.random.default_rng(1).random((1, 16, 16, 3)).astype(np.float32)
    outputs = [Restorer.from_pretrained(tmp_path, device="cpu", seed=seed).restore(frames)
               for seed in (0, 1)]
    difference = np.abs(outputs[0] - outputs[1]).max()  # (the VAE posterior's std is ~3e-7)
    assert difference < 1e-4 if start_noise == 0.0 else difference > 1e-2
