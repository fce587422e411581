"""`python -m streams.simulate`, the same as `python -m streams simulate`."""

import sys

from streams.simulate.cli import main

raise SystemExit(main(sys.argv[1:]))
