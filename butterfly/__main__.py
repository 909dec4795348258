"""python -m butterfly: the `butterfly` command."""

import sys

from .cli import main

sys.exit(main())
