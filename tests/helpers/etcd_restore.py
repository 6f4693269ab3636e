"""What the backup -> disaster -> restore e2e tests share (1 control plane in make e2e, 3 in make e2e-ha):
the workload whose return proves a restore, the disaster itself and the checks afterwards."""

from __future__ import annotations

import base64
import json
import shlex

from tests.helpers.testbed import sh
from tests.helpers.wait import wait_until

KUBECTL = "kubectl --kubeconfig /etc/kubernetes/admin.conf --request-timeout=20s"
ETCDCTL = (
    "etcdctl --endpoints=https://127.0.0.1:2379 --cacert=/etc/kubernetes/pki/etcd/ca.crt"
    " --cert=/etc/kubernetes/pki/etcd/healthcheck-client.crt --key=/etc/kubernetes/pki/etcd/healthcheck-client.key"
)
SECRET_VALUE = "s3cr3t-" + base64.b32encode(b"restore").decode().lower()
CONFIGMAPS = {
    ("restore-a", "settings"): {"mode": "production", "replicas": "2"},
    ("restore-b", "other"): {"color": "blue"},
}


def create_workload(testbed, cp: str, image: str) -> None:
    """Two namespaces, ConfigMaps, a Secret and a Deployment of 2 pods, until the Deployment is rolled out."""
    docs = [{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}} for ns in ("restore-a", "restore-b")]
    docs += [
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "namespace": ns}, "data": data}
        for (ns, name), data in CONFIGMAPS.items()
    ]
    docs.append(
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "db", "namespace": "restore-a"},
            "stringData": {"password": SECRET_VALUE},
        }
    )
    docs.append(
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "web", "namespace": "restore-a"},
            "spec": {
                "replicas": 2,
                "selector": {"matchLabels": {"app": "web"}},
                "template": {
                    "metadata": {"labels": {"app": "web"}},
                    "spec": {"containers": [{"name": "pause", "image": image}]},
                },
            },
        }
    )
    manifest = "\n---\n".join(json.dumps(d) for d in docs)
    sh(testbed, cp, f"echo {shlex.quote(manifest)} | {KUBECTL} apply -f -")
    sh(testbed, cp, f"{KUBECTL} -n restore-a rollout status deployment/web --timeout=180s")


def etcd_keys(testbed, cp: str) -> int:
    return int(sh(testbed, cp, f"{ETCDCTL} get /registry --prefix --keys-only | grep -c ^/registry || true").strip())


def wipe_etcd(testbed, cps: list[str]) -> None:
    """The disaster: the workload is deleted, then etcd is stopped on every control plane, its data
    directory wiped, and started again (the first member starts an empty cluster)."""
    sh(testbed, cps[0], f"{KUBECTL} delete namespace restore-a restore-b --wait=true --timeout=120s")
    for cp in cps:
        sh(
            testbed,
            cp,
            "mkdir -p /root/held && mv /etc/kubernetes/manifests/etcd.yaml /root/held/"
            " && while crictl ps -q --name '^etcd$' | grep -q .; do sleep 1; done && rm -rf /var/lib/etcd/member",
        )
    for cp in cps:
        sh(testbed, cp, "mv /root/held/etcd.yaml /etc/kubernetes/manifests/")


def wait_nearly_empty(testbed, cp: str, before: int) -> int:
    def nearly_empty():
        found = etcd_keys(testbed, cp)
        return found if found < before / 3 else None

    return wait_until(nearly_empty, 180, f"etcd on {cp} to start (nearly) empty")


def assert_restored(testbed, cp: str, nodes: int) -> None:
    """Every object back with the same content, the Secret decrypted and still encrypted at rest, the
    Deployment's pods Running, every node Ready."""
    for (ns, name), data in CONFIGMAPS.items():
        assert json.loads(sh(testbed, cp, f"{KUBECTL} -n {ns} get configmap {name} -o json"))["data"] == data
    secret = json.loads(sh(testbed, cp, f"{KUBECTL} -n restore-a get secret db -o json"))
    assert base64.b64decode(secret["data"]["password"]).decode() == SECRET_VALUE
    raw = sh(testbed, cp, f"{ETCDCTL} get /registry/secrets/restore-a/db --print-value-only | head -c 21")
    assert raw.startswith("k8s:enc:secretbox:v1:"), raw
    sh(testbed, cp, f"{KUBECTL} -n restore-a rollout status deployment/web --timeout=180s")
    pods = json.loads(sh(testbed, cp, f"{KUBECTL} -n restore-a get pods -l app=web -o json"))["items"]
    assert len(pods) == 2 and all(p["status"]["phase"] == "Running" for p in pods), [p["status"] for p in pods]
    items = json.loads(sh(testbed, cp, f"{KUBECTL} get nodes -o json"))["items"]
    ready = [n for n in items if any(c["type"] == "Ready" and c["status"] == "True" for c in n["status"]["conditions"])]
    assert len(items) == nodes and len(ready) == nodes, [n["metadata"]["name"] for n in ready]
    # The wiped data directory was kept aside, not deleted.
    assert sh(testbed, cp, "ls -d /var/lib/etcd.before-restore-*").strip()
