"""Optional ``torch.compile`` of the networks (``--compile``): slower first batch, faster after.

Each DiT block and the VAE's encoder and decoder are compiled in place (``nn.Module.compile``),
so weight loading, offloading and block swapping see the same modules. Shapes change with the
clip size; dynamic shapes keep recompiles to a few per size class.
"""

from __future__ import annotations

import weakref

from torch import nn

_compiled: weakref.WeakSet[nn.Module] = weakref.WeakSet()


def compile_networks(dit: nn.Module, vae: nn.Module) -> int:
    """Compile the DiT blocks and the VAE halves once (repeat calls are no-ops); returns the
    number of modules compiled by this call."""
    targets = [*dit.blocks, vae.encoder, vae.decoder]
    fresh = [module for module in targets if module not in _compiled]
    for module in fresh:
        module.compile(dynamic=None)
        _compiled.add(module)
    return len(fresh)


def is_compiled(module: nn.Module) -> bool:
    return module in _compiled
