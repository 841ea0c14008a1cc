"""No-reference learned metrics through the optional ``pyiqa`` package (Chen et al., IQA-PyTorch).

CLIP-IQA (``clipiqa``) and MUSIQ (``musiq``, KonIQ weights) are reported for real and AIGC clips
(spec ``training.md`` §4). pyiqa is not a dependency: it pulls torchvision and downloads its
weights on first use, so offline it works only with the weights already in its cache
(``<torch hub dir>/pyiqa``). DOVER is not in pyiqa; the paper's DOVER is the technical score of the
official code (github.com/VQAssessment/DOVER).
"""

from __future__ import annotations

from pathlib import Path

import torch

from seedvr2.errors import CheckpointError, InputError

from .frames import as_clip


@torch.inference_mode()
def pyiqa_metric(name: str, frames: torch.Tensor, device: torch.device | str = "cpu") -> float:
    """pyiqa's metric ``name`` on each RGB frame, averaged over frames.

    Args:
        name: a pyiqa metric name, e.g. ``"clipiqa"``, ``"musiq"``.
        frames: RGB ``(3, h, w)`` or ``(f, 3, h, w)`` in [0, 1].
        device: where pyiqa runs the network.

    Raises:
        InputError: pyiqa is not installed, or has no metric ``name``.
        CheckpointError: pyiqa could not fetch the metric's weights.
    """
    clip = as_clip(frames)
    if clip.shape[1] != 3:
        raise InputError(f"pyiqa metrics need RGB frames, got {clip.shape[1]} channel(s)")
    if name == "dover":
        raise InputError(
            "DOVER is not part of pyiqa; run the official code (github.com/VQAssessment/DOVER) "
            "and report its technical score"
        )
    try:
        import pyiqa
    except ImportError as err:
        raise InputError(
            f"metric {name!r} needs the optional package pyiqa: pip install pyiqa "
            "(it requires torchvision; install the torch build you use first)"
        ) from err
    if name not in pyiqa.list_models():
        raise InputError(f"pyiqa has no metric {name!r}; see pyiqa.list_models()")
    try:
        metric = pyiqa.create_metric(name, device=torch.device(device))
    except OSError as err:  # download refused or unreachable (URLError, requests errors, ...)
        cache = Path(torch.hub.get_dir()) / "pyiqa"
        raise CheckpointError(
            f"pyiqa could not get the weights of {name!r} ({err}); put them in {cache} "
            "or run once with network access"
        ) from err
    scores = [metric(frame[None].to(metric.device, torch.float32)) for frame in clip]
    return float(torch.stack([score.flatten()[0] for score in scores]).mean())
