"""``python -m voxhelpers.bench``: run the benchmarks (see :func:`voxhelpers.bench.core.main` for the flags)."""

import sys

from . import main

sys.exit(main(prog="python -m voxhelpers.bench"))
