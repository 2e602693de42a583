"""``python -m bayeux_trio``: the same as the ``bayeux`` command."""

from __future__ import annotations

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
