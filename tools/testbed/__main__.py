"""python -m tools.testbed: the testbed tool."""

import sys

from tools.testbed.cli import main

sys.exit(main())
