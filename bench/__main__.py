"""`python -m bench`: the speed benchmark and its quality modes (see speed.py)."""

import sys

from bench.speed import main

sys.exit(main())
