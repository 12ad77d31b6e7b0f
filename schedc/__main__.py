"""`python -m schedc ...` runs the command line.

May import: cli
Libraries at module level: none
"""

import sys

from .cli import main

sys.exit(main())
