"""Shared pytest setup: the collection is importable as ansible_collections.anvil.cluster.

Imports in tests are absolute: repository packages from the repository root (`tests.helpers...`,
`tools...`; pytest puts the root on sys.path because `tests` is a package, and the Makefile exports
PYTHONPATH), the collection's own code as `ansible_collections.anvil.cluster...`. Test files never
change sys.path and never import a conftest: what tests share lives in tests/helpers/.
"""

from __future__ import annotations

from tests.helpers.ansible import ensure_collection_link

ensure_collection_link()
