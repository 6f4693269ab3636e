"""Unit tests of release planning: rendering/validation, identity, prune set, change detection, readiness."""

import copy

import pytest
import yaml
from ansible_collections.anvil.cluster.plugins.module_utils import release_plan as plan

CLUSTER_SCOPED = {"Namespace", "ClusterRole", "CustomResourceDefinition"}


def is_namespaced(api_version, kind):
    if kind == "Widget":
        return None  # not served
    return kind not in CLUSTER_SCOPED


def cm(name, namespace=None, **extra):
    meta = {"name": name}
    if namespace:
        meta["namespace"] = namespace
    meta.update(extra)
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta, "data": {"k": name}}


def deploy(name):
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name}, "spec": {}}


def test_render_sets_namespace_marks_ownership_and_sorts():
    docs = [
        deploy("web"),
        cm("settings"),
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "x", "namespace": "y"}},
    ]
    out = plan.render(docs, "shop", "ns", is_namespaced)
    assert [o["kind"] for o in out] == ["Namespace", "ConfigMap", "Deployment"]
    assert "namespace" not in out[0]["metadata"]  # cluster-scoped: namespace dropped
    settings = out[1]["metadata"]
    assert settings["namespace"] == "ns"
    assert settings["labels"][plan.RELEASE_LABEL] == "shop"
    assert settings["annotations"][plan.ANNOTATION_NAME] == "shop"
    assert settings["annotations"][plan.ANNOTATION_NAMESPACE] == "ns"
    # The input is not modified.
    assert "labels" not in docs[1]["metadata"]


def test_render_collects_every_problem():
    docs = [
        cm("ok"),
        cm("ok"),  # duplicate
        {"kind": "ConfigMap", "metadata": {"name": "noversion"}},
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {}},
        cm("elsewhere", namespace="other"),
        {"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"}},
        cm("Bad_Name"),
        "just a string",
    ]
    with pytest.raises(plan.PlanError) as info:
        plan.render(docs, "shop", "ns", is_namespaced)
    text = str(info.value)
    assert len(info.value.problems) == 7
    for needle in (
        "duplicates",
        "no apiVersion",
        "no metadata.name",
        "allowed_namespaces",
        "does not serve",
        "invalid metadata.name",
        "not a mapping",
    ):
        assert needle in text


def test_render_allowed_namespaces():
    out = plan.render([cm("a", namespace="other")], "shop", "ns", is_namespaced, ["other"])
    assert out[0]["metadata"]["namespace"] == "other"
    assert plan.render([cm("a", namespace="any")], "shop", "ns", is_namespaced, ["*"])


def test_render_expands_lists_drops_empty_docs_and_server_fields():
    docs = list(
        yaml.safe_load_all(
            "---\n---\napiVersion: v1\nkind: List\nitems:\n- {apiVersion: v1, kind: ConfigMap, "
            "metadata: {name: a, resourceVersion: '3', uid: u}, status: {x: 1}}\n"
        )
    )
    out = plan.render(docs, "shop", "ns", is_namespaced)
    assert len(out) == 1 and "resourceVersion" not in out[0]["metadata"] and "status" not in out[0]


def test_render_empty_release_is_an_error():
    with pytest.raises(plan.PlanError, match="no objects"):
        plan.render([None], "shop", "ns", is_namespaced)


def test_identity_ignores_api_version_but_not_group():
    a = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "w", "namespace": "n"}}
    b = dict(a, apiVersion="apps/v1beta2")
    c = dict(a, apiVersion="extensions/v1beta1")
    assert plan.identity(a) == plan.identity(b) != plan.identity(c)


def test_prune_set_drops_removed_objects_except_keep():
    kept = cm("kept", "ns", annotations={plan.ANNOTATION_POLICY: "keep"})
    previous = [cm("a", "ns"), cm("gone", "ns"), kept, deploy("old")]
    pruned = plan.prune_set(previous, [cm("a", "ns")])
    assert [o["metadata"]["name"] for o in pruned] == ["old", "gone"]  # reverse install order


def test_ownership_rules():
    ours = cm("a", "ns", annotations={plan.ANNOTATION_NAME: "shop", plan.ANNOTATION_NAMESPACE: "ns"})
    theirs = cm("a", "ns", annotations={plan.ANNOTATION_NAME: "blog", plan.ANNOTATION_NAMESPACE: "ns"})
    same_name_other_ns = cm("a", "ns", annotations={plan.ANNOTATION_NAME: "shop", plan.ANNOTATION_NAMESPACE: "prod"})
    unmanaged = cm("a", "ns")
    assert plan.ownership_problem(ours, "shop", "ns") is None
    assert "belongs to release ns/blog" in plan.ownership_problem(theirs, "shop", "ns")
    assert "belongs to release prod/shop" in plan.ownership_problem(same_name_other_ns, "shop", "ns")
    assert "adopt=true" in plan.ownership_problem(unmanaged, "shop", "ns")
    assert plan.ownership_problem(unmanaged, "shop", "ns", adopt=True) is None
    assert "belongs" in plan.ownership_problem(theirs, "shop", "ns", adopt=True)


def test_is_changed_ignores_server_noise():
    live = cm("a", "ns", resourceVersion="10", managedFields=[{"manager": "x"}], uid="u", generation=3)
    live["status"] = {"anything": True}
    dry = cm("a", "ns", resourceVersion="11", managedFields=[{"manager": "y"}], uid="u", generation=4)
    assert not plan.is_changed(live, dry)
    assert plan.is_changed(live, dict(dry, data={"k": "other"}))


def test_redact_secret_values_keeps_changes_visible():
    secret = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"}, "data": {"password": "c2VjcmV0"}}
    other = dict(secret, data={"password": "b3RoZXI="})
    shown = plan.redact(secret)
    assert "c2VjcmV0" not in str(shown) and shown["data"]["password"].startswith("<redacted sha256:")
    assert plan.redact(other)["data"]["password"] != shown["data"]["password"]
    assert secret["data"]["password"] == "c2VjcmV0"
    entry = plan.diff_entry(None, secret, yaml.safe_dump)
    assert entry["before"] == "" and "c2VjcmV0" not in entry["after"] and "(absent)" in entry["before_header"]


def test_semantic_view_equates_equal_quantities():
    def pod(cpu, mem):
        return {
            "kind": "Deployment",
            "spec": {
                "template": {
                    "spec": {"containers": [{"name": "c", "resources": {"requests": {"cpu": cpu, "memory": mem}}}]}
                }
            },
        }

    assert plan.semantic_view([pod("1000m", "1Gi")]) == plan.semantic_view([pod("1", "1073741824")])
    assert plan.semantic_view([pod("1", "1Gi")]) != plan.semantic_view([pod("2", "1Gi")])
    # Values that are not quantities are left alone.
    odd = {"kind": "X", "spec": {"limits": {"a": "not a quantity"}}}
    assert plan.semantic_view([odd]) == [odd]


def dep_status(*, generation=2, observed=2, replicas=3, updated=3, total=3, available=3, conditions=()):
    return {
        "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "ns", "generation": generation},
        "spec": {"replicas": replicas},
        "status": {
            "observedGeneration": observed,
            "updatedReplicas": updated,
            "replicas": total,
            "availableReplicas": available,
            "conditions": list(conditions),
        },
    }


@pytest.mark.parametrize(
    ("obj", "state"),
    [
        (dep_status(), "ready"),
        (dep_status(observed=1), "waiting"),
        (dep_status(updated=2), "waiting"),
        (dep_status(total=4), "waiting"),
        (dep_status(available=2), "waiting"),
        (dep_status(available=0, conditions=[{"type": "Progressing", "reason": "ProgressDeadlineExceeded"}]), "failed"),
        (
            {
                "kind": "Job",
                "metadata": {"name": "j"},
                "status": {"conditions": [{"type": "Complete", "status": "True"}]},
            },
            "ready",
        ),
        (
            {
                "kind": "Job",
                "metadata": {"name": "j"},
                "status": {"conditions": [{"type": "Failed", "status": "True"}]},
            },
            "failed",
        ),
        ({"kind": "Job", "metadata": {"name": "j"}, "status": {}}, "waiting"),
        ({"kind": "PersistentVolumeClaim", "metadata": {"name": "p"}, "status": {"phase": "Bound"}}, "ready"),
        ({"kind": "PersistentVolumeClaim", "metadata": {"name": "p"}, "status": {"phase": "Pending"}}, "waiting"),
        (
            {
                "kind": "DaemonSet",
                "metadata": {"name": "d"},
                "status": {"desiredNumberScheduled": 2, "updatedNumberScheduled": 2, "numberAvailable": 1},
            },
            "waiting",
        ),
        (
            {
                "kind": "DaemonSet",
                "metadata": {"name": "d"},
                "status": {"desiredNumberScheduled": 2, "updatedNumberScheduled": 2, "numberAvailable": 2},
            },
            "ready",
        ),
        (
            {
                "kind": "StatefulSet",
                "metadata": {"name": "s"},
                "spec": {"replicas": 2},
                "status": {"readyReplicas": 2, "updatedReplicas": 2, "currentRevision": "a", "updateRevision": "b"},
            },
            "waiting",
        ),
        (
            {
                "kind": "StatefulSet",
                "metadata": {"name": "s"},
                "spec": {"replicas": 2},
                "status": {"readyReplicas": 2, "updatedReplicas": 2, "currentRevision": "b", "updateRevision": "b"},
            },
            "ready",
        ),
        (cm("a"), "ready"),
    ],
)
def test_readiness(obj, state):
    assert plan.readiness(obj)[0] == state


def test_fingerprint_ignores_status_and_bookkeeping_but_not_content():
    live = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": "web",
            "namespace": "shop",
            "resourceVersion": "10",
            "generation": 2,
            "managedFields": [{"manager": "x"}],
            "labels": {"app": "web"},
            "annotations": {"deployment.kubernetes.io/revision": "3"},
        },
        "spec": {"replicas": 2},
        "status": {"readyReplicas": 1},
    }
    same = copy.deepcopy(live)
    same["metadata"].update(resourceVersion="11", managedFields=[])
    same["metadata"]["annotations"]["deployment.kubernetes.io/revision"] = "4"
    same["status"] = {"readyReplicas": 2}
    assert plan.fingerprint(same) == plan.fingerprint(live)
    for edit in (
        lambda o: o["spec"].update(replicas=3),
        lambda o: o["metadata"]["labels"].pop("app"),
        lambda o: o["metadata"]["annotations"].update(note="x"),
    ):
        other = copy.deepcopy(live)
        edit(other)
        assert plan.fingerprint(other) != plan.fingerprint(live)
