"""Smoke test of a fresh cluster (used by `make demo`): a Deployment from the mirror, a Service, DNS.

Runs from the controller with the admin kubeconfig: two web pods (busybox httpd from the flannel
image, the only image with a shell the mirror carries), a ClusterIP Service, and a client pod that
resolves kubernetes.default and fetches the Service by name. Exits non-zero when anything fails.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import yaml
from kubernetes import client, config

NS = "anvil-smoke"
REPO = Path(__file__).resolve().parents[1]


def wait(fn, timeout, what):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = fn()
        if value:
            return value
        time.sleep(2)
    raise SystemExit(f"smoke test: timed out waiting for {what}")


def main(kubeconfig: str) -> int:
    versions = yaml.safe_load((REPO / "vars/versions.yml").read_text())["anvil_versions"]
    inventory_path = os.environ.get("ANVIL_TESTBED_INVENTORY", str(REPO / "inventories/testbed/hosts.yml"))
    inventory = yaml.safe_load(Path(inventory_path).read_text())
    repo = inventory["all"]["vars"]["anvil_image_repository"]
    image = f"{repo}/{versions['flannel']['image']['name']}:{versions['flannel']['image']['tag']}"
    api_client = config.new_client_from_config(kubeconfig)
    core, apps = client.CoreV1Api(api_client), client.AppsV1Api(api_client)
    started = time.monotonic()
    try:
        core.delete_namespace(NS)
        wait(lambda: NS not in [n.metadata.name for n in core.list_namespace().items], 120, "old namespace")
    except client.ApiException as exc:
        if exc.status != 404:
            raise
    core.create_namespace({"metadata": {"name": NS}})
    labels = {"app": "web"}
    apps.create_namespaced_deployment(
        NS,
        {
            "metadata": {"name": "web"},
            "spec": {
                "replicas": 2,
                "selector": {"matchLabels": labels},
                "template": {
                    "metadata": {"labels": labels},
                    "spec": {
                        "containers": [
                            {
                                "name": "web",
                                "image": image,
                                "command": [
                                    "sh",
                                    "-c",
                                    "mkdir -p /w && hostname > /w/index.html && exec httpd -f -p 8080 -h /w",
                                ],
                            }
                        ]
                    },
                },
            },
        },
    )
    core.create_namespaced_service(
        NS, {"metadata": {"name": "web"}, "spec": {"selector": labels, "ports": [{"port": 80, "targetPort": 8080}]}}
    )
    wait(
        lambda: (apps.read_namespaced_deployment(name="web", namespace=NS).status.ready_replicas or 0) == 2,
        180,
        "web pods",
    )
    script = (
        "nslookup kubernetes.default.svc.cluster.local && "
        # busybox nc (the image's static wget crashes on name lookups)
        f"printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 5 web.{NS}.svc.cluster.local 80 | grep -q '^web-'"
        " && echo SMOKE-OK"
    )
    core.create_namespaced_pod(
        NS,
        {
            "metadata": {"name": "client"},
            "spec": {
                "restartPolicy": "Never",
                "containers": [{"name": "c", "image": image, "command": ["sh", "-c", script]}],
            },
        },
    )
    phase = wait(
        lambda: (
            core.read_namespaced_pod(name="client", namespace=NS).status.phase in ("Succeeded", "Failed")
            and core.read_namespaced_pod(name="client", namespace=NS).status.phase
        ),
        120,
        "client pod",
    )
    log = core.read_namespaced_pod_log(name="client", namespace=NS)
    print(log.strip())
    if phase != "Succeeded" or "SMOKE-OK" not in log:
        print(f"smoke test FAILED (client pod {phase})")
        return 1
    core.delete_namespace(NS)
    print(f"smoke test passed in {time.monotonic() - started:.1f} s: Deployment, Service, DNS from a pod")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
