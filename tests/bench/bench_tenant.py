"""Benchmark of anvil.cluster.tenant: reconcile many tenants in one task, side by side with the same
objects created by a kubernetes.core.k8s loop. Prints numbers; not a pass/fail test.

Every tenant has one namespace with a ResourceQuota (5 keys), a LimitRange, two RoleBindings (edit, view)
and two NetworkPolicies (isolation + allow-from-monitoring): 7 objects per tenant.

Runs, each through real ansible-playbook:
  1. anvil.cluster.tenant with `tenants` (N entries): first run (creates everything)
  2. the same again: no-op run (must report changed=false)
  3. a quota change in every tenant, in check mode (server-side dry run), then for real
  4. one tenant's quota changed (the other N-1 as they are)
  5. kubernetes.core.k8s with `loop` over the same N tenants (different names), one item per tenant
     whose `definition` is the list of its 7 objects: first run (and, with BENCH_K8S_NOOP=1, the re-run)

It uses its own API instance ("bench-tenant", ports +20000, 1 kwok node) so the shared test instance is
neither loaded with 14000 objects nor asked to delete 2000 namespaces; the instance is stopped at the end
(BENCH_KEEP=1 keeps it). Environment knobs: BENCH_TENANTS (default 1000), BENCH_K8S_TENANTS (default
BENCH_TENANTS; 0 skips the kubernetes.core.k8s runs), BENCH_CONCURRENCY (module option, default 8),
BENCH_K8S_NOOP (default 0), BENCH_INSTANCE / BENCH_PORT_OFFSET (API instance name and port offset).
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

from tests.helpers.ansible import ensure_collection_link, kube_play, run_playbook
from tools import kube_api as kapi

ensure_collection_link()
from ansible_collections.anvil.cluster.plugins.module_utils.tenant_spec import (
    normalize_tenant,
    render_tenant,
)

INSTANCE = kapi.Instance(
    name=os.environ.get("BENCH_INSTANCE", "bench-tenant"), port_offset=int(os.environ.get("BENCH_PORT_OFFSET", "20000"))
)
N = int(os.environ.get("BENCH_TENANTS", "1000"))
K8S_N = int(os.environ.get("BENCH_K8S_TENANTS", str(N)))
CONCURRENCY = int(os.environ.get("BENCH_CONCURRENCY", "8"))
WORKDIR = REPO / "build" / "bench-tenant"


def tenant(name: str, pods: int = 50) -> dict:
    return {
        "name": name,
        "quota": {
            "requests.cpu": "4",
            "limits.cpu": "8",
            "requests.memory": "8Gi",
            "limits.memory": "16Gi",
            "pods": pods,
        },
        "limits": {
            "default_request": {"cpu": "100m", "memory": "128Mi"},
            "default_limit": {"cpu": "500m", "memory": "512Mi"},
            "max_limit_request_ratio": {"cpu": 4},
        },
        "members": [
            {"kind": "Group", "name": f"{name}-devs", "role": "edit"},
            {"kind": "User", "name": f"auditor-{name}", "role": "view"},
        ],
        "allow_from_namespaces": ["monitoring"],
    }


def timed(label: str, plays, extra_vars, check=False):
    t0 = time.monotonic()
    res = run_playbook(plays, extra_vars=extra_vars, check=check, workdir=WORKDIR, timeout=7200)
    elapsed = time.monotonic() - t0
    if res.rc != 0:
        print(f"{label}: FAILED rc={res.rc}\n{res.stdout[-3000:]}\n{res.stderr[-3000:]}", flush=True)
        raise SystemExit(1)
    print(f"{label}: {elapsed:.1f}s (changed={res.changed()})", flush=True)
    return elapsed, res


def module_result(res) -> dict:
    return res.result("tenants")


def count_objects(kubeconfig: str, prefix: str) -> int:
    client = kapi.api_client(kubeconfig)
    total = 0
    paths = [
        "/api/v1/namespaces",
        "/api/v1/resourcequotas",
        "/api/v1/limitranges",
        "/apis/rbac.authorization.k8s.io/v1/rolebindings",
        "/apis/networking.k8s.io/v1/networkpolicies",
    ]
    from ansible_collections.anvil.cluster.plugins.module_utils.k8s.client import KubeClient

    rest = KubeClient(client)
    for path in paths:
        cont = None
        while True:
            query = {"limit": 2000}
            if cont:
                query["continue"] = cont
            page = rest.request("GET", path, query)
            for item in page.get("items", []):
                meta = item["metadata"]
                name = meta.get("namespace") or meta["name"]
                if name.startswith(prefix):
                    total += 1
            cont = page["metadata"].get("continue")
            if not cont:
                break
    return total


def main() -> None:
    WORKDIR.mkdir(parents=True, exist_ok=True)
    t0 = time.monotonic()
    kapi.up(INSTANCE, 1, timeout=300)
    kubeconfig = str(INSTANCE.admin_kubeconfig)
    print(f"API instance {INSTANCE.name} ready in {time.monotonic() - t0:.1f}s at {INSTANCE.server}", flush=True)
    results: dict[str, float] = {}
    try:
        tenants = [tenant(f"ta-{i:04d}") for i in range(N)]
        task = {
            "name": "tenants",
            "anvil.cluster.tenant": {"tenants": "{{ bench_tenants }}", "concurrency": CONCURRENCY},
        }
        results["tenant_first"], res = timed(
            f"anvil.cluster.tenant, {N} tenants, first run", kube_play(task, kubeconfig), {"bench_tenants": tenants}
        )
        stats = module_result(res)["stats"]
        print(f"  objects created: {stats['created']}, API requests: {stats['api_requests']}", flush=True)
        assert stats["created"] == 7 * N, stats
        results["tenant_noop"], res = timed(
            f"anvil.cluster.tenant, {N} tenants, no-op run", kube_play(task, kubeconfig), {"bench_tenants": tenants}
        )
        stats = module_result(res)["stats"]
        assert res.changed() == 0 and stats["created"] == stats["updated"] == 0, stats
        print(f"  API requests: {stats['api_requests']}", flush=True)
        changed = [tenant(f"ta-{i:04d}", pods=60) for i in range(N)]
        results["tenant_check"], res = timed(
            f"anvil.cluster.tenant, {N} tenants, quota change, check mode",
            kube_play(task, kubeconfig),
            {"bench_tenants": changed},
            check=True,
        )
        assert module_result(res)["stats"]["updated"] == N
        results["tenant_update"], res = timed(
            f"anvil.cluster.tenant, {N} tenants, quota change", kube_play(task, kubeconfig), {"bench_tenants": changed}
        )
        assert module_result(res)["stats"]["updated"] == N
        one = list(changed)
        one[N // 2] = tenant(f"ta-{N // 2:04d}", pods=70)
        results["tenant_one"], res = timed(
            f"anvil.cluster.tenant, {N} tenants, one tenant's quota changed",
            kube_play(task, kubeconfig),
            {"bench_tenants": one},
        )
        stats = module_result(res)["stats"]
        assert stats["updated"] == 1 and stats["created"] == 0, stats
        print(f"  API requests: {stats['api_requests']}", flush=True)
        print(f"  objects in the cluster (ta-*): {count_objects(kubeconfig, 'ta-')}", flush=True)

        # The same objects through kubernetes.core.k8s, one loop item per tenant.
        if K8S_N:
            definitions = [render_tenant(normalize_tenant(tenant(f"tk-{i:04d}"))) for i in range(K8S_N)]
            k8s_task = {
                "name": "k8s",
                "kubernetes.core.k8s": {"state": "present", "definition": "{{ item }}"},
                "loop": "{{ bench_definitions }}",
                "loop_control": {"label": "{{ item[0].metadata.name }}"},
            }
            results["k8s_first"], _res = timed(
                f"kubernetes.core.k8s loop, {K8S_N} tenants, first run",
                kube_play(k8s_task, kubeconfig),
                {"bench_definitions": definitions},
            )
            if os.environ.get("BENCH_K8S_NOOP") == "1":
                results["k8s_noop"], _res = timed(
                    f"kubernetes.core.k8s loop, {K8S_N} tenants, re-run",
                    kube_play(k8s_task, kubeconfig),
                    {"bench_definitions": definitions},
                )
            print(f"  objects in the cluster (tk-*): {count_objects(kubeconfig, 'tk-')}", flush=True)
    finally:
        if os.environ.get("BENCH_KEEP") != "1":
            kapi.down(INSTANCE)

    print("\nsummary (wall time of ansible-playbook, seconds):")
    per = {"tenant_first": N, "k8s_first": K8S_N}
    for key, value in results.items():
        extra = f"  ({value / per[key] * 1000:.0f} ms/tenant)" if key in per else ""
        print(f"  {key:15s} {value:8.1f}{extra}")
    if "k8s_first" in results and "tenant_first" in results:
        speedup = (results["k8s_first"] / K8S_N) / (results["tenant_first"] / N)
        print(f"  first run per tenant: anvil.cluster.tenant is {speedup:.1f}x faster than a kubernetes.core.k8s loop")
    print(json.dumps({"tenants": N, "k8s_tenants": K8S_N, "concurrency": CONCURRENCY, **results}))


if __name__ == "__main__":
    main()
