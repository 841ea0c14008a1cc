"""``python -m seedvr2``: the ``seedvr2`` command."""

import sys

from seedvr2.cli import main

sys.exit(main())
