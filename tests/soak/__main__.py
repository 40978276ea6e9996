"""``python -m soak`` (with ``tests/`` on the path, as ``make soak`` runs it): see soak/runner.py."""

import sys

from soak.runner import main

sys.exit(main())
