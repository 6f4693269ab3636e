"""Result shaping of the tenant module (plugins/modules/tenant.py), without a cluster."""

import yaml
from ansible_collections.anvil.cluster.plugins.modules import tenant


def outcome(action, ref, *, tenant_name="t", error=None, before=None, after=None):
    kind = ref.split("/")[0]
    return {
        "action": action,
        "ref": ref,
        "key": (kind, None, ref.split("/")[-1]),
        "tenant": tenant_name,
        "before": before,
        "after": after,
        "error": error,
    }


def test_summarize_groups_by_tenant_and_builds_diffs():
    plan = {
        "tenants": [
            {"name": "t", "state": "present", "namespaces": ["t"]},
            {"name": "u", "state": "absent", "namespaces": []},
        ]
    }
    ns_before = {"kind": "Namespace", "metadata": {"name": "t", "uid": "1", "labels": {"a": "1"}}, "status": {}}
    ns_after = {"kind": "Namespace", "metadata": {"name": "t", "uid": "1", "labels": {"a": "2"}}}
    outcomes = [
        outcome("update", "Namespace/t", before=ns_before, after=ns_after),
        outcome("create", "ResourceQuota/t/anvil-tenant", after={"kind": "ResourceQuota", "metadata": {"name": "q"}}),
        outcome("replace", "RoleBinding/t/anvil-tenant-edit"),
        outcome("create", "LimitRange/t/anvil-tenant", error="422 Invalid: bad"),
        outcome("delete", "Namespace/u", tenant_name="u", before={"kind": "Namespace", "metadata": {"name": "u"}}),
    ]
    tenants, diffs = tenant.summarize(plan, outcomes, want_diff=True)
    t, u = tenants
    assert t["created"] == ["ResourceQuota/t/anvil-tenant"]
    assert t["updated"] == ["Namespace/t", "RoleBinding/t/anvil-tenant-edit"]
    assert t["failed"] == [{"ref": "LimitRange/t/anvil-tenant", "error": "422 Invalid: bad"}]
    assert u["deleted"] == ["Namespace/u"]
    assert [d["before_header"] for d in diffs] == ["tenant t", "tenant u"]
    assert diffs[0]["before"]["Namespace/t"] == {"kind": "Namespace", "metadata": {"name": "t", "labels": {"a": "1"}}}
    assert diffs[0]["after"]["Namespace/t"]["metadata"]["labels"] == {"a": "2"}
    assert diffs[1]["after"] == {}
    assert tenant.summarize(plan, outcomes, want_diff=False)[1] == []


def test_clean_params_drops_unset_suboptions():
    params = {"tenants": [{"name": "a", "quota": None, "limits": {"max": {"cpu": "1"}, "min": None}}], "x": None}
    assert tenant._clean_params(params) == {"tenants": [{"name": "a", "limits": {"max": {"cpu": "1"}}}]}


def test_documented_options_match_the_argument_spec():
    documented = yaml.safe_load(tenant.DOCUMENTATION)["options"]
    spec = tenant.argument_spec()
    own = dict((k, v) for k, v in spec.items() if k in documented)
    assert set(own) == set(documented)
    for name, option in own.items():
        assert option.get("default") == documented[name].get("default"), name
        assert option.get("choices") == documented[name].get("choices"), name
    assert set(spec["tenants"]["options"]) == set(documented["tenants"]["suboptions"])
    yaml.safe_load(tenant.EXAMPLES)
