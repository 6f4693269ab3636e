"""End-to-end fixtures: one testbed of real machines per test session, and the mirror they install from.

- `testbed` (session): a fresh testbed of ANVIL_TESTBED_NODES machines (default 3, one control plane),
  torn down at the end of the session. ANVIL_TESTBED_REUSE=1 reuses a running testbed of the right size
  and leaves it running; ANVIL_TESTBED_KEEP=1 leaves the session's testbed running for inspection.
- `mirror` (session): the mirror (tools/mirror.py, `make mirror-up`) serving packages, files and images
  on the bridge address; one this session started is stopped at its end unless ANVIL_MIRROR_KEEP=1.
  ANVIL_TESTBED_MIRROR_URL points the tests (and the inventory) at another one.

A test module that boots a testbed instance of its own (own state directory, bridge and machine names) is
listed in OWN_INSTANCE_MODULES (tests/helpers/testbed.py); `make e2e` runs it on a second pytest-xdist
worker, next to the tests of the shared testbed (both install from the one mirror).

Tests marked `testbed_lifecycle` stop, start, add or recreate machines; they are run first in the
session so that later tests get a settled testbed. Then test_cluster_core.py, whose first tests need hosts
without a cluster and which deploys the shared one; then the modules that use that cluster. Tests marked
`disaster` wipe the shared cluster's etcd and restore it; they are run last.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.helpers.mirror import default_url, shared_mirror
from tests.helpers.testbed import Testbed, e2e_worker_group, host_snapshot
from tools import testbed as tb

REPO_ROOT = Path(__file__).resolve().parents[2]


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "testbed_lifecycle: stops/starts/adds/recreates testbed machines (run first)")
    config.addinivalue_line("markers", "disaster: wipes the shared cluster's etcd and restores it (run last)")


def pytest_collection_modifyitems(session: pytest.Session, config: pytest.Config, items: list[pytest.Item]) -> None:
    def order(item: pytest.Item) -> int:
        if item.get_closest_marker("testbed_lifecycle"):
            return 0
        if item.get_closest_marker("disaster"):
            return 3
        # test_cluster_core.py deploys the shared cluster (its first tests need hosts without one); the
        # other modules re-run site.yml on that cluster.
        return 1 if item.module.__name__.rsplit(".", 1)[-1] == "test_cluster_core" else 2

    items.sort(key=order)


# `make e2e` runs two pytest-xdist workers with `--dist loadgroup`: the scheduler below gives each module of
# OWN_INSTANCE_MODULES (tests/helpers/testbed.py) a worker of its own and keeps every other test on the other
# worker, in the order above. (xdist's own loadgroup reads xdist_group marks through a node id that pytest 9
# no longer uses.)
@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log):
    if config.getvalue("dist") != "loadgroup":
        return None
    from xdist.scheduler import LoadScopeScheduling

    class ByTestbed(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return e2e_worker_group(nodeid)

    return ByTestbed(config, log)


# Marks of tests that boot a testbed of their own shape: `ha` (3 control planes), `registry_cluster` (a
# cluster that runs from the private registry, on hosts the shared cluster must not be on), `awx` (jobs
# run by ansible-runner in the anvil-ee image, on a testbed instance of their own) and `upgrade` (a cluster
# of the older Kubernetes release on a testbed instance of its own; its images are built by
# `make artifacts-upgrade` only).
OWN_TESTBED = ("ha", "registry_cluster", "awx", "upgrade")


def pytest_collection_finish(session: pytest.Session) -> None:
    """Tests with an OWN_TESTBED mark never run in the same session as other tests (`make e2e` deselects
    them; `make e2e-ha` runs -m ha, `make e2e-registry` -m registry_cluster, `make e2e-upgrade` -m upgrade)."""
    for mark in OWN_TESTBED:
        own = [item.nodeid for item in session.items if item.get_closest_marker(mark)]
        if own and len(own) != len(session.items):
            raise pytest.UsageError(
                f"the {mark} tests need a testbed of their own: select them alone (-m {mark}) "
                f'or deselect them (-m "not {mark}")'
            )


def _nodes() -> int:
    return int(os.environ.get("ANVIL_TESTBED_NODES", "3"))


@pytest.fixture(scope="session")
def testbed(mirror) -> Testbed:
    # The mirror first: it listens on the default testbed's bridge, which `down` keeps only while the mirror
    # runs. Started after `down`, a mirror another session (the lifecycle worker) brings up at the same time
    # could lose the bridge it has just created; started before, `down` and `up` find it in place.
    if os.geteuid() != 0:
        pytest.fail("e2e tests need root: the testbed creates network devices and machines")
    nodes = _nodes()
    wanted = {name for name, _ in tb.machine_names(nodes, 1)}
    running = {m.name for m in tb.load_machines() if m.running()}
    reuse = os.environ.get("ANVIL_TESTBED_REUSE") == "1" and running == wanted
    bed = Testbed(inventory=tb.INVENTORY)
    if not reuse:
        tb.build_rootfs()  # a cold cache is not part of the measured warm start
        tb.down()  # leftovers of an earlier (maybe crashed) run
        bed.clean_host = host_snapshot()
        bed.up_seconds = bed.up(nodes)
        bed.created = True
    bed.refresh()
    yield bed
    if bed.created and os.environ.get("ANVIL_TESTBED_KEEP") != "1":
        tb.down()


@pytest.fixture(scope="session")
def mirror():
    """Base URL of a running mirror whose /apt/ repository answers (started with tools/mirror.py if needed,
    shared with the other test sessions on this host: tests/helpers/mirror.py)."""
    with shared_mirror(default_url()) as url:
        yield url
