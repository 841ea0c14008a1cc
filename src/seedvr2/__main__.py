"""``python -m seedvr2``: the ``seedvr2`` command."""

from seedvr2.cli import entry

entry()
