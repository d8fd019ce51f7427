"""``python -m fundiff.cli`` (as torchrun starts it): the ``fundiff`` command."""

import sys

from fundiff.cli import main

sys.exit(main())
