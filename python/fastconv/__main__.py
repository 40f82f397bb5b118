"""`python -m fastconv ...` runs the fastconv command line (see fastconv.cli)."""

import sys

from .cli import main

sys.exit(main())
