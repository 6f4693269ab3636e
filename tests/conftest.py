"""Shared pytest setup: make `tools` and `tests.helpers` importable and expose the collection."""

from __future__ import annotations

import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from tests.helpers.ansible import ensure_collection_link

ensure_collection_link()
