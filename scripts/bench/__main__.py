"""``python -m scripts.bench``: see the package docstring."""

import sys

from .run import main

sys.exit(main())
