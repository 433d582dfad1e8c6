"""``python -m polypseg``: the same CLI as the ``polypseg`` console script."""

import sys

from polypseg.cli import main

sys.exit(main())
