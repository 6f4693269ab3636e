"""Calico's manifest and the tenant module's cluster tier, against a real kube-apiserver + etcd (+ kwok).

- The manifest the cni_calico role applies (upstream's calico-vxlan.yaml from the Calico Go module, adapted
  by the calico_manifest filter logic) is accepted by a real API server: server-side dry run of every object.
- Without the AdminNetworkPolicy API, `cluster_isolation` fails before anything changes; with the CRD that
  Calico ships, the tenant module writes one AdminNetworkPolicy per tenant, keeps it on re-runs, removes it
  with the tenant, and a tenant admin can neither change nor delete it. (Traffic is not filtered here: kwok
  has no CNI. The e2e on a Calico testbed cluster proves enforcement with packets.)
- On a cluster that runs Flannel, isolated tenants get a warning that their policies are not enforced.

Needs `make artifacts-files` (the Calico manifests in $ANVIL_CACHE); `make integration` runs it first.
"""

from __future__ import annotations

import json
import uuid

import pytest
import yaml

from tests.helpers.ansible import run_playbook
from tests.helpers.wait import wait_until
from tools import artifacts

ANP = "adminnetworkpolicies.policy.networking.k8s.io"
TENANT_LABEL = "anvil.cluster/tenant"


def calico_file(name: str) -> list[dict]:
    path = artifacts.component_dir("calico", artifacts.load_manifest()["anvil_versions"]["calico"]["version"]) / name
    if not path.is_file():
        pytest.fail(f"{path} is missing: run `make artifacts-files`", pytrace=False)
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def run_tenant(kube_api, args, task="tenant"):
    plays = [
        {
            "hosts": "localhost",
            "gather_facts": False,
            "module_defaults": {"group/anvil.cluster.k8s": {"kubeconfig": kube_api.kubeconfig}},
            "tasks": [{"name": task, "anvil.cluster.tenant": args, "ignore_errors": True}],
        }
    ]
    res = run_playbook(plays)
    assert res.tasks, res.stdout[-2000:] + res.stderr[-2000:]
    return res.result(task)


def served(kube_api) -> bool:
    out = kube_api.kubectl("api-resources", "--api-group=policy.networking.k8s.io", "-o", "name", check=False)
    return ANP in out.stdout


@pytest.fixture
def no_admin_policy_api(kube_api):
    kube_api.kubectl("delete", "crd", ANP, "--ignore-not-found", "--wait=true")
    wait_until(lambda: not served(kube_api), 60, "AdminNetworkPolicy API gone")


@pytest.fixture
def admin_policy_api(kube_api):
    """The AdminNetworkPolicy CRD exactly as Calico ships it (removed again afterwards)."""
    (crd,) = [d for d in calico_file("calico-vxlan.yaml") if d["metadata"]["name"] == ANP]
    kube_api.kubectl("apply", "--server-side", "-f", "-", input=json.dumps(crd))
    kube_api.kubectl("wait", "--for=condition=Established", f"crd/{ANP}", "--timeout=60s")
    wait_until(lambda: served(kube_api), 60, "AdminNetworkPolicy API served")
    yield
    kube_api.kubectl("delete", "crd", ANP, "--ignore-not-found", "--wait=true")


@pytest.fixture
def tenant_names(kube_api):
    names: list[str] = []

    def make() -> str:
        names.append(f"ct-{uuid.uuid4().hex[:6]}")
        return names[-1]

    yield make
    if names:
        kube_api.kubectl(
            "delete", "namespace", "-l", f"{TENANT_LABEL} in ({','.join(names)})", "--wait=false", check=False
        )


def test_rendered_calico_manifest_is_accepted_by_the_api_server(kube_api):
    from ansible_collections.anvil.cluster.plugins.module_utils.calico_manifest import adapt

    docs = adapt(
        calico_file("calico-vxlan.yaml"),
        calico_file("calico-typha.yaml"),
        {
            "image_repository": "198.18.0.1:5000/anvil",
            "image_tag": "v3.31.0",
            "pod_cidr": "10.244.0.0/16",
            "block_size": 26,
            "vxlan_mode": "CrossSubnet",
            "vxlan_port": 4789,
            "vxlan_vni": 4096,
            "mtu": 0,
            "host_mtu": 1500,
            "iptables_backend": "auto",
            "host_iptables": "iptables v1.8.9 (nf_tables)",
            "nodes": 60,  # Typha's objects included
            "typha_threshold": 50,
        },
    )
    kinds = sorted({d["kind"] for d in docs})
    assert {"CustomResourceDefinition", "DaemonSet", "Deployment", "ClusterRole", "Service"} <= set(kinds), kinds
    crds = [d for d in docs if d["kind"] == "CustomResourceDefinition"]
    others = [d for d in docs if d["kind"] != "CustomResourceDefinition"]
    # CRDs first (a dry run cannot create the kinds they define, and none of the other objects is one).
    for batch in (crds, others):
        out = kube_api.kubectl(
            "apply",
            "--server-side",
            "--dry-run=server",
            "--field-manager=anvil-test",
            "-f",
            "-",
            input="\n---\n".join(json.dumps(d) for d in batch),
        )
        assert out.stdout.count("serverside-applied") == len(batch), out.stdout[-2000:]


def test_cluster_isolation_without_the_api_changes_nothing(kube_api, no_admin_policy_api, tenant_names):
    name = tenant_names()
    result = run_tenant(kube_api, {"name": name, "cluster_isolation": True})
    assert result.get("failed"), result
    assert "needs AdminNetworkPolicy (policy.networking.k8s.io/v1alpha1)" in result["msg"], result["msg"]
    assert "anvil_cni: calico" in result["msg"]
    assert kube_api.kubectl("get", "namespace", name, check=False).returncode != 0


def test_cluster_isolation_writes_one_admin_policy_per_tenant(kube_api, admin_policy_api, tenant_names):
    a, b = tenant_names(), tenant_names()
    first = run_tenant(
        kube_api,
        {
            "tenants": [
                {"name": a, "members": [{"kind": "User", "name": f"{a}-admin", "role": "admin"}]},
                {"name": b},
            ],
            "cluster_isolation": True,
            "allow_from_namespaces": ["monitoring"],
        },
    )
    assert not first.get("failed"), first.get("msg")
    created = [r for t in first["tenants"] for r in t["created"]]
    assert f"AdminNetworkPolicy/anvil-tenant-{a}" in created and f"AdminNetworkPolicy/anvil-tenant-{b}" in created
    policy = json.loads(kube_api.kubectl("get", "adminnetworkpolicy", f"anvil-tenant-{a}", "-o", "json").stdout)
    assert policy["spec"]["subject"] == {"namespaces": {"matchLabels": {TENANT_LABEL: a}}}
    assert policy["spec"]["ingress"][0]["action"] == "Deny"

    again = run_tenant(
        kube_api,
        {
            "tenants": [{"name": a, "members": [{"kind": "User", "name": f"{a}-admin", "role": "admin"}]}, {"name": b}],
            "cluster_isolation": True,
            "allow_from_namespaces": ["monitoring"],
        },
    )
    assert not again.get("failed") and not again["changed"], again

    # The tenant's admin manages its namespaces, not the cluster tier.
    admin = kube_api.user_kubeconfig(f"{a}-admin")
    for verb in (
        ("delete", "adminnetworkpolicy", f"anvil-tenant-{a}"),
        ("label", "adminnetworkpolicy", f"anvil-tenant-{a}", "x=y"),
    ):
        denied = kube_api.kubectl(*verb, kubeconfig=admin, check=False)
        assert denied.returncode != 0 and "forbidden" in denied.stderr.lower(), denied.stderr
    allowed = kube_api.kubectl("auth", "can-i", "create", "networkpolicies", "-n", a, kubeconfig=admin, check=False)
    assert allowed.stdout.strip() == "yes"

    gone = run_tenant(kube_api, {"name": b, "state": "absent"})
    assert f"AdminNetworkPolicy/anvil-tenant-{b}" in gone["deleted"], gone
    assert kube_api.kubectl("get", "adminnetworkpolicy", f"anvil-tenant-{b}", check=False).returncode != 0


def test_isolated_tenant_on_flannel_is_warned(kube_api, tenant_names):
    manifest = [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "kube-flannel"}},
        {
            "apiVersion": "apps/v1",
            "kind": "DaemonSet",
            "metadata": {"name": "kube-flannel-ds", "namespace": "kube-flannel"},
            "spec": {
                "selector": {"matchLabels": {"app": "flannel"}},
                "template": {
                    "metadata": {"labels": {"app": "flannel"}},
                    # Scheduled nowhere: only its presence matters.
                    "spec": {
                        "nodeSelector": {"anvil.test/none": "none"},
                        "containers": [{"name": "f", "image": "flannel:test"}],
                    },
                },
            },
        },
    ]
    kube_api.kubectl("apply", "-f", "-", input="\n---\n".join(json.dumps(d) for d in manifest))
    try:
        isolated = run_tenant(kube_api, {"name": tenant_names()})
        assert not isolated.get("failed"), isolated.get("msg")
        assert any("does not enforce NetworkPolicy" in w for w in isolated.get("warnings", [])), isolated
        open_tenant = run_tenant(kube_api, {"name": tenant_names(), "network_isolation": False})
        assert not any("NetworkPolicy" in w for w in open_tenant.get("warnings", [])), open_tenant
    finally:
        kube_api.kubectl("delete", "namespace", "kube-flannel", "--wait=false", check=False)
