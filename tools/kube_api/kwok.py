"""The kwok node pool: node manifests, scaling the pool, waiting for Ready nodes."""

from __future__ import annotations

from typing import Iterable

from tools.kube_api.components import KWOK_NODE_ANNOTATION
from tools.kube_api.errors import log
from tools.kube_api.health import wait_for
from tools.kube_api.instance import Instance
from tools.kube_api.rest import Rest
from tools.kube_api.state import dead_processes, load_state

NODE_PREFIX = "kwok-node-"
NODE_POOL_LABEL = "anvil.test/kwok-pool"
NODE_CAPACITY = {"cpu": "32", "memory": "256Gi", "pods": "250", "ephemeral-storage": "1Ti"}


def node_name(index: int) -> str:
    return f"{NODE_PREFIX}{index}"


def node_index(name: str) -> int | None:
    if not name.startswith(NODE_PREFIX):
        return None
    rest = name[len(NODE_PREFIX) :]
    return int(rest) if rest.isdigit() else None


def node_manifest(name: str, pool: str = "default", labels: dict | None = None, taints: list | None = None) -> dict:
    """A Node that kwok manages: Ready once kwok sees it, untainted unless taints are given."""
    index = node_index(name)
    zone = f"zone-{index % 3}" if index is not None else "zone-0"
    all_labels = {
        "kubernetes.io/hostname": name,
        "kubernetes.io/os": "linux",
        "kubernetes.io/arch": "amd64",
        "node.kubernetes.io/instance-type": "kwok",
        "topology.kubernetes.io/zone": zone,
        "type": "kwok",
        NODE_POOL_LABEL: pool,
    }
    all_labels.update(labels or {})
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "labels": all_labels,
            "annotations": {KWOK_NODE_ANNOTATION: "fake", "node.alpha.kubernetes.io/ttl": "0"},
        },
        "spec": {"taints": taints} if taints else {},
        "status": {
            "allocatable": dict(NODE_CAPACITY),
            "capacity": dict(NODE_CAPACITY),
            "nodeInfo": {
                "architecture": "amd64",
                "operatingSystem": "linux",
                "kubeletVersion": "kwok",
                "containerRuntimeVersion": "kwok",
                "kernelVersion": "kwok",
                "osImage": "kwok",
                "kubeProxyVersion": "",
                "bootID": "",
                "machineID": "",
                "systemUUID": "",
            },
        },
    }


def plan_node_scaling(existing: Iterable[str], wanted: int) -> tuple[list[str], list[str]]:
    """(names to create, names to delete) so the pool is exactly kwok-node-0..wanted-1."""
    have = {n for n in existing if node_index(n) is not None}
    want = {node_name(i) for i in range(wanted)}
    create = sorted(want - have, key=node_index)
    delete = sorted(have - want, key=node_index)
    return create, delete


def list_pool_nodes(client, pool: str = "default") -> list[dict]:
    """Nodes of a kwok pool as dicts (client: Rest, Instance or kubernetes ApiClient)."""
    _, data = Rest.of(client).get(f"/api/v1/nodes?labelSelector={NODE_POOL_LABEL}%3D{pool}")
    return data["items"]


def node_ready(node: dict) -> bool:
    for cond in node.get("status", {}).get("conditions") or []:
        if cond.get("type") == "Ready":
            return cond.get("status") == "True"
    return False


def create_nodes(
    client, names: list[str], pool: str = "default", labels: dict | None = None, taints: list | None = None
) -> None:
    """Create kwok nodes (an existing node of the same name is left as it is)."""
    bodies = [("/api/v1/nodes", node_manifest(name, pool, labels, taints)) for name in names]
    Rest.of(client).many("POST", bodies, ok=(200, 201, 409))


def delete_nodes(client, names: list[str]) -> None:
    Rest.of(client).many("DELETE", [(f"/api/v1/nodes/{name}", None) for name in names], ok=(200, 202, 404))


def scale_nodes(inst: Instance, client, wanted: int, allow_shrink: bool = True) -> list[str]:
    """Make the default pool exactly kwok-node-0..wanted-1 (or at least that many when not shrinking)."""
    existing = [n["metadata"]["name"] for n in list_pool_nodes(client)]
    create, delete = plan_node_scaling(existing, wanted)
    if create:
        log(f"creating {len(create)} kwok node(s)")
        create_nodes(client, create)
    if delete and allow_shrink:
        log(f"deleting {len(delete)} kwok node(s)")
        delete_nodes(client, delete)
    return sorted({*existing, *create} - (set(delete) if allow_shrink else set()), key=lambda n: node_index(n) or 0)


def wait_nodes_ready(inst: Instance, client, names: list[str], timeout: float) -> None:
    wanted = set(names)

    def ready() -> bool:
        nodes = list_pool_nodes(client)
        return wanted <= {n["metadata"]["name"] for n in nodes if node_ready(n)}

    state = load_state(inst) or {}
    wait_for(
        f"{len(wanted)} Ready kwok node(s)",
        ready,
        timeout,
        alive=lambda: ", ".join(dead_processes(state)) or None,
    )
