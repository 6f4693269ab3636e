"""Benchmark of the local API server (tools/kube_api): time to ready and memory for 3 and 1000 kwok
nodes, then how fast pods are created, scheduled and made Running on the 1000-node instance.

It runs a separate instance ("bench", ports +5000) so the shared test instance is never disturbed.
Prints numbers; not a pass/fail test. Environment knobs:
  BENCH_NODES (default 1000), BENCH_PODS (default 30000), BENCH_POD_BUDGET_S (default 240),
  BENCH_DEPLOYMENTS (default 30; the pods are spread over this many Deployments).
"""

from __future__ import annotations

import json
import os
import sys
import time

from tools import kube_api as kapi

INSTANCE = kapi.Instance(name="bench", port_offset=5000)  # every port below 32768 (outgoing range)


def rss_report(inst: kapi.Instance) -> dict[str, float]:
    st = kapi.status(inst)
    out = {name: p["rss_mib"] for name, p in st.get("processes", {}).items()}
    out["total"] = round(sum(out.values()), 1)
    return out


def timed_fresh_start(nodes: int) -> tuple[float, dict]:
    kapi.down(INSTANCE)
    t0 = time.monotonic()
    kapi.up(INSTANCE, nodes, timeout=300)
    elapsed = time.monotonic() - t0
    return elapsed, rss_report(INSTANCE)


def create_pods(total: int, deployments: int, budget_s: float) -> dict:
    from kubernetes import client as k8s

    api = kapi.api_client(INSTANCE.admin_kubeconfig)
    apps, core = k8s.AppsV1Api(api), k8s.CoreV1Api(api)
    ns = "bench"
    core.create_namespace(k8s.V1Namespace(metadata=k8s.V1ObjectMeta(name=ns)))
    kapi.wait_for("default ServiceAccount in bench", lambda: _has_sa(core, ns), 60)
    per = max(1, total // deployments)
    t0 = time.monotonic()
    for i in range(deployments):
        labels = {"app": f"bench-{i}"}
        apps.create_namespaced_deployment(
            ns,
            k8s.V1Deployment(
                metadata=k8s.V1ObjectMeta(name=f"bench-{i}"),
                spec=k8s.V1DeploymentSpec(
                    replicas=per,
                    selector=k8s.V1LabelSelector(match_labels=labels),
                    template=k8s.V1PodTemplateSpec(
                        metadata=k8s.V1ObjectMeta(labels=labels),
                        spec=k8s.V1PodSpec(containers=[k8s.V1Container(name="c", image="registry.local/bench:1")]),
                    ),
                ),
            ),
        )
    wanted = per * deployments
    samples = []
    counts = {"created": 0, "scheduled": 0, "running": 0}
    while time.monotonic() - t0 < budget_s:
        try:
            counts = {
                "created": count_pods(ns),
                "scheduled": count_pods(ns, "spec.nodeName!="),
                "running": count_pods(ns, "status.phase=Running"),
            }
        except OSError as e:  # an overloaded apiserver answers 504 to long lists: try again later
            print(f"  count failed: {e}", flush=True)
            time.sleep(10)
            continue
        samples.append((round(time.monotonic() - t0, 1), counts))
        print(f"  t={samples[-1][0]:>6}s {counts}", flush=True)
        if counts["running"] >= wanted:
            break
        time.sleep(20)
    ready = counts["running"]
    elapsed = time.monotonic() - t0
    return {
        "pods_wanted": wanted,
        "pods_created": counts["created"],
        "pods_scheduled": counts["scheduled"],
        "pods_running": ready,
        "seconds": round(elapsed, 1),
        "pods_per_second": round(ready / elapsed, 1) if elapsed else 0,
        "complete": ready >= wanted,
    }


def count_pods(ns: str, field_selector: str = "") -> int:
    """Count pods with a metadata-only list (cheap even for 30,000 pods)."""
    import ssl
    import urllib.parse
    import urllib.request

    pki = INSTANCE.pki
    ctx = ssl.create_default_context(cafile=str(pki / "ca.crt"))
    ctx.load_cert_chain(str(pki / "admin.crt"), str(pki / "admin.key"))
    params = {"resourceVersion": "0"}  # served from the watch cache
    if field_selector:
        params["fieldSelector"] = field_selector
    query = urllib.parse.urlencode(params)
    req = urllib.request.Request(
        f"{INSTANCE.server}/api/v1/namespaces/{ns}/pods?{query}",
        headers={"Accept": "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1"},
    )
    with urllib.request.urlopen(req, context=ctx, timeout=120) as resp:
        return len(json.load(resp)["items"])


def _has_sa(core, ns: str) -> bool:
    try:
        core.read_namespaced_service_account("default", ns)
        return True
    except Exception:
        return False


def main() -> int:
    nodes = int(os.environ.get("BENCH_NODES", "1000"))
    pods = int(os.environ.get("BENCH_PODS", "30000"))
    budget = float(os.environ.get("BENCH_POD_BUDGET_S", "240"))
    deployments = int(os.environ.get("BENCH_DEPLOYMENTS", "30"))
    try:
        kapi.find_binaries()
    except kapi.BinariesMissing as e:
        print(f"bench_kube_api: {e}")
        return 1
    results: dict = {}
    try:
        secs, rss = timed_fresh_start(3)
        results["nodes_3"] = {"ready_seconds": round(secs, 2), "rss_mib": rss}
        print(f"3 nodes: ready in {secs:.1f}s, RSS {rss}", flush=True)
        t0 = time.monotonic()
        kapi.up(INSTANCE, 3)
        results["nodes_3"]["reuse_seconds"] = round(time.monotonic() - t0, 2)

        secs, rss = timed_fresh_start(nodes)
        results[f"nodes_{nodes}"] = {"ready_seconds": round(secs, 2), "rss_mib": rss}
        print(f"{nodes} nodes: ready in {secs:.1f}s, RSS {rss}", flush=True)
        if pods > 0:
            print(f"creating {pods} pods in {deployments} Deployments (budget {budget:.0f}s)", flush=True)
            results["pods"] = create_pods(pods, deployments, budget)
            results["pods"]["rss_mib_after"] = rss_report(INSTANCE)
    finally:
        kapi.down(INSTANCE)
        print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
