"""``python -m jupyter_deploy.control serve [--address HOST:PORT] [--home PATH]``: run the daemon."""

import sys

from .daemon import main

sys.exit(main())
