"""``python -m netdsl``: the same as the ``netdsl`` command."""

import sys

from .cli import main

sys.exit(main())
