"""Tenant network isolation enforced with real packets on the testbed cluster (Calico, the default CNI).

Two tenants made by anvil.cluster.tenant, each with a web pod on one worker and a client pod on the other,
and a `monitoring` namespace the tenants allow. Asserted both ways: a tenant reaches its own pods and
Service and not the other tenant's; monitoring reaches both; turning a tenant's isolation off lets the
other in again; a tenant admin's own allow-all NetworkPolicy lets the other tenant in while only the
namespace tier isolates, and no longer once the cluster tier (AdminNetworkPolicy) is on, which that admin
cannot delete. Runs on the cluster test_cluster_core.py deploys (site.yml is re-run first; a no-op then).
"""

from __future__ import annotations

import json
import shlex

import pytest
import yaml

from tests.helpers.ansible import REPO_ROOT, kube_play, run_playbook
from tests.helpers.testbed import cluster_groups, sh
from tests.helpers.wait import wait_until as poll

SITE = REPO_ROOT / "playbooks" / "site.yml"
WORK = REPO_ROOT / "build" / "e2e-cluster-core"
KUBECONFIG = WORK / "admin.conf"
SITE_VARS = {"anvil_kubeconfig_dest": str(KUBECONFIG), "anvil_cluster_name": "e2e"}
VERSIONS = yaml.safe_load((REPO_ROOT / "vars" / "versions.yml").read_text())["anvil_versions"]
KUBECTL = "kubectl --kubeconfig /etc/kubernetes/admin.conf"
TENANTS = ("alpha", "beta")
BETA_ADMIN = "beta-admin@example.com"
# Service name -> the web pod behind it (what its index page says).
SERVICE_BACKEND = {"web.alpha.svc.cluster.local": "web-alpha"}
# Seconds felix may take to program a policy change on the nodes.
POLICY_DEADLINE = 60


def tenant(args: dict) -> dict:
    task = {"name": "tenant", "anvil.cluster.tenant": args, "ignore_errors": True}
    res = run_playbook(kube_play(task, KUBECONFIG))
    result = res.result("tenant")
    assert not result.get("failed"), result.get("msg")
    return result


def tenants(**options) -> dict:
    beta = {"name": "beta", "members": [{"kind": "User", "name": BETA_ADMIN, "role": "admin"}]}
    specs = [{"name": "alpha"}, beta]
    for spec in specs:
        spec.update(options.get(spec["name"], {}))
    return tenant({"tenants": specs, "allow_from_namespaces": ["monitoring"], **options.get("all", {})})


def _pod(name: str, namespace: str, node: str, image: str, serve: bool) -> dict:
    command = "mkdir -p /www && echo %s > /www/index.html && exec httpd -f -p 8080 -h /www" % name
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": namespace, "labels": {"app": name}},
        "spec": {
            "nodeName": node,
            "terminationGracePeriodSeconds": 1,
            "containers": [
                {"name": "main", "image": image, "command": ["sh", "-c", command if serve else "exec sleep 3600"]}
            ],
        },
    }


@pytest.fixture(scope="module")
def net(testbed, mirror):
    inv, cp, workers = cluster_groups(testbed.inventory)
    assert len(workers) >= 2, f"needs 2 workers: {workers}"
    deploy = run_playbook(SITE, inventory=testbed.inventory, extra_vars=SITE_VARS)
    assert deploy.rc == 0, deploy.stdout[-3000:]
    assert "calico-node" in sh(testbed, cp, f"{KUBECTL} -n kube-system get ds -o name"), (
        "the cluster does not run Calico"
    )
    image = "%s/%s:%s" % (
        inv["all"]["vars"]["anvil_image_repository"],
        VERSIONS["flannel"]["image"]["name"],
        VERSIONS["flannel"]["image"]["tag"],
    )
    tenants()
    docs = [{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "monitoring"}}]
    for ns in TENANTS:
        docs += [_pod(f"web-{ns}", ns, workers[0], image, True), _pod(f"client-{ns}", ns, workers[1], image, False)]
    docs.append(
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "web", "namespace": "alpha"},
            "spec": {"selector": {"app": "web-alpha"}, "ports": [{"port": 80, "targetPort": 8080}]},
        }
    )
    docs.append(_pod("scraper", "monitoring", workers[1], image, False))
    sh(
        testbed,
        cp,
        f"echo {shlex.quote(chr(10).join('---' + chr(10) + json.dumps(d) for d in docs))} | {KUBECTL} apply -f -",
    )
    for ns, pods in (
        ("alpha", "pod/web-alpha pod/client-alpha"),
        ("beta", "pod/web-beta pod/client-beta"),
        ("monitoring", "pod/scraper"),
    ):
        sh(testbed, cp, f"{KUBECTL} -n {ns} wait --for=condition=Ready {pods} --timeout=180s")
    ips = {}
    for ns in TENANTS:
        for pod in json.loads(sh(testbed, cp, f"{KUBECTL} -n {ns} get pods -o json"))["items"]:
            ips[pod["metadata"]["name"]] = pod["status"]["podIP"]
    yield {"cp": cp, "ips": ips, "testbed": testbed}
    tenant({"tenants": [{"name": n, "state": "absent"} for n in TENANTS], "force": True})
    sh(testbed, cp, f"{KUBECTL} delete namespace monitoring --wait=false", check=False)


def reaches(net, namespace: str, pod: str, host: str, *, port: int, want: str) -> bool:
    """Whether `pod` gets `want` back from http://host:port/ (a dropped or refused connection: False)."""
    request = f"printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 3 {host} {port} | tail -n 1"
    proc = net["testbed"].exec(net["cp"], f"{KUBECTL} -n {namespace} exec {pod} -- sh -c {shlex.quote(request)}")
    return proc.stdout.strip() == want


def settles(net, namespace, pod, target, want_reachable: bool, *, port: int = 8080, what: str = ""):
    """Wait until `pod` reaches (or no longer reaches) `target`: a web pod by name, or alpha's Service."""
    host = net["ips"].get(target, target)
    body = target if target in net["ips"] else SERVICE_BACKEND[target]
    poll(
        lambda: reaches(net, namespace, pod, host, port=port, want=body) == want_reachable,
        POLICY_DEADLINE,
        what or f"{namespace}/{pod} -> {target} {'reachable' if want_reachable else 'blocked'}",
        interval=1,
    )


def test_calico_node_containers_run_without_restarts(net):
    """By now the cluster has run for many minutes: a calico-node process that exits (as complete-startup
    did, every two minutes, before it became part of the startup init container) shows as restarts."""
    out = sh(net["testbed"], net["cp"], f"{KUBECTL} -n kube-system get pods -l k8s-app=calico-node -o json")
    pods = json.loads(out)
    restarts = {
        (p["spec"]["nodeName"], c["name"]): c["restartCount"]
        for p in pods["items"]
        for c in p["status"]["containerStatuses"]
        if c["restartCount"]
    }
    assert pods["items"] and restarts == {}, restarts


def test_a_tenant_reaches_its_own_pods_and_service(net):
    settles(net, "alpha", "client-alpha", "web-alpha", True)
    settles(net, "alpha", "client-alpha", "web.alpha.svc.cluster.local", True, port=80)
    settles(net, "beta", "client-beta", "web-beta", True)


def test_tenants_cannot_reach_each_other_both_ways(net):
    settles(net, "alpha", "client-alpha", "web-beta", False)
    settles(net, "beta", "client-beta", "web-alpha", False)
    settles(net, "beta", "client-beta", "web.alpha.svc.cluster.local", False, port=80)


def test_the_monitoring_allowance_reaches_every_tenant(net):
    settles(net, "monitoring", "scraper", "web-alpha", True)
    settles(net, "monitoring", "scraper", "web-beta", True)


def test_removing_the_policy_restores_reachability(net):
    tenants(beta={"network_isolation": False})
    settles(net, "alpha", "client-alpha", "web-beta", True)
    tenants()
    settles(net, "alpha", "client-alpha", "web-beta", False)


def test_the_cluster_tier_holds_against_a_tenant_admins_allow_all_policy(net):
    testbed, cp = net["testbed"], net["cp"]
    allow_all = {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"name": "allow-all", "namespace": "beta"},
        "spec": {"podSelector": {}, "policyTypes": ["Ingress"], "ingress": [{}]},
    }
    # The tenant's own admin may write NetworkPolicies in its namespace: with the namespace tier alone,
    # that lets the other tenant in.
    sh(testbed, cp, f"echo {shlex.quote(json.dumps(allow_all))} | {KUBECTL} --as {BETA_ADMIN} apply -f -")
    settles(net, "alpha", "client-alpha", "web-beta", True, what="allow-all opens beta to alpha")
    result = tenants(all={"cluster_isolation": True})
    assert "AdminNetworkPolicy/anvil-tenant-beta" in [r for t in result["tenants"] for r in t["created"]]
    settles(net, "alpha", "client-alpha", "web-beta", False, what="the cluster tier closes beta to alpha")
    # ... while what the tenant tier allows still passes: beta itself and monitoring.
    settles(net, "beta", "client-beta", "web-beta", True)
    settles(net, "monitoring", "scraper", "web-beta", True)
    denied = testbed.exec(cp, f"{KUBECTL} --as {BETA_ADMIN} delete adminnetworkpolicy anvil-tenant-beta")
    assert denied.returncode != 0 and "forbidden" in denied.stderr.lower(), denied.stderr
    # Back to the namespace tier only: the allow-all policy works again.
    tenants(all={"cluster_isolation": False})
    settles(net, "alpha", "client-alpha", "web-beta", True)
    sh(testbed, cp, f"{KUBECTL} --as {BETA_ADMIN} -n beta delete networkpolicy allow-all")
    settles(net, "alpha", "client-alpha", "web-beta", False)
