"""Acceptance tests: our networks against vectors of the official implementation.

Tolerances (relative L2 error, float32 on the CPU) are those of the golden README: 2e-5 for the
DiT and the whole sampling path, 1e-5 for the VAE; windows exact, timesteps to 1e-4.
"""

from __future__ import annotations

import json

import pytest
import torch

from golden import golden_path, inputs, json_keys, load, matching, rel_error, weights
from seedvr2.diffusion import resolution_timestep_shift, uniform_trailing_timesteps
from seedvr2.models import build_dit, build_vae
from seedvr2.models.dit.windows import window_partition
from seedvr2.pipeline.denoise import denoise_clips

DIT_TOL, VAE_TOL = 2e-5, 1e-5
SHIFTED_METHOD = "720pswin_by_size_bysize"


def _golden_dit(name: str) -> tuple[torch.nn.Module, dict[str, torch.Tensor]]:
    tensors, meta = load(f"{name}.safetensors")
    model = build_dit(json.loads(meta["config"]))
    model.load_state_dict(weights(tensors), strict=True)
    return model.eval(), tensors


def _golden_vae() -> tuple[torch.nn.Module, dict[str, torch.Tensor]]:
    tensors, meta = load("vae.safetensors")
    vae = build_vae(json.loads(meta["config"]))
    vae.load_state_dict(weights(tensors), strict=True)
    return vae.eval(), tensors


@pytest.mark.parametrize("name", ["dit3b", "dit7b"])
@torch.no_grad()
def test_dit_output(name: str) -> None:
    model, tensors = _golden_dit(name)
    out = model(**inputs(tensors))
    assert rel_error(out, tensors["out.vid_sample"]) < DIT_TOL


@pytest.mark.parametrize("frames", matching("vae.safetensors", r"in\.video_T(\d+)"))
@torch.no_grad()
def test_vae_posterior(frames: str) -> None:
    vae, tensors = _golden_vae()
    posterior = vae.encode(tensors[f"in.video_T{frames}"])
    assert rel_error(posterior.mean, tensors[f"out.mean_T{frames}"]) < VAE_TOL
    assert rel_error(posterior.logvar, tensors[f"out.logvar_T{frames}"]) < VAE_TOL


@pytest.mark.parametrize("frames", matching("vae.safetensors", r"out\.decoded_T(\d+)"))
@torch.no_grad()
def test_vae_decode(frames: str) -> None:
    vae, tensors = _golden_vae()
    mean = tensors[f"out.mean_T{frames}"]
    if mean.shape[2] == 1:  # a single frame is decoded as an image
        mean = mean[:, :, 0]
    assert rel_error(vae.decode(mean), tensors[f"out.decoded_T{frames}"]) < VAE_TOL


@pytest.mark.parametrize("steps", matching("generation.safetensors", r"out\.video_s(\d+)"))
@torch.no_grad()
def test_generation(steps: str) -> None:
    golden_path("generation.safetensors")
    dit, _ = _golden_dit("dit3b")
    vae, _ = _golden_vae()
    tensors, _ = load("generation.safetensors")
    latents = denoise_clips(
        dit,
        noise=[tensors[f"in.noise_s{steps}"]],
        lq_latents=[tensors[f"in.cond_latent_s{steps}"]],
        text=tensors["in.txt_pos"],
        negative_text=tensors["in.txt_neg"],
        steps=int(steps),
        cfg_scale=1.0,
    )
    latent = latents[0] / vae.config.scaling_factor  # (t, h, w, c)
    video = vae.decode(latent.permute(3, 0, 1, 2)[None])[0]  # (c, T, H, W)
    assert rel_error(video, tensors[f"out.video_s{steps}"]) < DIT_TOL


@pytest.mark.parametrize("key", json_keys("windows.json"))
def test_window_partition(key: str) -> None:
    expected = json.loads(golden_path("windows.json").read_text())[key]
    method, grid = key.split(":")
    shape = tuple(int(n) for n in grid.split("x"))
    got = window_partition(shape, (4, 3, 3), shifted=method == SHIFTED_METHOD)
    assert [[list(span) for span in window] for window in got] == expected


@pytest.mark.parametrize("key", json_keys("timesteps.json"))
def test_timesteps(key: str) -> None:
    expected = json.loads(golden_path("timesteps.json").read_text())[key]
    if key.startswith("trailing_steps_"):
        got = uniform_trailing_timesteps(int(key.removeprefix("trailing_steps_")))
        assert got.tolist() == expected
    else:
        timestep, shape = key.split("@")
        latent_shape = tuple(int(n) for n in shape.split("x"))
        got = resolution_timestep_shift(torch.tensor(float(timestep)), latent_shape)
        assert abs(float(got) - expected) < 1e-4


@pytest.mark.parametrize(
    ("manifest", "build"),
    [
        ("manifest_dit3b.json", lambda: build_dit("3b", device="meta")),
        ("manifest_dit7b.json", lambda: build_dit("7b", device="meta")),
        ("manifest_vae.json", lambda: build_vae(device="meta")),
    ],
    ids=["dit3b", "dit7b", "vae"],
)
def test_full_size_keys_and_shapes(manifest: str, build) -> None:
    expected = json.loads(golden_path(manifest).read_text())
    state = build().state_dict()
    assert sorted(state) == sorted(expected)
    assert {k: list(v.shape) for k, v in state.items()} == expected
