"""``python -m experiments CONFIG.py`` is ``python -m experiments.run CONFIG.py``."""

import sys

from experiments.run import main

sys.exit(main())
