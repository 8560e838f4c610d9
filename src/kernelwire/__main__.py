"""``python -m kernelwire``: the ``kernelwire`` command."""

import sys

from .cli import main

sys.exit(main())
