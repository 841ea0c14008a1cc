"""What a run loads, as one value: the CLI loads it here, cluster workers load it on their node."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from .options import RestoreOptions, RuntimeOptions
from .restorer import Restorer


@dataclass(frozen=True)
class ModelLoad:
    """The arguments of :meth:`Restorer.from_pretrained`, picklable for other processes."""

    model: str | None = None  # preset, folder or repo id; None: the bundled model
    options: RestoreOptions = field(default_factory=RestoreOptions)
    runtime: RuntimeOptions = field(default_factory=RuntimeOptions)
    cache_dir: str | None = None
    offline: bool = False
    lora: tuple[str, ...] = ()

    def load(self) -> Restorer:
        """Load the model with these settings."""
        settings = {
            f.name: getattr(part, f.name)
            for part in (self.runtime, self.options)
            for f in dataclasses.fields(part)
        }
        return Restorer.from_pretrained(
            self.model, cache_dir=self.cache_dir, offline=self.offline, lora=self.lora, **settings
        )
