"""How `make e2e` splits the e2e tests over its two workers (tests/helpers/testbed.py, tests/e2e/conftest.py)."""

from __future__ import annotations

import ast

import pytest

from tests.helpers.ansible import REPO_ROOT
from tests.helpers.testbed import OWN_INSTANCE_MODULES, e2e_worker_group

E2E = REPO_ROOT / "tests" / "e2e"


@pytest.mark.parametrize(
    ("nodeid", "group"),
    [
        ("tests/e2e/test_node_lifecycle.py::test_add_worker_to_running_cluster", "test_node_lifecycle.py"),
        ("tests/e2e/test_cluster_core.py::test_preflight_refuses_bad_inventory[no_workers]", "shared"),
        ("tests/e2e/test_etcd_backup.py::test_restore_brings_back_every_object_after_etcd_is_wiped", "shared"),
        # A parametrized id that happens to contain the file name does not move a test.
        ("tests/e2e/test_registry.py::test_x[test_node_lifecycle.py]", "shared"),
    ],
)
def test_each_test_gets_the_worker_of_its_testbed(nodeid, group):
    assert e2e_worker_group(nodeid) == group


@pytest.mark.parametrize("module", OWN_INSTANCE_MODULES)
def test_a_module_with_its_own_instance_never_touches_the_shared_testbed(module):
    """Run next to the shared testbed's tests, a module that asked for the `testbed` fixture would boot,
    stop or reset the shared machines under them."""
    tree = ast.parse((E2E / module).read_text())
    users = [
        node.name
        for node in ast.walk(tree)
        if isinstance(node, ast.FunctionDef) and "testbed" in [a.arg for a in node.args.args]
    ]
    assert users == []
