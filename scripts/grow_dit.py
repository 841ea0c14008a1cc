"""Append blocks to a trained DiT without changing what it computes (a warm start for a deeper one).

The new blocks are set as ``model.init: passthrough`` sets every block: their attention and MLP
output projections are zero, so each adds exactly 0 to the residual stream whatever its other
(seeded random) weights; training then moves them away from zero. The grown model's output is
checked equal to the source's (to fp32 rounding) on a random clip before the file is written (atomically; an
existing output is refused).

    python scripts/grow_dit.py SOURCE.safetensors OUTPUT.safetensors --add 1
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

import torch
from safetensors.torch import save_file

from seedvr2.models import build_dit
from seedvr2.models.dit import SeedVR2DiT
from seedvr2.weights.networks import load_dit
from seedvr2.weights.writing import write_atomically


def grown(source: SeedVR2DiT, add: int, seed: int = 0) -> SeedVR2DiT:
    """``source`` with ``add`` zero-output blocks appended (multi-modal when all source blocks
    are), the others' weights copied."""
    cfg = source.config
    layers = cfg.num_layers + add
    mm = layers if cfg.mm_layers == cfg.num_layers else cfg.mm_layers
    config = dataclasses.replace(cfg, num_layers=layers, mm_layers=mm, window_methods=())
    torch.manual_seed(seed)
    model = build_dit(config).eval()
    state = model.state_dict()
    missing = set(source.state_dict()) - set(state)
    if missing:
        raise SystemExit(f"the grown model lacks {sorted(missing)[:3]}: not an appendable DiT")
    state.update(source.state_dict())
    model.load_state_dict(state)
    with torch.no_grad():
        for name, param in model.blocks[cfg.num_layers:].named_parameters():
            if ".proj_out." in name:
                param.zero_()
    return model


def same_output(a: SeedVR2DiT, b: SeedVR2DiT) -> bool:
    """Both DiTs give the same velocity on a random 1x8x8 latent clip, to fp32 rounding (the
    copied weights' memory layout can pick another matmul kernel: about 1e-6 apart)."""
    g = torch.Generator().manual_seed(1)
    cfg = a.config
    vid = torch.randn(64, cfg.vid_in_channels, generator=g)  # (l, c)
    txt = torch.randn(4, cfg.txt_in_dim, generator=g)  # (l_txt, e)
    args = (vid, txt, torch.tensor([[1, 8, 8]]), torch.tensor([[4]]), torch.tensor([1000.0]))
    with torch.no_grad():
        return torch.allclose(a(*args), b(*args), rtol=1e-5, atol=1e-4)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source", type=Path)
    parser.add_argument("output", type=Path)
    parser.add_argument("--add", type=int, default=1, help="blocks to append")
    args = parser.parse_args()
    if args.output.exists():
        raise SystemExit(f"{args.output} exists; choose another file (nothing is overwritten)")
    source = load_dit(args.source, torch.float32)
    model = grown(source, args.add)
    if not same_output(source, model):
        raise SystemExit("the grown model's output differs from the source's; nothing written")
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    metadata = {"config": json.dumps(model.config.to_dict()), "network": "grown",
                "source": str(args.source)}
    write_atomically(args.output, lambda temp: save_file(state, str(temp), metadata=metadata))
    print(f"{args.output}: {model.config.num_layers} blocks, output equal to {args.source}'s")


if __name__ == "__main__":
    main()
