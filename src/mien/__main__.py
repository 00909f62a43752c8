"""``python -m mien`` = the ``mien`` command."""

import sys

from mien.cli.main import main

sys.exit(main())
