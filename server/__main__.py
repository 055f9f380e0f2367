"""``python -m server``: the same as ``savedmodel serve``."""

import sys

from server.cli import main

sys.exit(main())
