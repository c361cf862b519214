"""Entry point: ``python -m visionatrix <command>``."""

from __future__ import annotations

import sys

from visionatrix.cli.main import main

if __name__ == "__main__":
    sys.exit(main())
