"""`python -m detector ...`: the `detector` command (detector.cli), for when the console script is not on PATH."""

import sys

from .cli import main

sys.exit(main())
