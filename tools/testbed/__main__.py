"""python -m tools.testbed: the testbed tool."""

import sys

from tools.testbed.testbed import main

sys.exit(main())
