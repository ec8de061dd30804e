"""``python -m polymix_cli`` is the ``polymix`` command."""

import sys

from .cli.main import main

sys.exit(main())
