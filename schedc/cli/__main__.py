"""`python -m schedc.cli ...` runs the command line, as `schedc ...` does."""

import sys

from .main import main

sys.exit(main())
