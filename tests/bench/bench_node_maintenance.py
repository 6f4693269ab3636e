#!/usr/bin/env python3
"""Benchmark anvil.cluster.node_maintenance against kubernetes.core.k8s_drain on a local API (kwok nodes).

Both modules run through ansible-playbook the same way, in the same run, on the same cluster:

1. drain one node carrying a 100-replica Deployment (repeated, alternating the modules);
2. load the cluster with NODES nodes and PODS pods (bound pods, spread evenly), then
   - time anvil's drain plan for one node (check mode through Ansible, and the same planning code
     in-process, median of several nodes), and
   - drain one loaded node with each module.

API requests are counted for both modules by the same hook (a sitecustomize that wraps urllib3 in the
module process), not taken from either module's own report. Uses a separate local API instance
(`bench-nm`, port offset 11000) so shared test instances are never disturbed, and stops it at the end
unless --keep.

    python -m tests.bench.bench_node_maintenance                       # 1000 nodes / 30,000 pods
    python -m tests.bench.bench_node_maintenance --nodes 5000 --pods 150000
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import textwrap
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]

from tests.helpers.ansible import ensure_collection_link, run_playbook
from tests.helpers.wait import wait_until

ensure_collection_link()

from ansible_collections.anvil.cluster.plugins.module_utils.drain import DrainApi, plan_pods
from ansible_collections.anvil.cluster.plugins.module_utils.k8s.client import ApiError, KubeClient

from tools import kube_api as kapi

COUNTER = textwrap.dedent(
    '''
    """Benchmark hook: count the HTTP requests a Python process makes (only when ANVIL_BENCH_API_LOG is set)."""
    import os

    if os.environ.get("ANVIL_BENCH_API_LOG"):
        import atexit
        import json
        import re
        import threading

        import urllib3.connectionpool as _cp

        _counts, _lock, _orig = {}, threading.Lock(), _cp.HTTPConnectionPool.urlopen

        def _kind(url):
            parts = [p for p in url.split("?")[0].split("/") if p]
            if parts[:1] == ["api"]:
                parts = parts[2:]
            elif parts[:1] == ["apis"]:
                parts = parts[3:]
            if parts[:1] == ["namespaces"] and len(parts) > 2:
                parts = parts[2:]
            if not parts:
                return "discovery"
            if re.match(r"^(openapi|version|swagger)", parts[0]):
                return "discovery"
            name = "one" if len(parts) > 1 else "list"
            return parts[0] + ("/" + parts[2] if len(parts) > 2 else "") + " (" + name + ")"

        def _urlopen(self, method, url, *args, **kwargs):
            key = method + " " + _kind(url)
            with _lock:
                _counts[key] = _counts.get(key, 0) + 1
            return _orig(self, method, url, *args, **kwargs)

        _cp.HTTPConnectionPool.urlopen = _urlopen

        @atexit.register
        def _dump():
            if _counts:
                with open(os.environ["ANVIL_BENCH_API_LOG"], "a") as out:
                    out.write(json.dumps(_counts) + "\\n")
    '''
)

INSTANCE = kapi.Instance(name="bench-nm", port_offset=11000)
BENCH_NS = "bench-nm"


def log(msg):
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


class Runner:
    def __init__(self, rest: DrainApi, kubeconfig: str, workdir: Path):
        self.rest = rest
        self.kubeconfig = kubeconfig
        self.workdir = workdir
        (workdir / "sitecustomize.py").write_text(COUNTER)

    def play(self, module, args, check=False):
        """Run one module task; return (result, wall seconds, api request counts from the hook)."""
        counts_file = self.workdir / f"calls-{uuid.uuid4().hex}.jsonl"
        env = {
            "ANVIL_BENCH_API_LOG": str(counts_file),
            "PYTHONPATH": os.pathsep.join([str(self.workdir), str(REPO_ROOT)]),
            # kubernetes.core caches API discovery here; keep it out of the user's home
            "XDG_CACHE_HOME": str(self.workdir / "cache"),
        }
        play = {
            "hosts": "localhost",
            "gather_facts": False,
            "tasks": [{"name": "bench", module: dict(args, kubeconfig=self.kubeconfig)}],
        }
        t0 = time.monotonic()
        result = run_playbook([play], check=check, env=env, workdir=self.workdir)
        wall = time.monotonic() - t0
        counts = {}
        if counts_file.exists():
            for line in counts_file.read_text().splitlines():
                for key, value in json.loads(line).items():
                    counts[key] = counts.get(key, 0) + value
        res = result.result("bench")
        if res.get("failed") or res.get("skipped"):
            raise RuntimeError(f"{module} failed: {res.get('msg') or res}")
        return res, wall, counts


# --- cluster helpers ------------------------------------------------------------------------------


def ensure_namespace(rest, name):
    try:
        rest.client.request(
            "POST", "/api/v1/namespaces", body={"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}
        )
    except ApiError as err:
        if err.status != 409:
            raise
    wait_until(
        lambda: _exists(rest, f"/api/v1/namespaces/{name}/serviceaccounts/default"),
        600,
        f"default ServiceAccount in {name}",
        interval=0.5,
    )


def _exists(rest, path):
    try:
        rest.client.request("GET", path)
        return True
    except ApiError as err:
        if err.status == 404:
            return False
        raise


def uncordon(rest, node):
    rest.patch_node(node, {"spec": {"unschedulable": None}})


def running_on(rest, node, ns=None):
    return [
        p
        for p in rest.list_node_pods(node)
        if (ns is None or p["metadata"]["namespace"] == ns)
        and p["status"].get("phase") == "Running"
        and not p["metadata"].get("deletionTimestamp")
    ]


def deploy_on(rest, ns, name, node, replicas):
    labels = {"app": name}
    body = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "nodeSelector": {"kubernetes.io/hostname": node},
                    "containers": [{"name": "app", "image": "registry.invalid/app:1"}],
                },
            },
        },
    }
    rest.client.request("POST", f"/apis/apps/v1/namespaces/{ns}/deployments", body=body)
    wait_until(
        lambda: len(running_on(rest, node, ns)) >= replicas,
        600,
        f"{replicas} pods of {name} Running on {node}",
        interval=0.5,
    )


def remove_deployment(rest, ns, name):
    rest.client.request(
        "DELETE", f"/apis/apps/v1/namespaces/{ns}/deployments/{name}", body={"propagationPolicy": "Foreground"}
    )
    wait_until(
        lambda: (
            not rest.client.request("GET", f"/api/v1/namespaces/{ns}/pods", query={"labelSelector": f"app={name}"})[
                "items"
            ]
        ),
        600,
        f"pods of {name} gone",
        interval=0.5,
    )


def bare_pod(name, node):
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": {"app": "load"}},
        "spec": {"nodeName": node, "containers": [{"name": "app", "image": "registry.invalid/app:1"}]},
    }


def load_cluster(rest, nodes, pods, namespaces=10):
    """Create `pods` pods bound round-robin to `nodes` (skips what exists); returns seconds taken."""
    for i in range(namespaces):
        ensure_namespace(rest, f"{BENCH_NS}-load-{i}")
    existing = 0
    for i in range(namespaces):
        data = rest.client.request("GET", f"/api/v1/namespaces/{BENCH_NS}-load-{i}/pods", query={"limit": 1})
        existing += len(data["items"]) + int(data["metadata"].get("remainingItemCount") or 0)
    if existing >= pods * 0.99:  # a previous run (--keep) already loaded it; drains removed a few
        log(f"cluster already holds {existing} load pods")
        return 0.0

    def create(index):
        ns = f"{BENCH_NS}-load-{index % namespaces}"
        node = nodes[index % len(nodes)]
        for attempt in range(5):
            try:
                rest.client.request("POST", f"/api/v1/namespaces/{ns}/pods", body=bare_pod(f"load-{index}", node))
                return
            except ApiError as err:
                if err.status == 409:
                    return
                if attempt == 4 or err.status not in (0, 429, 500, 503, 504):
                    raise
                time.sleep(1 + attempt)

    t0 = time.monotonic()
    with ThreadPoolExecutor(32) as pool:
        for done, _ in enumerate(pool.map(create, range(pods)), 1):
            if done % 10000 == 0:
                log(f"  {done} pods created ({done / (time.monotonic() - t0):.0f}/s)")
    return time.monotonic() - t0


# --- phases ---------------------------------------------------------------------------------------


ANVIL = "anvil.cluster.node_maintenance"
CORE = "kubernetes.core.k8s_drain"


def drain_args(module, node, force=False):
    if module == ANVIL:
        return {"name": node, "state": "drained", "timeout": 600, "force": force}
    # k8s_drain returns right after sending evictions unless wait_timeout is set; wait_sleep 1 instead
    # of the default 5 s is the most favourable setting for it.
    return {
        "name": node,
        "state": "drain",
        "delete_options": {"ignore_daemonsets": True, "force": force, "wait_timeout": 600, "wait_sleep": 1},
    }


def total(counts):
    return sum(counts.values())


def fmt_counts(counts):
    return ", ".join(f"{k}={v}" for k, v in sorted(counts.items(), key=lambda kv: -kv[1]))


def phase_drain_100(runner, rest, node, repeat, replicas):
    ensure_namespace(rest, BENCH_NS)
    rows = []
    for i in range(repeat):
        for module in (ANVIL, CORE) if i % 2 == 0 else (CORE, ANVIL):
            name = f"web-{i}-{'anvil' if module == ANVIL else 'core'}"
            uncordon(rest, node)
            deploy_on(rest, BENCH_NS, name, node, replicas)
            res, wall, counts = runner.play(module, drain_args(module, node))
            left = len(running_on(rest, node, BENCH_NS))
            rows.append((module, wall, res.get("duration"), counts, left))
            log(f"{module}: drained {replicas} pods in {wall:.1f}s wall, {total(counts)} API requests, {left} left")
            remove_deployment(rest, BENCH_NS, name)
    uncordon(rest, node)
    return rows


def phase_plan(runner, rest, nodes, samples=7):
    # in-process: the module's own planning path (get node, list the node's pods, classify)
    times, sizes = [], []
    for node in nodes[:samples]:
        t0 = time.perf_counter()
        rest.get_node(node)
        pods = rest.list_node_pods(node)
        plan_pods(pods, force=True)
        times.append(time.perf_counter() - t0)
        sizes.append(len(pods))
    res, wall, counts = runner.play(ANVIL, {"name": nodes[samples], "state": "drained", "force": True}, check=True)
    return {
        "inprocess_median_ms": statistics.median(times) * 1000,
        "inprocess_max_ms": max(times) * 1000,
        "pods_per_node": statistics.median(sizes),
        "check_mode_module_s": res["duration"],
        "check_mode_wall_s": wall,
        "check_mode_requests": counts,
        "plan_evict": len(res["plan"]["evict"]),
        "changed_node": rest.get_node(nodes[samples])["spec"].get("unschedulable"),
    }


def phase_loaded_drains(runner, rest, nodes):
    rows = []
    for module, node in ((ANVIL, nodes[-1]), (CORE, nodes[-2])):
        wait_until(lambda n=node: len(running_on(rest, n)) > 0, 600, f"pods Running on {node}", interval=0.5)
        before = len(rest.list_node_pods(node))
        res, wall, counts = runner.play(module, drain_args(module, node, force=True))
        left = len(rest.list_node_pods(node))
        rows.append((module, node, before, wall, res.get("duration"), counts, left))
        log(
            f"{module}: drained {before} pods of loaded {node} in {wall:.1f}s,"
            f" {total(counts)} API requests, {left} left"
        )
        uncordon(rest, node)
    return rows


def count_pods(rest, field_selector=None):
    """Number of pods (matching a field selector). remainingItemCount is not set for selector lists: page."""
    query = {"limit": 1 if field_selector is None else 5000}
    if field_selector:
        query["fieldSelector"] = field_selector
    count = 0
    while True:
        data = rest.client.request("GET", "/api/v1/pods", query=query)
        count += len(data["items"])
        if field_selector is None:
            return count + int(data["metadata"].get("remainingItemCount") or 0)
        if not data["metadata"].get("continue"):
            return count
        query["continue"] = data["metadata"]["continue"]


def report_small(args, drains):
    print(f"-- drain of one node with a {args.drain_pods}-replica Deployment (no PDB), {args.repeat} run(s) each:")
    for module in (ANVIL, CORE):
        rows = [r for r in drains if r[0] == module]
        walls = ", ".join(f"{r[1]:.1f}s" for r in rows)
        reqs = ", ".join(str(total(r[3])) for r in rows)
        left = ", ".join(str(r[4]) for r in rows)
        internal = ", ".join(f"{r[2]:.1f}s" for r in rows if r[2] is not None)
        print(f"   {module:34s} wall {walls} | module-reported {internal or 'n/a'} | API requests {reqs} | left {left}")
        print(f"   {'':34s} requests by kind (last run): {fmt_counts(rows[-1][3])}", flush=True)


def report_plan(plan):
    print(f"-- drain plan for one node ({plan['pods_per_node']:.0f} pods) in the loaded cluster:")
    print(
        "   in-process (get node + list node pods by field selector + classify):"
        f" median {plan['inprocess_median_ms']:.1f} ms, max {plan['inprocess_max_ms']:.1f} ms, 2 API requests"
    )
    print(
        f"   check mode through ansible-playbook: module {plan['check_mode_module_s']:.3f}s,"
        f" wall {plan['check_mode_wall_s']:.1f}s,"
        f" {total(plan['check_mode_requests'])} API requests ({fmt_counts(plan['check_mode_requests'])}),"
        f" {plan['plan_evict']} pods in plan, node changed: {bool(plan['changed_node'])}"
    )
    print("   kubernetes.core.k8s_drain has no check mode: no plan to compare.", flush=True)


def report_loaded(loaded):
    print("-- drain of one loaded node (bare pods, force):")
    for module, node, before, wall, internal, counts, left in loaded:
        extra = f" (module-reported {internal:.1f}s)" if internal is not None else ""
        print(
            f"   {module:34s} {before} pods on {node}: wall {wall:.1f}s{extra},"
            f" {total(counts)} API requests, {left} left"
        )
        print(f"   {'':34s} requests by kind: {fmt_counts(counts)}", flush=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--nodes", type=int, default=int(os.environ.get("BENCH_NM_NODES", "1000")))
    parser.add_argument("--pods", type=int, default=int(os.environ.get("BENCH_NM_PODS", "30000")))
    parser.add_argument("--drain-pods", type=int, default=100)
    parser.add_argument("--repeat", type=int, default=2, help="runs of the 100-pod drain per module")
    parser.add_argument(
        "--phases",
        default="small,load,drain",
        help="comma list: small (100-pod drains), load (load the cluster, plan), drain (drains in the loaded cluster)",
    )
    parser.add_argument("--keep", action="store_true", help="leave the bench API running")
    parser.add_argument("--reuse", action="store_true", help="use a running bench API without checking its nodes")
    args = parser.parse_args()
    phases = set(args.phases.split(","))

    log(f"starting (or reusing) local API instance {INSTANCE.name} with {args.nodes} kwok nodes")
    t0 = time.monotonic()
    if args.reuse and kapi.is_healthy(INSTANCE):
        # on a busy host kwok may not keep every node's lease fresh; planning and draining do not need that
        log("reusing the running bench instance as is")
    else:
        kapi.up(INSTANCE, args.nodes, timeout=300)
    log(f"API with {args.nodes} Ready nodes in {time.monotonic() - t0:.0f}s")
    rest = DrainApi(KubeClient(kapi.api_client(INSTANCE.admin_kubeconfig)))
    nodes = [kapi.node_name(i) for i in range(args.nodes)]
    print(f"== node_maintenance benchmark ({args.nodes} kwok nodes; every run is one ansible-playbook)", flush=True)
    try:
        with tempfile.TemporaryDirectory(prefix="bench-nm-") as tmp:
            runner = Runner(rest, str(INSTANCE.admin_kubeconfig), Path(tmp))
            if "small" in phases:
                report_small(args, phase_drain_100(runner, rest, nodes[0], args.repeat, args.drain_pods))
            if "load" in phases:
                log(f"loading {args.pods} pods onto {args.nodes - 1} nodes")
                load_s = load_cluster(rest, nodes[1:], args.pods)
                status = kapi.status(INSTANCE)
                print(
                    f"-- cluster load: {count_pods(rest)} pods ({args.pods} bound pods created in {load_s:.0f}s);"
                    f" bench API RSS {status.get('rss_total_mib')} MiB",
                    flush=True,
                )
                report_plan(phase_plan(runner, rest, nodes[1:]))
            if "load" in phases and "drain" in phases:
                # kwok works through pod events in order: drain only once it has caught up, so that the
                # drains time the modules and not kwok's backlog.
                t0 = time.monotonic()
                unstarted = "status.phase=Pending,spec.nodeName!="
                wait_until(lambda: count_pods(rest, unstarted) == 0, 3600, "kwok to run every pod", interval=15)
                log(f"kwok caught up {time.monotonic() - t0:.0f}s after the plan")
                middle = len(nodes) // 2
                report_loaded(phase_loaded_drains(runner, rest, nodes[middle - 1 : middle + 1]))
    finally:
        if not args.keep:
            kapi.down(INSTANCE)


if __name__ == "__main__":
    main()
