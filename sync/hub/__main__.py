"""``python -m sync.hub`` is ``edge-hub``."""

import sys

from sync.hub.cli import main

sys.exit(main())
