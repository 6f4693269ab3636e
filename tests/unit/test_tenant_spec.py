"""Tenant validation, rendering and planning (plugins/module_utils/tenant_spec.py)."""

import copy

import pytest
from ansible_collections.anvil.cluster.plugins.module_utils.reconcile import object_ref
from ansible_collections.anvil.cluster.plugins.module_utils.tenant_spec import (
    LABEL_MANAGED_BY,
    LABEL_TENANT,
    MANAGER,
    TenantSpecError,
    apply_limit_range_defaults,
    blocked_namespace_errors,
    normalize_tenant,
    normalize_tenants,
    plan_tenants,
    render_tenant,
)

FULL = {
    "name": "payments",
    "namespaces": ["payments-dev", {"name": "payments-prod", "quota": {"pods": 50}, "labels": {"tier": "prod"}}],
    "quota": {"requests.cpu": "8", "limits.memory": "64Gi", "pods": 200, "count/deployments.apps": "20"},
    "limits": {
        "default_request": {"cpu": "100m", "memory": "128Mi"},
        "default_limit": {"cpu": "0.5", "memory": "512Mi"},
        "max": {"cpu": "4", "memory": "8Gi"},
        "max_limit_request_ratio": {"cpu": 4},
    },
    "members": [
        {"kind": "Group", "name": "payments-devs", "role": "edit"},
        {"kind": "User", "name": "alice", "role": "admin"},
        {"kind": "User", "name": "auditor", "role": "view"},
        {"kind": "ServiceAccount", "name": "deployer", "namespace": "ci", "role": "edit"},
    ],
    "allow_from_namespaces": ["monitoring", "ingress-nginx"],
    "pod_security": "restricted",
    "labels": {"cost-center": "cc-1"},
    "annotations": {"owner": "team payments"},
}


def errors_of(raw):
    with pytest.raises(TenantSpecError) as info:
        normalize_tenant(raw)
    return info.value.errors


def by_ref(objects):
    return dict((object_ref(o), o) for o in objects)


# --------------------------------------------------------------------------- validation


def test_full_spec_normalizes():
    spec = normalize_tenant(copy.deepcopy(FULL))
    assert [n["name"] for n in spec["namespaces"]] == ["payments-dev", "payments-prod"]
    dev, prod = spec["namespaces"]
    assert dev["quota"] == {"requests.cpu": "8", "limits.memory": "64Gi", "pods": "200", "count/deployments.apps": "20"}
    assert prod["quota"] == {"pods": "50"}  # namespace-level quota replaces the tenant-level one
    assert prod["labels"] == {"cost-center": "cc-1", "tier": "prod"}
    assert dev["limits"]["default"] == {"cpu": "500m", "memory": "512Mi"}  # canonical quantities
    assert spec["allow_from_namespaces"] == ["ingress-nginx", "monitoring"]
    sa = next(m for m in spec["members"] if m["kind"] == "ServiceAccount")
    assert sa["namespace"] == "ci"


def test_defaults():
    spec = normalize_tenant({"name": "team-a"})
    assert [n["name"] for n in spec["namespaces"]] == ["team-a"]
    assert spec["pod_security"] == "baseline"
    assert spec["network_isolation"] is True
    assert spec["state"] == "present"
    assert spec["force"] is False


@pytest.mark.parametrize(
    ("patch", "field"),
    [
        ({"quota": {"requests.cpu": "2x"}}, "quota.requests.cpu"),
        ({"quota": {"limits.memory": "-1Gi"}}, "quota.limits.memory"),
        ({"quota": {"pods": "1.5"}}, "quota.pods"),
        ({"quota": {"pods": "500m"}}, "quota.pods"),
        ({"quota": {"count/deployments.apps": "2.5"}}, "quota.count/deployments.apps"),
        ({"quota": {"gpus": "1"}}, "quota.gpus"),
        ({"quota": {"bad name/x": "1"}}, "quota.bad name/x"),
        ({"limits": {"max": {"cpu": "1K"}}}, "limits.max.cpu"),
        ({"limits": {"max": {"cpus": "1"}}}, "limits.max.cpus"),
        ({"limits": {"maximum": {"cpu": "1"}}}, "limits.maximum"),
        ({"limits": {"min": {"cpu": "2"}, "max": {"cpu": "1"}}}, "limits: min.cpu"),
        (
            {"limits": {"default_request": {"memory": "1Gi"}, "default_limit": {"memory": "512Mi"}}},
            "default_request.memory",
        ),
        ({"limits": {"default_limit": {"cpu": "8"}, "max": {"cpu": "4"}}}, "default_limit.cpu"),
        ({"limits": {"max_limit_request_ratio": {"cpu": "0.5"}}}, "limits.max_limit_request_ratio.cpu"),
        ({"limits": {"min": {"cpu": "1"}, "max": {"cpu": "2"}, "max_limit_request_ratio": {"cpu": "3"}}}, "max/min"),
        ({"members": [{"kind": "User", "name": "bob", "role": "owner"}]}, "members[0].role"),
        ({"members": [{"kind": "Robot", "name": "bob", "role": "view"}]}, "members[0].kind"),
        ({"members": [{"kind": "User", "name": "", "role": "view"}]}, "members[0].name"),
        ({"members": [{"kind": "User", "name": "bob", "role": "view"}] * 2}, "members[1]"),
        ({"members": [{"kind": "ServiceAccount", "name": "Bad_SA", "role": "view"}]}, "members[0].name"),
        ({"namespaces": ["Team_A"]}, "namespaces[0]"),
        ({"namespaces": ["a" * 64]}, "namespaces[0]"),
        ({"namespaces": ["kube-system"]}, "namespaces[0]"),
        ({"namespaces": ["x", "x"]}, "namespaces[1]"),
        ({"namespaces": []}, "namespaces"),
        ({"namespaces": [{"name": "x", "quotas": {}}]}, "namespaces[0]"),
        ({"namespaces": [{"name": "x", "quota": {"cpu": "lots"}}]}, "namespaces[0].quota.cpu"),
        ({"labels": {"anvil.cluster/tenant": "other"}}, "labels"),
        ({"labels": {"pod-security.kubernetes.io/enforce": "privileged"}}, "labels"),
        ({"labels": {"team": "has space"}}, "labels.team"),
        ({"labels": {"team": True}}, "labels.team"),
        ({"allow_from_namespaces": ["Ingress"]}, "allow_from_namespaces[0]"),
        ({"pod_security": "strict"}, "pod_security"),
    ],
)
def test_bad_input_names_the_field(patch, field):
    raw = {"name": "team-a"}
    raw.update(patch)
    errors = errors_of(raw)
    assert any(field in e for e in errors), errors


def test_bad_tenant_name():
    assert "name" in errors_of({"name": "Team A"})[0]


def test_every_problem_is_reported_at_once():
    errors = errors_of({"name": "t", "quota": {"cpu": "x", "memory": "y"}, "members": [{"name": "b", "role": "boss"}]})
    assert len(errors) == 3


def test_quota_accepts_server_resource_names():
    spec = normalize_tenant(
        {
            "name": "t",
            "quota": {
                "requests.storage": "1Ti",
                "gold.storageclass.storage.k8s.io/requests.storage": "100Gi",
                "gold.storageclass.storage.k8s.io/persistentvolumeclaims": 5,
                "requests.nvidia.com/gpu": 2,
                "hugepages-2Mi": "1Gi",
                "services.loadbalancers": 0,
                "count/jobs.batch": 10,
                "cpu": "1500m",
            },
        }
    )
    assert spec["namespaces"][0]["quota"]["cpu"] == "1500m"


def test_limit_range_defaulting_matches_the_server():
    item = apply_limit_range_defaults({"type": "Container", "max": {"cpu": "2"}, "min": {"memory": "64Mi"}})
    assert item == {
        "type": "Container",
        "max": {"cpu": "2"},
        "min": {"memory": "64Mi"},
        "default": {"cpu": "2"},
        "defaultRequest": {"cpu": "2", "memory": "64Mi"},
    }


def test_tenants_list_inherits_top_level_options_and_checks_clashes():
    specs = normalize_tenants(
        {
            "tenants": [{"name": "a"}, {"name": "b", "pod_security": "privileged"}],
            "pod_security": "restricted",
            "quota": {"pods": 10},
            "state": "present",
        }
    )
    assert [s["pod_security"] for s in specs] == ["restricted", "privileged"]
    assert specs[1]["namespaces"][0]["quota"] == {"pods": "10"}
    with pytest.raises(TenantSpecError) as info:
        normalize_tenants(
            {"tenants": [{"name": "a", "namespaces": ["shared"]}, {"name": "b", "namespaces": ["shared"]}]}
        )
    assert "tenants[1].namespaces[0]" in str(info.value)
    with pytest.raises(TenantSpecError) as info:
        normalize_tenants({"tenants": [{"name": "a"}, {"name": "a"}]})
    assert "tenants[1].name" in str(info.value)
    with pytest.raises(TenantSpecError) as info:
        normalize_tenants({"tenants": [{"name": "a", "quota": {"cpu": "zz"}}]})
    assert "tenants[0].quota.cpu" in str(info.value)


# --------------------------------------------------------------------------- rendering


def test_render_objects_and_labels():
    objects = by_ref(render_tenant(normalize_tenant(copy.deepcopy(FULL))))
    assert set(objects) == {
        "Namespace/payments-dev",
        "Namespace/payments-prod",
        "ResourceQuota/payments-dev/anvil-tenant",
        "ResourceQuota/payments-prod/anvil-tenant",
        "LimitRange/payments-dev/anvil-tenant",
        "LimitRange/payments-prod/anvil-tenant",
        "RoleBinding/payments-dev/anvil-tenant-admin",
        "RoleBinding/payments-dev/anvil-tenant-edit",
        "RoleBinding/payments-dev/anvil-tenant-view",
        "RoleBinding/payments-prod/anvil-tenant-admin",
        "RoleBinding/payments-prod/anvil-tenant-edit",
        "RoleBinding/payments-prod/anvil-tenant-view",
        "NetworkPolicy/payments-dev/anvil-tenant-isolation",
        "NetworkPolicy/payments-dev/anvil-allow-from-monitoring",
        "NetworkPolicy/payments-dev/anvil-allow-from-ingress-nginx",
        "NetworkPolicy/payments-prod/anvil-tenant-isolation",
        "NetworkPolicy/payments-prod/anvil-allow-from-monitoring",
        "NetworkPolicy/payments-prod/anvil-allow-from-ingress-nginx",
    }
    for obj in objects.values():
        assert obj["metadata"]["labels"][LABEL_MANAGED_BY] == MANAGER
        assert obj["metadata"]["labels"][LABEL_TENANT] == "payments"
    ns = objects["Namespace/payments-prod"]["metadata"]
    assert ns["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
    assert ns["labels"]["tier"] == "prod"
    assert ns["annotations"] == {"owner": "team payments"}
    edit = objects["RoleBinding/payments-dev/anvil-tenant-edit"]
    assert edit["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "edit"}
    assert edit["subjects"] == [
        {"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": "payments-devs"},
        {"kind": "ServiceAccount", "name": "deployer", "namespace": "ci"},
    ]
    iso = objects["NetworkPolicy/payments-dev/anvil-tenant-isolation"]["spec"]
    assert iso["podSelector"] == {}
    assert iso["ingress"] == [{"from": [{"namespaceSelector": {"matchLabels": {LABEL_TENANT: "payments"}}}]}]
    allow = objects["NetworkPolicy/payments-dev/anvil-allow-from-monitoring"]["spec"]
    assert allow["ingress"][0]["from"][0]["namespaceSelector"]["matchLabels"] == {
        "kubernetes.io/metadata.name": "monitoring"
    }
    limits = objects["LimitRange/payments-dev/anvil-tenant"]["spec"]["limits"][0]
    assert limits["maxLimitRequestRatio"] == {"cpu": "4"}


def test_render_without_optional_parts():
    objects = by_ref(
        render_tenant(normalize_tenant({"name": "t", "network_isolation": False, "limits": {}, "quota": {}}))
    )
    assert list(objects) == ["Namespace/t"]
    assert render_tenant(normalize_tenant({"name": "t", "state": "absent"})) == []


# --------------------------------------------------------------------------- planning


def as_server(obj, manager=MANAGER):
    """What the API server returns for an applied object: metadata bookkeeping, canonical values, managedFields."""
    result = copy.deepcopy(obj)
    meta = result["metadata"]
    meta["uid"] = "uid-" + meta["name"]
    meta["resourceVersion"] = "1"
    if result["kind"] == "Namespace":
        meta["labels"]["kubernetes.io/metadata.name"] = meta["name"]
    fields = {"f:metadata": {"f:labels": dict(("f:" + k, {}) for k in obj["metadata"]["labels"])}}
    for key in obj:
        if key not in ("apiVersion", "kind", "metadata"):
            fields["f:" + key] = _fields(obj[key])
    meta["managedFields"] = [{"manager": manager, "operation": "Apply", "fieldsV1": fields}]
    return result


def _fields(value):
    if isinstance(value, dict):
        return dict(("f:" + k, _fields(v)) for k, v in value.items())
    return {}


def cluster_of(objects):
    namespaces = dict((o["metadata"]["name"], as_server(o)) for o in objects if o["kind"] == "Namespace")
    namespaced = [as_server(o) for o in objects if o["kind"] != "Namespace"]
    return namespaces, namespaced


def actions_of(plan):
    return sorted((a["action"], a["ref"]) for t in plan["tenants"] for a in t["actions"])


def test_first_run_creates_everything_then_nothing():
    spec = normalize_tenant(copy.deepcopy(FULL))
    plan = plan_tenants([spec], {}, [])
    assert not plan["errors"]
    assert len(actions_of(plan)) == 18
    assert all(a == "create" for a, _obj in actions_of(plan))
    namespaces, objects = cluster_of(render_tenant(spec))
    assert actions_of(plan_tenants([spec], namespaces, objects)) == []


def test_semantically_equal_quantities_are_no_change():
    spec = normalize_tenant({"name": "t", "quota": {"requests.cpu": "1", "requests.memory": "1Gi"}})
    namespaces, objects = cluster_of(render_tenant(spec))
    objects[0]["spec"]["hard"] = {"requests.cpu": "1000m", "requests.memory": "1073741824"}
    assert actions_of(plan_tenants([spec], namespaces, objects)) == []
    objects[0]["spec"]["hard"]["requests.cpu"] = "1001m"
    assert actions_of(plan_tenants([spec], namespaces, objects)) == [("update", "ResourceQuota/t/anvil-tenant")]


def test_dropped_quota_key_is_an_update_through_managed_fields():
    old = normalize_tenant({"name": "t", "quota": {"pods": 10, "services": 5}})
    new = normalize_tenant({"name": "t", "quota": {"pods": 10}})
    namespaces, objects = cluster_of(render_tenant(old))
    assert actions_of(plan_tenants([new], namespaces, objects)) == [("update", "ResourceQuota/t/anvil-tenant")]


def test_keys_set_by_others_are_not_a_change():
    spec = normalize_tenant({"name": "t", "quota": {"pods": 10}})
    namespaces, objects = cluster_of(render_tenant(spec))
    namespaces["t"]["metadata"]["labels"]["added-by-someone"] = "x"
    namespaces["t"]["metadata"]["annotations"] = {"note": "x"}
    assert actions_of(plan_tenants([spec], namespaces, objects)) == []


def test_dropped_label_is_an_update():
    old = normalize_tenant({"name": "t", "labels": {"a": "1", "b": "2"}})
    new = normalize_tenant({"name": "t", "labels": {"a": "1"}})
    namespaces, objects = cluster_of(render_tenant(old))
    assert actions_of(plan_tenants([new], namespaces, objects)) == [("update", "Namespace/t")]


def test_member_changes():
    old = normalize_tenant({"name": "t", "members": [{"kind": "User", "name": "a", "role": "edit"}]})
    new = normalize_tenant(
        {"name": "t", "members": [{"kind": "User", "name": "a", "role": "view"}, {"name": "b", "role": "edit"}]}
    )
    namespaces, objects = cluster_of(render_tenant(old))
    assert actions_of(plan_tenants([new], namespaces, objects)) == [
        ("create", "RoleBinding/t/anvil-tenant-view"),
        ("update", "RoleBinding/t/anvil-tenant-edit"),
    ]
    gone = normalize_tenant({"name": "t", "members": []})
    assert actions_of(plan_tenants([gone], namespaces, objects)) == [("delete", "RoleBinding/t/anvil-tenant-edit")]


def test_changed_role_ref_is_a_replacement():
    spec = normalize_tenant({"name": "t", "members": [{"kind": "User", "name": "a", "role": "edit"}]})
    namespaces, objects = cluster_of(render_tenant(spec))
    binding = next(o for o in objects if o["kind"] == "RoleBinding")
    binding["roleRef"]["name"] = "cluster-admin"
    assert actions_of(plan_tenants([spec], namespaces, objects)) == [("replace", "RoleBinding/t/anvil-tenant-edit")]


def test_isolation_and_allow_list_changes():
    old = normalize_tenant({"name": "t", "allow_from_namespaces": ["monitoring"]})
    namespaces, objects = cluster_of(render_tenant(old))
    new = normalize_tenant({"name": "t", "allow_from_namespaces": ["ingress"]})
    assert actions_of(plan_tenants([new], namespaces, objects)) == [
        ("create", "NetworkPolicy/t/anvil-allow-from-ingress"),
        ("delete", "NetworkPolicy/t/anvil-allow-from-monitoring"),
    ]
    off = normalize_tenant({"name": "t", "network_isolation": False, "allow_from_namespaces": ["monitoring"]})
    assert actions_of(plan_tenants([off], namespaces, objects)) == [
        ("delete", "NetworkPolicy/t/anvil-allow-from-monitoring"),
        ("delete", "NetworkPolicy/t/anvil-tenant-isolation"),
    ]


def test_namespace_removed_from_list_is_deleted_with_its_content_implicitly():
    old = normalize_tenant({"name": "t", "namespaces": ["t-a", "t-b"], "quota": {"pods": 1}})
    namespaces, objects = cluster_of(render_tenant(old))
    new = normalize_tenant({"name": "t", "namespaces": ["t-a"], "quota": {"pods": 1}})
    plan = plan_tenants([new], namespaces, objects)
    assert actions_of(plan) == [("delete", "Namespace/t-b")]
    assert plan["tenants"][0]["delete_namespaces"] == ["t-b"]
    errors, blocked = blocked_namespace_errors(plan, {"t-b": ["Pod/web-0", "PersistentVolumeClaim/data"]})
    assert blocked == {"t-b": ["Pod/web-0", "PersistentVolumeClaim/data"]}
    assert "Pod/web-0" in errors[0] and "force" in errors[0]
    assert blocked_namespace_errors(plan, {}) == ([], {})
    forced = plan_tenants([dict(new, force=True)], namespaces, objects)
    assert blocked_namespace_errors(forced, {"t-b": ["Pod/web-0"]}) == ([], {})


def test_absent_tenant_deletes_namespaces_only():
    old = normalize_tenant({"name": "t", "namespaces": ["t-a", "t-b"], "quota": {"pods": 1}})
    namespaces, objects = cluster_of(render_tenant(old))
    plan = plan_tenants([normalize_tenant({"name": "t", "state": "absent"})], namespaces, objects)
    assert actions_of(plan) == [("delete", "Namespace/t-a"), ("delete", "Namespace/t-b")]
    namespaces["t-a"]["metadata"]["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    plan = plan_tenants([normalize_tenant({"name": "t", "state": "absent"})], namespaces, objects)
    assert actions_of(plan) == [("delete", "Namespace/t-b")]


def test_namespace_of_another_tenant_is_refused():
    namespaces, objects = cluster_of(render_tenant(normalize_tenant({"name": "other", "namespaces": ["shared"]})))
    plan = plan_tenants([normalize_tenant({"name": "t", "namespaces": ["t", "shared"]})], namespaces, objects)
    assert plan["errors"] == [
        "namespaces[1]: namespace 'shared' already belongs to tenant 'other'; remove it from that tenant first"
    ]


def test_namespace_handed_over_within_one_run():
    namespaces, objects = cluster_of(render_tenant(normalize_tenant({"name": "a", "namespaces": ["a", "shared"]})))
    specs = normalize_tenants(
        {"tenants": [{"name": "a", "namespaces": ["a"]}, {"name": "b", "namespaces": ["b", "shared"]}]}
    )
    plan = plan_tenants(specs, namespaces, objects)
    assert plan["errors"] == []
    refs = actions_of(plan)
    # Nothing of the shared namespace is deleted: tenant b takes over the namespace and the objects of the
    # same names (deleting them after b applied them would remove b's objects).
    assert [r for r in refs if r[0] == "delete"] == []
    assert ("update", "Namespace/shared") in refs
    assert ("update", "NetworkPolicy/shared/anvil-tenant-isolation") in refs


def test_unmanaged_existing_namespace_is_adopted_and_terminating_is_refused():
    existing = {"shared": {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "shared", "labels": {}}}}
    spec = normalize_tenant({"name": "t", "namespaces": ["shared"], "network_isolation": False})
    assert actions_of(plan_tenants([spec], existing, [])) == [("update", "Namespace/shared")]
    existing["shared"]["metadata"]["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    assert "still being deleted" in plan_tenants([spec], existing, [])["errors"][0]


def test_prune_removes_unlisted_tenants():
    namespaces, objects = cluster_of(
        render_tenant(normalize_tenant({"name": "a"})) + render_tenant(normalize_tenant({"name": "b"}))
    )
    specs = normalize_tenants({"tenants": [{"name": "a"}]})
    assert actions_of(plan_tenants(specs, namespaces, objects)) == []
    plan = plan_tenants(specs, namespaces, objects, prune=True, prune_force=True)
    assert actions_of(plan) == [("delete", "Namespace/b")]
    assert plan["tenants"][1]["force"] is True


# --------------------------------------------------------------------------- cluster-tier isolation


def test_cluster_isolation_denies_other_tenants_except_allowed_namespaces():
    spec = normalize_tenant({"name": "t", "cluster_isolation": True, "allow_from_namespaces": ["monitoring"]})
    policy = by_ref(render_tenant(spec))["AdminNetworkPolicy/anvil-tenant-t"]
    assert policy["apiVersion"] == "policy.networking.k8s.io/v1alpha1"
    assert "namespace" not in policy["metadata"]
    assert policy["metadata"]["labels"] == {LABEL_MANAGED_BY: MANAGER, LABEL_TENANT: "t"}
    assert policy["spec"]["subject"] == {"namespaces": {"matchLabels": {LABEL_TENANT: "t"}}}
    (rule,) = policy["spec"]["ingress"]
    assert rule["action"] == "Deny"
    assert rule["from"] == [
        {
            "namespaces": {
                "matchExpressions": [
                    {"key": LABEL_TENANT, "operator": "Exists"},
                    {"key": LABEL_TENANT, "operator": "NotIn", "values": ["t"]},
                    {"key": "kubernetes.io/metadata.name", "operator": "NotIn", "values": ["monitoring"]},
                ]
            }
        }
    ]
    assert "AdminNetworkPolicy/anvil-tenant-t" not in by_ref(render_tenant(normalize_tenant({"name": "t"})))


def test_cluster_isolation_on_off_and_tenant_removal():
    on = normalize_tenant({"name": "t", "cluster_isolation": True})
    namespaces, objects = cluster_of(render_tenant(on))
    assert actions_of(plan_tenants([on], namespaces, objects)) == []
    off = normalize_tenant({"name": "t"})
    assert actions_of(plan_tenants([off], namespaces, objects)) == [("delete", "AdminNetworkPolicy/anvil-tenant-t")]
    gone = plan_tenants([normalize_tenant({"name": "t", "state": "absent"})], namespaces, objects)
    assert actions_of(gone) == [("delete", "AdminNetworkPolicy/anvil-tenant-t"), ("delete", "Namespace/t")]
    assert "cluster_isolation: must be true or false" in errors_of({"name": "t", "cluster_isolation": "yes"})[0]
