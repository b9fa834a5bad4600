"""`python -m tunelab`: the `tunelab` command line."""

import sys

from tunelab.search.cli import main

sys.exit(main())
