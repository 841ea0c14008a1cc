"""Block swap: keep some DiT blocks in CPU memory and stream each to the device just in time.

The last ``count`` blocks live on the offload device (pinned CPU memory). A forward pre-hook puts
a block's weights on the compute device right before it runs and a forward hook points them back
at the CPU copies right after, so at most two swapped blocks (the running one and the next) are on
the device at once. On CUDA the next swapped block is copied on a side stream (``non_blocking``
from pinned memory) while the current block computes. Inference only: the CPU copies are the
weights, nothing is copied back. The DiT's maths is untouched.
"""

from __future__ import annotations

import logging
import weakref

import torch
from torch import nn

from seedvr2.errors import InputError
from seedvr2.models.dit import SeedVR2DiT

log = logging.getLogger(__name__)
_ATTACHED: weakref.WeakKeyDictionary[SeedVR2DiT, BlockSwap] = weakref.WeakKeyDictionary()

Slot = tuple[nn.Module, str, bool]  # (module, tensor name, is a parameter)


class BlockSwap:
    """Hooks that stream the last ``count`` blocks of ``dit`` from ``offload`` to ``device``.

    Build with :func:`attach_block_swap`. ``device`` and ``offload`` may both be the CPU (the
    tests use that to run the mechanism without a GPU); the copies are then plain ones.
    """

    def __init__(
        self,
        dit: SeedVR2DiT,
        count: int,
        device: torch.device,
        offload: torch.device | str = "cpu",
    ) -> None:
        depth = len(dit.blocks)
        if not 0 < count <= depth:
            raise InputError(f"--swap-blocks {count} must be between 1 and the DiT's {depth} blocks")
        self.device, self.offload = device, torch.device(offload)
        self.swapped = list(range(depth - count, depth))
        self.resident: set[int] = set()  # swapped blocks whose weights are on the device now
        self._cuda = device.type == "cuda"
        self._stream = torch.cuda.Stream(device) if self._cuda else None
        self._slots: dict[int, list[Slot]] = {}
        self._home: dict[int, list[torch.Tensor]] = {}  # the CPU copies, per swapped block
        self._pending: dict[int, tuple[list[torch.Tensor], torch.cuda.Event | None]] = {}
        self._hooks = []
        for index in self.swapped:
            block = dit.blocks[index]
            self._slots[index] = [
                (module, name, name in module._parameters)
                for module in block.modules()
                for name, tensor in (*module._parameters.items(), *module._buffers.items())
                if tensor is not None
            ]
            self._home[index] = [self._to_offload(_get(slot)) for slot in self._slots[index]]
            self._point(index, self._home[index])
            self._hooks.append(block.register_forward_pre_hook(self._make_pre_hook(index)))
            self._hooks.append(block.register_forward_hook(self._make_post_hook(index)))
        self._hooks.append(dit.register_forward_pre_hook(lambda *_: self._prefetch(-1)))

    def _to_offload(self, tensor: torch.Tensor) -> torch.Tensor:
        tensor = tensor.detach().to(self.offload)
        return tensor.pin_memory() if self._cuda and self.offload.type == "cpu" else tensor

    def _point(self, index: int, tensors: list[torch.Tensor]) -> None:
        for (module, name, is_parameter), tensor in zip(self._slots[index], tensors):
            if is_parameter:
                module._parameters[name].data = tensor
            else:
                module._buffers[name] = tensor

    def _start_copy(self, index: int) -> None:
        """Begin copying block ``index`` to the device (on the side stream on CUDA)."""
        if self._stream is None:
            copies = [t.to(self.device, copy=True) for t in self._home[index]]
            self._pending[index] = (copies, None)
            return
        self._stream.wait_stream(torch.cuda.current_stream(self.device))
        with torch.cuda.stream(self._stream):
            copies = [t.to(self.device, non_blocking=True) for t in self._home[index]]
            event = torch.cuda.Event()
            event.record(self._stream)
        self._pending[index] = (copies, event)

    def _prefetch(self, after: int) -> None:
        """Start copying the first swapped block past ``after``, unless already under way."""
        following = next((i for i in self.swapped if i > after), None)
        if following is not None and following not in self._pending:
            self._start_copy(following)

    def _make_pre_hook(self, index: int):
        def pre_hook(module: nn.Module, args: tuple) -> None:
            if index not in self._pending:
                self._start_copy(index)
            copies, event = self._pending.pop(index)
            if event is not None:
                stream = torch.cuda.current_stream(self.device)
                stream.wait_event(event)
                for tensor in copies:
                    tensor.record_stream(stream)  # freed only after the compute stream used it
            self._point(index, copies)
            self.resident.add(index)
            self._prefetch(index)

        return pre_hook

    def _make_post_hook(self, index: int):
        def post_hook(module: nn.Module, args: tuple, output: object) -> None:
            self._point(index, self._home[index])
            self.resident.discard(index)

        return post_hook

    def move(self, dit: SeedVR2DiT, device: torch.device | str) -> None:
        """``dit.to(device)`` for everything but the swapped blocks, which stay offloaded."""
        for name, child in dit.named_children():
            if name != "blocks":
                child.to(device)
        for index, block in enumerate(dit.blocks):
            if index not in self._home:
                block.to(device)

    def remove(self) -> None:
        """Remove the hooks; the swapped blocks stay on the offload device."""
        for hook in self._hooks:
            hook.remove()
        self._pending.clear()


def _get(slot: Slot) -> torch.Tensor:
    module, name, is_parameter = slot
    return module._parameters[name] if is_parameter else module._buffers[name]


def attach_block_swap(dit: SeedVR2DiT, count: int, device: torch.device) -> BlockSwap | None:
    """Swap the last ``count`` blocks of ``dit`` for ``device``; None when count is 0 or on the CPU.

    Replaces a swap attached to ``dit`` before. On a CPU device there is nothing to save, so it
    warns and does nothing.
    """
    previous = _ATTACHED.pop(dit, None)
    if previous is not None:
        previous.remove()
    if count == 0:
        return None
    if device.type == "cpu":
        log.warning("--swap-blocks %d has no effect on the CPU; the blocks stay in memory", count)
        return None
    swap = BlockSwap(dit, count, device)
    _ATTACHED[dit] = swap
    return swap
