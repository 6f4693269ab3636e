"""anvil.cluster.tenant through Ansible against a real kube-apiserver + etcd + kwok.

Every test uses tenants with unique names (`tt-<hex>`), so sessions sharing the API server do not collide;
their namespaces are deleted at the end. RBAC is proven by acting with member kubeconfigs (client
certificates), quota and LimitRange by the API server's own admission of pods. NetworkPolicies are stored
but not enforced here (kwok has no CNI): the tests check that the policies exist and select the right peers.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest
import yaml
from kubernetes import client
from kubernetes.client.rest import ApiException

from tests.helpers.ansible import REPO_ROOT, run_playbook
from tests.helpers.kube import wait_for_default_service_account
from tests.helpers.wait import wait_until

MODULE = "anvil.cluster.tenant"
TENANT_LABEL = "anvil.cluster/tenant"


@pytest.fixture
def tenants(kube_api):
    """Factory of unique tenant names; their namespaces are removed after the test."""
    names: list[str] = []

    def make(prefix: str = "tt") -> str:
        name = f"{prefix}-{uuid.uuid4().hex[:6]}"
        names.append(name)
        return name

    yield make
    if names:
        selector = f"{TENANT_LABEL} in ({','.join(names)})"
        kube_api.kubectl("delete", "namespace", "-l", selector, "--wait=false", check=False)


def run(kube_api, args, *, check=False, diff=False, task="tenant"):
    plays = [
        {
            "hosts": "localhost",
            "gather_facts": False,
            "module_defaults": {"group/anvil.cluster.k8s": {"kubeconfig": kube_api.kubeconfig}},
            "tasks": [{"name": task, MODULE: args, "ignore_errors": True}],
        }
    ]
    res = run_playbook(plays, check=check, diff=diff)
    assert res.tasks, f"playbook did not run: {res.stdout[-2000:]} {res.stderr[-2000:]}"
    return res.result(task)


def ok(result):
    assert not result.get("failed"), result.get("msg")
    return result


def core(kube_api):
    return client.CoreV1Api(kube_api.api_client())


def rbac(kube_api):
    return client.RbacAuthorizationV1Api(kube_api.api_client())


def get_json(kube_api, *args):
    return json.loads(kube_api.kubectl("get", *args, "-o", "json").stdout)


def namespace_exists(kube_api, name):
    try:
        core(kube_api).read_namespace(name)
        return True
    except ApiException as e:
        if e.status == 404:
            return False
        raise


def wait_for_default_sa(kube_api, namespace):
    wait_for_default_service_account(core(kube_api), namespace, 60)


def subjects(kube_api, namespace, role):
    try:
        binding = rbac(kube_api).read_namespaced_role_binding(f"anvil-tenant-{role}", namespace)
    except ApiException as e:
        if e.status == 404:
            return None
        raise
    return sorted((s.kind, s.name) for s in binding.subjects or [])


# --------------------------------------------------------------------------- lifecycle


def test_create_idempotent_check_mode_update(kube_api, tenants):
    name = tenants()
    ns_a, ns_b = f"{name}-a", f"{name}-b"
    spec = {
        "name": name,
        "namespaces": [ns_a],
        "quota": {"requests.cpu": "2", "limits.memory": "4Gi", "pods": 20},
        "limits": {
            "default_request": {"cpu": "100m", "memory": "64Mi"},
            "default_limit": {"cpu": "500m", "memory": "256Mi"},
            "max": {"cpu": "2"},
            "max_limit_request_ratio": {"cpu": 4},
        },
        "members": [
            {"kind": "User", "name": "alice", "role": "edit"},
            {"kind": "User", "name": "bob", "role": "view"},
        ],
        "allow_from_namespaces": ["monitoring"],
        "labels": {"cost-center": "cc-42"},
    }
    first = ok(run(kube_api, spec))
    assert first["changed"] is True
    assert sorted(first["created"]) == sorted(
        [
            f"Namespace/{ns_a}",
            f"ResourceQuota/{ns_a}/anvil-tenant",
            f"LimitRange/{ns_a}/anvil-tenant",
            f"RoleBinding/{ns_a}/anvil-tenant-edit",
            f"RoleBinding/{ns_a}/anvil-tenant-view",
            f"NetworkPolicy/{ns_a}/anvil-tenant-isolation",
            f"NetworkPolicy/{ns_a}/anvil-allow-from-monitoring",
        ]
    )
    ns = core(kube_api).read_namespace(ns_a)
    assert ns.metadata.labels[TENANT_LABEL] == name
    assert ns.metadata.labels["app.kubernetes.io/managed-by"] == "anvil.cluster.tenant"
    assert ns.metadata.labels["pod-security.kubernetes.io/enforce"] == "baseline"
    assert ns.metadata.labels["cost-center"] == "cc-42"
    quota = core(kube_api).read_namespaced_resource_quota("anvil-tenant", ns_a)
    assert quota.spec.hard == {"requests.cpu": "2", "limits.memory": "4Gi", "pods": "20"}
    assert subjects(kube_api, ns_a, "edit") == [("User", "alice")]
    assert subjects(kube_api, ns_a, "view") == [("User", "bob")]

    # Re-run with semantically equal values written differently: no change, no write.
    same = dict(spec, quota={"requests.cpu": "2000m", "limits.memory": "4096Mi", "pods": "20"})
    again = ok(run(kube_api, same))
    assert again["changed"] is False
    assert again["created"] == again["updated"] == again["deleted"] == []

    # Check mode: exact changes reported, nothing changed.
    changed = dict(
        spec,
        namespaces=[ns_a, ns_b],
        quota={"requests.cpu": "4", "limits.memory": "4Gi", "pods": 20},
        members=[
            {"kind": "User", "name": "bob", "role": "edit"},  # role changed view -> edit
            {"kind": "Group", "name": "leads", "role": "admin"},  # added
        ],  # alice removed
    )
    preview = ok(run(kube_api, changed, check=True, diff=True))
    assert preview["changed"] is True
    assert f"Namespace/{ns_b}" in preview["created"]
    assert f"RoleBinding/{ns_a}/anvil-tenant-admin" in preview["created"]
    assert sorted(preview["updated"]) == [f"ResourceQuota/{ns_a}/anvil-tenant", f"RoleBinding/{ns_a}/anvil-tenant-edit"]
    assert preview["deleted"] == [f"RoleBinding/{ns_a}/anvil-tenant-view"]
    after = preview["diff"][0]["after"][f"ResourceQuota/{ns_a}/anvil-tenant"]
    assert after["spec"]["hard"]["requests.cpu"] == "4"  # the server's dry-run answer
    assert not namespace_exists(kube_api, ns_b)
    assert core(kube_api).read_namespaced_resource_quota("anvil-tenant", ns_a).spec.hard["requests.cpu"] == "2"
    assert subjects(kube_api, ns_a, "view") == [("User", "bob")]

    # Apply the same change for real.
    applied = ok(run(kube_api, changed))
    assert sorted(applied["created"]) == sorted(preview["created"])
    assert sorted(applied["updated"]) == sorted(preview["updated"])
    assert applied["deleted"] == preview["deleted"]
    assert core(kube_api).read_namespaced_resource_quota("anvil-tenant", ns_a).spec.hard["requests.cpu"] == "4"
    for namespace in (ns_a, ns_b):
        assert subjects(kube_api, namespace, "edit") == [("User", "bob")]
        assert subjects(kube_api, namespace, "admin") == [("Group", "leads")]
        assert subjects(kube_api, namespace, "view") is None
    assert ok(run(kube_api, changed))["changed"] is False

    # Dropping the quota and a label removes them.
    trimmed = dict(changed, quota=None, labels={})
    trimmed.pop("quota")
    result = ok(run(kube_api, trimmed))
    assert sorted(result["deleted"]) == [f"ResourceQuota/{ns_a}/anvil-tenant", f"ResourceQuota/{ns_b}/anvil-tenant"]
    assert "cost-center" not in core(kube_api).read_namespace(ns_a).metadata.labels
    assert ok(run(kube_api, trimmed))["changed"] is False


def test_role_ref_changed_out_of_band_is_replaced(kube_api, tenants):
    name = tenants()
    spec = {"name": name, "members": [{"kind": "User", "name": "carol", "role": "edit"}]}
    ok(run(kube_api, spec))
    api = rbac(kube_api)
    api.delete_namespaced_role_binding("anvil-tenant-edit", name)
    api.create_namespaced_role_binding(
        name,
        {
            "metadata": {
                "name": "anvil-tenant-edit",
                "labels": {TENANT_LABEL: name, "app.kubernetes.io/managed-by": "anvil.cluster.tenant"},
            },
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "view"},
            "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": "carol"}],
        },
    )
    result = ok(run(kube_api, spec))
    assert result["updated"] == [f"RoleBinding/{name}/anvil-tenant-edit"]
    assert api.read_namespaced_role_binding("anvil-tenant-edit", name).role_ref.name == "edit"
    assert ok(run(kube_api, spec))["changed"] is False


# --------------------------------------------------------------------------- enforcement by the API server


def test_rbac_as_members(kube_api, tenants):
    team, other = tenants(), tenants()
    user_edit, user_view = f"dev-{team}", f"audit-{team}"
    ok(
        run(
            kube_api,
            {
                "tenants": [
                    {
                        "name": team,
                        "quota": {"pods": 10},
                        "members": [
                            {"kind": "User", "name": user_edit, "role": "edit"},
                            {"kind": "User", "name": user_view, "role": "view"},
                        ],
                    },
                    {"name": other},
                ]
            },
        )
    )
    editor = kube_api.user_kubeconfig(user_edit)
    viewer = kube_api.user_kubeconfig(user_view)

    def create_deployment(namespace, kubeconfig):
        return kube_api.kubectl(
            "create",
            "deployment",
            "web",
            "--image=example.test/web:1",
            "-n",
            namespace,
            kubeconfig=kubeconfig,
            check=False,
        )

    created = create_deployment(team, editor)
    assert created.returncode == 0, created.stderr
    denied = create_deployment(other, editor)
    assert denied.returncode != 0 and "forbidden" in denied.stderr.lower()
    read = kube_api.kubectl("get", "deployment", "web", "-n", team, kubeconfig=viewer, check=False)
    assert read.returncode == 0, read.stderr
    view_create = kube_api.kubectl(
        "create", "configmap", "x", "--from-literal=a=b", "-n", team, kubeconfig=viewer, check=False
    )
    assert view_create.returncode != 0 and "forbidden" in view_create.stderr.lower()
    # Members cannot touch the quota or the namespace itself.
    quota_edit = kube_api.kubectl(
        "label",
        "namespace",
        team,
        "pod-security.kubernetes.io/enforce=privileged",
        "--overwrite",
        kubeconfig=editor,
        check=False,
    )
    assert quota_edit.returncode != 0 and "forbidden" in quota_edit.stderr.lower()


def test_quota_enforced_and_limit_range_defaults(kube_api, tenants):
    name = tenants()
    ok(
        run(
            kube_api,
            {
                "name": name,
                "quota": {"requests.cpu": "1", "limits.cpu": "2", "requests.memory": "1Gi", "limits.memory": "2Gi"},
                "limits": {
                    "default_request": {"cpu": "100m", "memory": "64Mi"},
                    "default_limit": {"cpu": "200m", "memory": "128Mi"},
                },
            },
        )
    )
    wait_for_default_sa(kube_api, name)
    api = core(kube_api)
    wait_until(
        lambda: (api.read_namespaced_resource_quota("anvil-tenant", name).status.hard or {}).get("requests.cpu"),
        60,
        "quota status computed",
    )

    def pod(pod_name, resources=None):
        container = {"name": "app", "image": "example.test/app:1"}
        if resources:
            container["resources"] = resources
        return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": pod_name}, "spec": {"containers": [container]}}

    created = api.create_namespaced_pod(name, pod("small"))
    resources = created.spec.containers[0].resources
    assert resources.requests == {"cpu": "100m", "memory": "64Mi"}  # LimitRange defaults, set by the API server
    assert resources.limits == {"cpu": "200m", "memory": "128Mi"}
    with pytest.raises(ApiException) as info:
        api.create_namespaced_pod(
            name, pod("big", {"requests": {"cpu": "2", "memory": "64Mi"}, "limits": {"cpu": "2", "memory": "64Mi"}})
        )
    assert info.value.status == 403
    assert "exceeded quota" in info.value.body


def test_network_policies_select_the_right_peers(kube_api, tenants):
    team, other = tenants(), tenants()
    ok(
        run(
            kube_api,
            {
                "tenants": [
                    {
                        "name": team,
                        "namespaces": [f"{team}-web", f"{team}-db"],
                        "allow_from_namespaces": ["kube-system"],
                    },
                    {"name": other},
                ]
            },
        )
    )
    api = core(kube_api)
    netapi = client.NetworkingV1Api(kube_api.api_client())

    def selected_namespaces(selector):
        labels = ",".join(f"{k}={v}" for k, v in (selector.match_labels or {}).items())
        return sorted(n.metadata.name for n in api.list_namespace(label_selector=labels).items)

    for namespace in (f"{team}-web", f"{team}-db"):
        policies = {p.metadata.name: p for p in netapi.list_namespaced_network_policy(namespace).items}
        assert set(policies) == {"anvil-tenant-isolation", "anvil-allow-from-kube-system"}
        isolation = policies["anvil-tenant-isolation"].spec
        assert isolation.pod_selector.match_labels is None and isolation.policy_types == ["Ingress"]
        (rule,) = isolation.ingress
        (peer,) = rule._from
        assert peer.pod_selector is None
        peers = selected_namespaces(peer.namespace_selector)
        assert peers == sorted([f"{team}-web", f"{team}-db"])
        assert other not in peers
        (allow_peer,) = policies["anvil-allow-from-kube-system"].spec.ingress[0]._from
        assert selected_namespaces(allow_peer.namespace_selector) == ["kube-system"]
    # Turning isolation off removes the policies.
    result = ok(run(kube_api, {"name": team, "namespaces": [f"{team}-web", f"{team}-db"], "network_isolation": False}))
    assert len(result["deleted"]) == 4
    assert netapi.list_namespaced_network_policy(f"{team}-web").items == []


# --------------------------------------------------------------------------- deletion and the force rule


def test_absent_without_and_with_workloads(kube_api, tenants):
    name = tenants()
    ns_keep, ns_empty = f"{name}-apps", f"{name}-spare"
    spec = {"name": name, "namespaces": [ns_keep, ns_empty], "quota": {"pods": 5}}
    ok(run(kube_api, spec))
    wait_for_default_sa(kube_api, ns_keep)
    api = core(kube_api)
    api.create_namespaced_pod(
        ns_keep,
        {"metadata": {"name": "web-0"}, "spec": {"containers": [{"name": "app", "image": "example.test/app:1"}]}},
    )
    api.create_namespaced_persistent_volume_claim(
        ns_keep,
        {
            "metadata": {"name": "data"},
            "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}},
        },
    )
    # Removing the empty namespace from the list deletes it; the one with workloads is refused.
    # (wait: the spare namespace is listed again below, which the module refuses while it is terminating)
    dropped = ok(run(kube_api, dict(spec, namespaces=[ns_keep], wait=True, wait_timeout=120)))
    assert dropped["deleted"] == [f"Namespace/{ns_empty}"]
    assert not namespace_exists(kube_api, ns_empty)
    refused = run(kube_api, dict(spec, namespaces=[ns_empty]))
    assert refused["failed"]
    assert "Pod/web-0" in refused["msg"] and "PersistentVolumeClaim/data" in refused["msg"]
    assert refused["blocked"] == {ns_keep: ["Pod/web-0", "PersistentVolumeClaim/data"]}
    absent = run(kube_api, {"name": name, "state": "absent"})
    assert absent["failed"] and "force" in absent["msg"]
    assert namespace_exists(kube_api, ns_keep)
    assert api.read_namespaced_resource_quota("anvil-tenant", ns_keep)

    check = ok(run(kube_api, {"name": name, "state": "absent", "force": True}, check=True))
    assert check["deleted"] == [f"Namespace/{ns_keep}"]
    assert not core(kube_api).read_namespace(ns_keep).metadata.deletion_timestamp

    gone = ok(run(kube_api, {"name": name, "state": "absent", "force": True, "wait": True, "wait_timeout": 120}))
    assert gone["deleted"] == [f"Namespace/{ns_keep}"]
    assert not namespace_exists(kube_api, ns_keep)
    assert ok(run(kube_api, {"name": name, "state": "absent"}))["changed"] is False


# --------------------------------------------------------------------------- input and ownership errors


@pytest.mark.parametrize(
    ("patch", "needle"),
    [
        ({"quota": {"requests.cpu": "2 cores"}}, "quota.requests.cpu"),
        ({"quota": {"pods": "2.5"}}, "quota.pods"),
        ({"limits": {"max": {"memory": "1GB"}}}, "limits.max.memory"),
        ({"members": [{"kind": "User", "name": "x", "role": "owner"}]}, "role"),
        ({"namespaces": ["Not_DNS"]}, "namespaces[0]"),
    ],
)
def test_bad_input_fails_before_any_change(kube_api, tenants, patch, needle):
    name = tenants()
    args = {"name": name, "namespaces": [name, f"{name}-b"]}
    args.update(patch)
    result = run(kube_api, args)
    assert result["failed"] and needle in result["msg"]
    assert not namespace_exists(kube_api, name)


def test_namespace_of_another_tenant_is_refused(kube_api, tenants):
    owner, intruder = tenants(), tenants()
    ok(run(kube_api, {"name": owner}))
    result = run(kube_api, {"name": intruder, "namespaces": [intruder, owner]})
    assert result["failed"]
    assert f"namespace '{owner}' already belongs to tenant '{owner}'" in result["msg"]
    assert "namespaces[1]" in result["msg"]
    assert not namespace_exists(kube_api, intruder)


# --------------------------------------------------------------------------- many tenants, one task, playbook


def test_tenants_list_in_one_task(kube_api, tenants):
    names = [tenants() for _ in range(5)]
    entries = [{"name": n, "members": [{"kind": "Group", "name": f"{n}-devs", "role": "edit"}]} for n in names]
    args = {"tenants": entries, "quota": {"pods": 10}, "pod_security": "restricted"}
    first = ok(run(kube_api, args))
    assert [t["name"] for t in first["tenants"]] == names
    assert all(len(t["created"]) == 4 for t in first["tenants"])  # ns, quota, binding, isolation
    assert core(kube_api).read_namespace(names[0]).metadata.labels["pod-security.kubernetes.io/enforce"] == "restricted"
    second = ok(run(kube_api, args))
    assert second["changed"] is False
    # One list per kind (namespaces and 4 kinds), the AdminNetworkPolicy discovery (its list too where it
    # is served) and the Flannel probe: no per-object reads.
    assert second["stats"]["api_requests"] <= 8
    entries[1] = dict(entries[1], state="absent")
    third = ok(run(kube_api, dict(args, tenants=entries)))
    assert third["tenants"][1]["deleted"] == [f"Namespace/{names[1]}"]
    untouched = [t for i, t in enumerate(third["tenants"]) if i != 1]
    assert all(not (t["created"] or t["updated"] or t["deleted"]) for t in untouched)


def test_tenants_playbook_reads_inventory(kube_api, tenants, tmp_path: Path):
    team_a, team_b = tenants(), tenants()
    inventory = tmp_path / "inventory"
    (inventory / "group_vars").mkdir(parents=True)
    (inventory / "hosts.yml").write_text(
        yaml.safe_dump({"all": {"hosts": {"localhost": {"ansible_connection": "local"}}}})
    )
    (inventory / "group_vars" / "all.yml").write_text(
        yaml.safe_dump(
            {
                "anvil_tenants_kubeconfig": kube_api.kubeconfig,
                "anvil_tenant_defaults": {"quota": {"pods": 20}, "allow_from_namespaces": ["kube-system"]},
                "anvil_tenants": [
                    {"name": team_a, "members": [{"kind": "Group", "name": "a-devs", "role": "edit"}]},
                    {"name": team_b, "namespaces": [f"{team_b}-dev", f"{team_b}-prod"], "quota": {"pods": 5}},
                ],
            }
        )
    )
    playbook = REPO_ROOT / "playbooks" / "tenants.yml"
    first = run_playbook(playbook, inventory=inventory)
    assert first.rc == 0, first.stdout[-3000:]
    assert first.changed() == 1
    quota = core(kube_api).read_namespaced_resource_quota("anvil-tenant", f"{team_b}-prod")
    assert quota.spec.hard == {"pods": "5"}
    assert core(kube_api).read_namespaced_resource_quota("anvil-tenant", team_a).spec.hard == {"pods": "20"}
    second = run_playbook(playbook, inventory=inventory)
    assert second.rc == 0 and second.changed() == 0


def test_connection_from_k8s_auth_environment(kube_api, tenants):
    """Without module_defaults, the K8S_AUTH_* variables (what AWX's Kubernetes credential sets) are used."""
    name = tenants()
    plays = [{"hosts": "localhost", "gather_facts": False, "tasks": [{"name": "tenant", MODULE: {"name": name}}]}]
    res = run_playbook(plays, env={"K8S_AUTH_KUBECONFIG": kube_api.kubeconfig})
    assert res.rc == 0, res.stdout[-2000:]
    assert res.result("tenant")["created"][0] == f"Namespace/{name}"
    assert namespace_exists(kube_api, name)


def test_namespace_handed_over_between_tenants_in_one_run(kube_api, tenants):
    team_a, team_b = tenants(), tenants()
    shared = f"{team_a}-shared"
    first = {
        "tenants": [
            {"name": team_a, "namespaces": [team_a, {"name": shared, "quota": {"pods": 3}, "labels": {"tier": "x"}}]},
            {"name": team_b},
        ],
        "quota": {"pods": 10},
    }
    ok(run(kube_api, first))
    api = core(kube_api)
    assert api.read_namespaced_resource_quota("anvil-tenant", shared).spec.hard == {"pods": "3"}
    assert api.read_namespace(shared).metadata.labels["tier"] == "x"
    wait_for_default_sa(kube_api, shared)
    api.create_namespaced_config_map(shared, {"metadata": {"name": "keep-me"}, "data": {"a": "b"}})
    moved = ok(
        run(
            kube_api,
            {"tenants": [{"name": team_a}, {"name": team_b, "namespaces": [team_b, shared]}], "quota": {"pods": 10}},
        )
    )
    by_name = {t["name"]: t for t in moved["tenants"]}
    assert by_name[team_a]["deleted"] == []
    assert f"Namespace/{shared}" in by_name[team_b]["updated"]
    labels = api.read_namespace(shared).metadata.labels
    assert labels[TENANT_LABEL] == team_b
    assert "tier" not in labels  # set by the old spec through the module, removed with it
    assert api.read_namespaced_resource_quota("anvil-tenant", shared).spec.hard == {"pods": "10"}
    assert api.read_namespaced_config_map("keep-me", shared).data == {"a": "b"}
