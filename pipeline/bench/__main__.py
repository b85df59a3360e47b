"""`python -m pipeline.bench`: the speed benchmark and its quality modes (see speed.py)."""

import sys

from pipeline.bench.speed import main

sys.exit(main())
