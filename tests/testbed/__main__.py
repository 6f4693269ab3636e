"""python -m tests.testbed: the testbed tool."""

import sys

from tests.testbed.testbed import main

sys.exit(main())
