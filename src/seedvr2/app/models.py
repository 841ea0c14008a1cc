"""The models a page offers, each loaded once and kept while it is the one in use."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path

import torch

from seedvr2.errors import InputError
from seedvr2.pipeline import JobResult, RestoreOptions, Restorer, RuntimeOptions
from seedvr2.pipeline.estimate import ModelShape, device_rate, estimate_seconds, model_shape
from seedvr2.pipeline.memory import MemorySetup, ModelFacts, model_facts
from seedvr2.pipeline.models import BUNDLED_MODEL, bundled_model_dir
from seedvr2.pipeline.planning import JobPlan
from seedvr2.pipeline.runtime import resolve_device, resolve_dtype
from seedvr2.weights.sources import HUB_PRESETS


@dataclass(frozen=True)
class ModelChoice:
    """A model as the page names it, and what ``Restorer.from_pretrained`` is given."""

    label: str
    spec: str | None  # None: the bundled model


def _cached(spec: str, cache_dir: Path | None) -> bool:
    """Whether a preset's networks are in the download cache (nothing is read or fetched)."""
    from huggingface_hub import try_to_load_from_cache

    model = HUB_PRESETS[spec]
    return all(
        isinstance(try_to_load_from_cache(model.repo_id, name, cache_dir=cache_dir,
                                          revision=model.revision), str)
        for name in (model.dit, model.vae)
    )  # fmt: skip


def model_choices(models: list[str], cache_dir: Path | None) -> list[ModelChoice]:
    """The models given with ``--model`` (the first is the default; a folder is offered by its
    name, never its path), then the bundled model and the presets already downloaded."""
    choices = {Path(spec).name or spec: ModelChoice(Path(spec).name or spec, spec)
               for spec in models}  # fmt: skip
    if (bundled_model_dir() / "dit.safetensors").is_file():
        choices.setdefault(BUNDLED_MODEL, ModelChoice(BUNDLED_MODEL, None))
    for spec in HUB_PRESETS:
        if spec not in choices and _cached(spec, cache_dir):
            choices[spec] = ModelChoice(spec, spec)
    if not choices:
        raise InputError("no model to serve: pass --model with a preset or a model folder")
    return list(choices.values())


class ModelPool:
    """Loads a chosen model on first use and keeps it; choosing another replaces it."""

    def __init__(self, choices: list[ModelChoice], **load: object) -> None:
        self.choices = {choice.label: choice for choice in choices}
        self._load = load  # device, dtype, cache_dir, offline ... of Restorer.from_pretrained
        self._lock = threading.Lock()
        self._loaded: tuple[str, Restorer] | None = None
        self._facts: dict[str, ModelFacts] = {}
        self._rates: dict[str, float] = {}  # output pixels per second, per model
        self._shapes: dict[str, ModelShape] = {}  # for planned times
        self._device_rate: float | None = None  # FLOP/s, measured once

    def choice(self, label: str) -> ModelChoice:
        """The choice with this label; anything else is refused (labels are the only way in)."""
        if label not in self.choices:
            raise InputError(f"model {label!r} is not offered here; pick one from the list")
        return self.choices[label]

    def restorer(self, label: str) -> Restorer:
        """The loaded model of ``label`` (loading it, and dropping the other, when needed)."""
        choice = self.choice(label)
        with self._lock:
            if self._loaded is None or self._loaded[0] != label:
                self._loaded = None  # free the old model before the new one loads
                self._loaded = (label, Restorer.from_pretrained(choice.spec, **self._load))
            return self._loaded[1]

    def facts(self, label: str) -> ModelFacts:
        """What the memory estimate needs of the model, without loading it."""
        if label not in self._facts:
            self._facts[label] = model_facts(self.choice(label).spec, self._load.get("cache_dir"))
        return self._facts[label]

    def memory_setup(self) -> tuple[MemorySetup, torch.device]:
        """The settings that change the memory peak, and the device the models run on."""
        options = RuntimeOptions(**{k: v for k, v in self._load.items()
                                    if k in RuntimeOptions.__dataclass_fields__})  # fmt: skip
        device = resolve_device(options.device_names[0])
        return MemorySetup.of_runtime(options, device, resolve_dtype(options.dtype, device)), device

    def record(self, label: str, result: JobResult) -> None:
        """Remember the speed of a finished job (output pixels per second) for time estimates."""
        if result.size is not None and result.seconds > 0:
            width, height = result.size
            self._rates[label] = width * height * result.frames / result.seconds

    def planned_seconds(self, label: str, options: RestoreOptions, work: JobPlan) -> float:
        """The planner's seconds for ``work`` before any job has been measured (FLOPs over this
        device's timed matrix-multiply rate; rough)."""
        if label not in self._shapes:
            self._shapes[label] = model_shape(self.choice(label).spec, self._load.get("cache_dir"))
        if self._device_rate is None:
            setup, device = self.memory_setup()
            self._device_rate = device_rate(device, setup.dtype)
        shape = self._shapes[label]
        return estimate_seconds(shape, options, work.batches, work.size.padded, self._device_rate)

    def seconds(self, label: str, pixels: int) -> float | None:
        """Estimated seconds to restore ``pixels`` output pixels (all frames), once measured."""
        rate = self._rates.get(label)
        return None if rate is None else pixels / rate
