"""python -m tools.kube_api: the local Kubernetes API's command line."""

import sys

from tools.kube_api.cli import main

sys.exit(main())
