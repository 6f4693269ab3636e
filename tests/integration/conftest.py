"""Fixtures for integration tests against the local Kubernetes API (tools/kube_api).

`kube_api` (session scope) starts etcd + kube-apiserver + kube-controller-manager + kube-scheduler on
127.0.0.1:16443 with kwok simulating nodes, or reuses the instance that is already running (several
test sessions may share it: isolate tests with the `namespace` fixture, unique names and labels, and
never stop it from a test). The node count comes from ANVIL_KUBE_API_NODES (default 3); a running
instance with more nodes is reused as is, one with fewer is scaled up. An instance this session started
is stopped at its end unless ANVIL_KUBE_API_KEEP=1; one that was already running is left running.
If the binaries are not built the fixture FAILS and says to run `make artifacts-api`.
ANVIL_KUBE_API_INSTANCE / ANVIL_KUBE_API_PORT_OFFSET select a private instance instead (its own ports,
state directory and kubeconfigs), as they do for `python -m tools.kube_api` and the make targets.

What the simulated cluster does (tools/kwok/stages.yaml):
- nodes `kwok-node-<i>` are Ready, untainted, labelled `type=kwok`,
  `topology.kubernetes.io/zone=zone-<i % 3>`, with 32 CPU / 256Gi / 250 pods allocatable;
- a pod scheduled to a kwok node becomes Running and Ready at once;
- a pod stays Running but NEVER Ready if any container image contains `never-ready` or the pod has the
  label `anvil.test/ready: "false"`;
- a Running pod owned by a Job becomes Succeeded, so Jobs complete;
- a pod with a deletion timestamp is removed (finalizers dropped), so delete / evict / drain complete;
- DaemonSet pods run on every kwok node without tolerations;
- controllers of kube-controller-manager run (deployment, replicaset, statefulset, daemonset, job,
  namespace deletion, garbage collector, serviceaccount + token, disruption, resourcequota...);
  admission includes ResourceQuota, LimitRanger and PodSecurity; authorization is RBAC.

Pods can only be created in a namespace once its `default` ServiceAccount exists: the `namespace`
fixture waits for it; tests creating namespaces themselves should do the same.
"""

from __future__ import annotations

import os
import re
import subprocess
import uuid
from pathlib import Path

import pytest

from tests.helpers.kube import wait_for_default_service_account
from tests.helpers.wait import wait_until
from tools import kube_api as kapi


class KubeAPI:
    """Handle on the running local API (admin access unless a user kubeconfig is passed)."""

    def __init__(self, instance: kapi.Instance, nodes: list[str]):
        self.instance = instance
        self.kubeconfig = str(instance.admin_kubeconfig)
        self.server = instance.server
        self.nodes = nodes
        self._kubectl = kapi.kubectl_binary()

    def api_client(self):
        """A new kubernetes.client.ApiClient authenticated as cluster admin."""
        return kapi.api_client(self.kubeconfig)

    def user_kubeconfig(self, name: str, groups=()) -> str:
        """Kubeconfig (client certificate) of user `name` in `groups`; RBAC grants it nothing by itself."""
        return str(kapi.mint_user(self.instance, name, groups))

    def kubectl(self, *args: str, kubeconfig: str | None = None, check: bool = True, input: str | None = None):
        """Run kubectl against the local API; returns subprocess.CompletedProcess (text)."""
        cmd = [self._kubectl, "--kubeconfig", kubeconfig or self.kubeconfig, *args]
        proc = subprocess.run(cmd, capture_output=True, text=True, input=input, timeout=300, check=False)
        if check and proc.returncode != 0:
            raise AssertionError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
        return proc

    def add_nodes(self, names: list[str], labels: dict | None = None, taints: list | None = None) -> None:
        """Create extra kwok nodes (outside the shared pool) and wait until they are Ready."""
        client = kapi.Rest.for_instance(self.instance)
        kapi.create_nodes(client, names, pool="test", labels=labels, taints=taints)

        def ready() -> bool:
            nodes = {n["metadata"]["name"]: n for n in kapi.list_pool_nodes(client, pool="test")}
            return all(name in nodes and kapi.node_ready(nodes[name]) for name in names)

        wait_until(ready, 60, f"nodes {names} Ready")

    def delete_nodes(self, names: list[str]) -> None:
        kapi.delete_nodes(self.instance, names)


@pytest.fixture(scope="session")
def kube_api():
    nodes = int(os.environ.get("ANVIL_KUBE_API_NODES", "3"))
    inst = kapi.from_env()  # ANVIL_KUBE_API_INSTANCE / ANVIL_KUBE_API_PORT_OFFSET: a private instance
    was_running = kapi.is_healthy(inst)
    try:
        kapi.up(inst, nodes, allow_shrink=False)
    except kapi.BinariesMissing as e:
        pytest.fail(f"local API binaries are missing: {e}", pytrace=False)
    except kapi.KubeApiError as e:
        pytest.fail(f"local API did not start: {e}", pytrace=False)
    names = [n["metadata"]["name"] for n in kapi.list_pool_nodes(inst)]
    names.sort(key=lambda n: kapi.node_index(n) or 0)
    yield KubeAPI(inst, names)
    # A server this session started is stopped (nothing left behind); one that was already running is
    # kept, and ANVIL_KUBE_API_KEEP=1 keeps a started one for the next run.
    if not was_running and os.environ.get("ANVIL_KUBE_API_KEEP") != "1":
        kapi.down(inst)


def _namespace_name(nodeid: str) -> str:
    base = re.sub(r"[^a-z0-9-]+", "-", nodeid.rsplit("::", maxsplit=1)[-1].lower()).strip("-")[:40].strip("-")
    return f"t-{base}-{uuid.uuid4().hex[:6]}"


@pytest.fixture
def namespace(kube_api, request):
    """A fresh namespace (unique name, ready for pods) deleted after the test."""
    from kubernetes import client as k8s
    from kubernetes.client.rest import ApiException

    name = _namespace_name(request.node.nodeid)
    core = k8s.CoreV1Api(kube_api.api_client())
    core.create_namespace(
        k8s.V1Namespace(metadata=k8s.V1ObjectMeta(name=name, labels={"anvil.test/namespace": "true"}))
    )
    wait_for_default_service_account(core, name, 30)
    yield name
    try:
        core.delete_namespace(name, propagation_policy="Background")
    except ApiException as e:
        if e.status != 404:
            raise


@pytest.fixture(scope="session")
def kwok_stages_file() -> Path:
    return kapi.KWOK_STAGES_FILE
