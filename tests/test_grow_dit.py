"""scripts/grow_dit.py: appended blocks leave a trained DiT's output unchanged until trained."""

from __future__ import annotations

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parents[1] / "scripts"))

from grow_dit import grown, same_output  # noqa: E402

from seedvr2.weights.networks import load_dit  # noqa: E402

BUNDLED = Path(__file__).parents[1] / "src/seedvr2/assets/seedvr2-small/dit.safetensors"


def test_grown_blocks_add_nothing_until_their_output_projections_move() -> None:
    source = load_dit(BUNDLED, torch.float32)
    model = grown(source, 2)
    assert model.config.num_layers == source.config.num_layers + 2
    assert model.config.window_methods[-2:] == model.config.window_methods[:2]  # alternation
    assert same_output(source, model)
    with torch.no_grad():  # a trained new block: the output moves
        model.blocks[-1].mlp.stream("vid").proj_out.weight.normal_(0, 1e-2)
    assert not same_output(source, model)
