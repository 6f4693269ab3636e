"""The component command lines and configuration files of an instance (pure: unit-tested)."""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Any, Callable

from tools.kube_api.instance import Instance

REPO_ROOT = Path(__file__).resolve().parents[2]
KWOK_STAGES_FILE = REPO_ROOT / "tools" / "kwok" / "stages.yaml"
KWOK_CONFIG_FILE = REPO_ROOT / "tools" / "kwok" / "kwok.yaml"
# kcm waits this long for a node's Lease renewal before marking it NotReady (kwok renews every 60 s).
NODE_MONITOR_GRACE_PERIOD = "300s"
START_ORDER = ["etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok"]
KWOK_NODE_ANNOTATION = "kwok.x-k8s.io/node"
SERVICE_CIDR = "10.96.0.0/16"
POD_CIDR = "10.64.0.1/12"  # kwok hands out pod IPs from here: room for far more than 30,000 pods


def service_ip(cidr: str = SERVICE_CIDR) -> str:
    """The first address of the service range: the ClusterIP of the `kubernetes` Service."""
    return str(next(ipaddress.ip_network(cidr).hosts()))


def etcd_args(inst: Instance, binary: Path | str) -> list[str]:
    pki = inst.pki
    client = f"https://127.0.0.1:{inst.etcd_client_port}"
    peer = f"http://127.0.0.1:{inst.etcd_peer_port}"
    return [
        str(binary),
        "--name=anvil",
        f"--data-dir={inst.dir / 'etcd'}",
        f"--listen-client-urls={client}",
        f"--advertise-client-urls={client}",
        f"--listen-peer-urls={peer}",
        f"--initial-advertise-peer-urls={peer}",
        f"--initial-cluster=anvil={peer}",
        "--initial-cluster-state=new",
        f"--cert-file={pki / 'etcd.crt'}",
        f"--key-file={pki / 'etcd.key'}",
        f"--trusted-ca-file={pki / 'ca.crt'}",
        "--client-cert-auth=true",
        # A test database: durability across power loss is not needed, speed is.
        "--unsafe-no-fsync=true",
        "--quota-backend-bytes=8589934592",
        "--log-level=warn",
    ]


def apiserver_args(inst: Instance, binary: Path | str) -> list[str]:
    pki = inst.pki
    return [
        str(binary),
        "--bind-address=127.0.0.1",
        "--advertise-address=127.0.0.1",
        f"--secure-port={inst.apiserver_port}",
        f"--etcd-servers=https://127.0.0.1:{inst.etcd_client_port}",
        f"--etcd-cafile={pki / 'ca.crt'}",
        f"--etcd-certfile={pki / 'apiserver-etcd-client.crt'}",
        f"--etcd-keyfile={pki / 'apiserver-etcd-client.key'}",
        f"--client-ca-file={pki / 'ca.crt'}",
        f"--tls-cert-file={pki / 'apiserver.crt'}",
        f"--tls-private-key-file={pki / 'apiserver.key'}",
        f"--cert-dir={inst.dir / 'apiserver-certs'}",
        "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
        f"--service-account-key-file={pki / 'sa.pub'}",
        f"--service-account-signing-key-file={pki / 'sa.key'}",
        f"--service-cluster-ip-range={SERVICE_CIDR}",
        "--authorization-mode=Node,RBAC",
        "--allow-privileged=true",
        # The `kubernetes` Endpoints cannot hold a loopback address; nothing here needs them.
        "--endpoint-reconciler-type=none",
        "--profiling=false",
        # Benchmarks create tens of thousands of objects: do not throttle a single-user test server.
        "--max-requests-inflight=1600",
        "--max-mutating-requests-inflight=800",
        "--v=1",
    ]


def _serving_args(kubeconfig: Path, port: int, cert_dir: Path) -> list[str]:
    """How kube-controller-manager and kube-scheduler serve their health endpoints on 127.0.0.1."""
    return [
        f"--authentication-kubeconfig={kubeconfig}",
        f"--authorization-kubeconfig={kubeconfig}",
        "--bind-address=127.0.0.1",
        f"--secure-port={port}",
        f"--cert-dir={cert_dir}",
    ]


def controller_manager_args(inst: Instance, binary: Path | str) -> list[str]:
    pki = inst.pki
    kubeconfig = inst.kubeconfig("kube-controller-manager")
    return [
        str(binary),
        f"--kubeconfig={kubeconfig}",
        *_serving_args(kubeconfig, inst.kcm_port, inst.dir / "kcm-certs"),
        "--leader-elect=false",
        "--controllers=*",
        "--use-service-account-credentials=true",
        f"--service-account-private-key-file={pki / 'sa.key'}",
        f"--root-ca-file={pki / 'ca.crt'}",
        f"--cluster-signing-cert-file={pki / 'ca.crt'}",
        f"--cluster-signing-key-file={pki / 'ca.key'}",
        "--kube-api-qps=500",
        "--kube-api-burst=1000",
        f"--node-monitor-grace-period={NODE_MONITOR_GRACE_PERIOD}",
        "--v=1",
    ]


def scheduler_config(inst: Instance) -> dict:
    return {
        "apiVersion": "kubescheduler.config.k8s.io/v1",
        "kind": "KubeSchedulerConfiguration",
        "clientConnection": {"kubeconfig": str(inst.kubeconfig("kube-scheduler")), "qps": 500, "burst": 1000},
        "leaderElection": {"leaderElect": False},
        # With 1000 nodes the default adaptive value scores ~40% of them per pod; 10% keeps scheduling
        # cheap on a small host. Clusters under 100 nodes are unaffected (at least 100 are scored).
        "percentageOfNodesToScore": 10,
    }


def scheduler_args(inst: Instance, binary: Path | str) -> list[str]:
    kubeconfig = inst.kubeconfig("kube-scheduler")
    return [
        str(binary),
        f"--config={inst.dir / 'kube-scheduler.yaml'}",
        *_serving_args(kubeconfig, inst.scheduler_port, inst.dir / "scheduler-certs"),
        "--v=1",
    ]


def kwok_args(inst: Instance, binary: Path | str, stages: Path = KWOK_STAGES_FILE) -> list[str]:
    return [
        str(binary),
        f"--kubeconfig={inst.kubeconfig('kwok')}",
        f"--config={KWOK_CONFIG_FILE}",
        f"--config={stages}",
        "--manage-all-nodes=false",
        f"--manage-nodes-with-annotation-selector={KWOK_NODE_ANNOTATION}=fake",
        f"--cidr={POD_CIDR}",
        "--node-ip=10.63.0.1",
        f"--server-address=127.0.0.1:{inst.kwok_port}",
        # kwok logs every lease and pod transition at INFO: megabytes per minute at 1000 nodes.
        "--v=WARN",
    ]


COMMANDS: dict[str, Callable[[Instance, Any], list[str]]] = {
    "etcd": etcd_args,
    "kube-apiserver": apiserver_args,
    "kube-controller-manager": controller_manager_args,
    "kube-scheduler": scheduler_args,
    "kwok": kwok_args,
}
