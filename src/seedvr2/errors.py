"""User-facing errors.

Every error a user can cause (a bad path, a wrong checkpoint, an impossible setting) is raised as
one of these, with what was wrong, the value seen and what to do. The CLI prints them as one line
and exits non-zero; any other exception is a bug and keeps its traceback.
"""

from __future__ import annotations

from seedvr2.spelling import for_reader


class SeedVR2Error(Exception):
    """Base class of the errors a user can cause and fix.

    Messages name settings as command-line flags; Python API users read them as the API's
    arguments (``--device cpu`` as ``device="cpu"``, see :mod:`seedvr2.spelling`).
    """

    def __str__(self) -> str:
        return for_reader(super().__str__())


class InputError(SeedVR2Error):
    """An input file, folder or argument cannot be used."""


class OutputError(SeedVR2Error):
    """An output cannot be written (exists, unwritable folder, unsupported container)."""


class CheckpointError(SeedVR2Error):
    """A weights file is missing, unreadable or does not fit the model."""


class ConfigError(SeedVR2Error):
    """A configuration value or file is invalid."""


class OutOfMemory(SeedVR2Error):
    """The device ran out of memory; the message names the settings that lower the peak."""


class RankLost(SeedVR2Error):
    """Another process of a multi-process (torchrun) run stopped; this one cannot go on."""
