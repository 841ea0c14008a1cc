"""The speed benchmark's FLOP count follows the model's own VAE (the achieved-rate column)."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parents[1] / "benchmarks"))

from model_fixtures import write_tiny_model  # noqa: E402
from restore_fps import clip_flops  # noqa: E402
from seedvr2.models.flops import dit_forward_flops, vae_decode_flops, vae_encode_flops  # noqa: E402
from seedvr2.pipeline import Restorer  # noqa: E402


def test_the_bundled_space_to_depth_model_counts_its_dit_at_its_own_latent_size() -> None:
    restorer = Restorer.from_pretrained(None, device="cpu")
    assert restorer.model.vae.space_to_depth_stages == 1  # 2x, no temporal compression
    text = restorer.model.text.shape[0]
    expected = dit_forward_flops(restorer.model.dit.config, (5, 240, 424), text).total
    assert clip_flops(restorer, 5, 480, 848) == expected  # pixel (un)shuffle: no VAE FLOPs


def test_a_convolutional_vae_adds_its_encode_and_decode(tmp_path: Path) -> None:
    restorer = Restorer.from_pretrained(str(write_tiny_model(tmp_path / "m")), device="cpu")
    vae, dit = restorer.model.vae.config, restorer.model.dit.config
    step, down = vae.temporal_factor, vae.spatial_factor
    latent = (1 + 4 // step, 64 // down, 96 // down)
    expected = (vae_encode_flops(vae, (5, 64, 96)).total + vae_decode_flops(vae, latent).total
                + dit_forward_flops(dit, latent, restorer.model.text.shape[0]).total)
    assert clip_flops(restorer, 5, 64, 96) == expected
