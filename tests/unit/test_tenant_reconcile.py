"""Generic compare and apply ordering used by the tenant module (plugins/module_utils/reconcile.py)."""

import threading

from ansible_collections.anvil.cluster.plugins.module_utils.k8s.client import ApiError
from ansible_collections.anvil.cluster.plugins.module_utils.reconcile import (
    clean_for_diff,
    execute,
    is_subset,
    needs_update,
    object_ref,
    owned_paths,
    stale_paths,
)

QP = ("hard", "max", "default")


def test_refs():
    rb = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "RoleBinding",
        "metadata": {"name": "x", "namespace": "n"},
    }
    assert object_ref(rb) == "RoleBinding/n/x"
    assert object_ref({"kind": "Namespace", "metadata": {"name": "n"}}) == "Namespace/n"


def test_subset_semantics():
    assert is_subset({"spec": {"hard": {"cpu": "1"}}}, {"spec": {"hard": {"cpu": "1000m"}}, "status": {}}, QP)
    assert not is_subset({"spec": {"hard": {"cpu": "1"}}}, {"spec": {"hard": {"cpu": "2"}}}, QP)
    # outside quantity maps, strings are compared exactly
    assert not is_subset({"metadata": {"labels": {"v": "1"}}}, {"metadata": {"labels": {"v": "1000m"}}}, QP)
    # lists: same length, element-wise subset (server defaults inside elements are fine)
    assert is_subset({"l": [{"a": 1}]}, {"l": [{"a": 1, "b": 2}]})
    assert not is_subset({"l": [{"a": 1}]}, {"l": [{"a": 1}, {"a": 2}]})
    # empty maps and lists match absent fields
    assert is_subset({"spec": {"podSelector": {}}}, {"spec": {}})
    assert not is_subset({"spec": {"podSelector": {}}}, {"spec": {"podSelector": {"matchLabels": {"a": "b"}}}})
    assert not is_subset({"a": 1}, {"a": "1"})
    assert not is_subset({"spec": {"hard": {"cpu": "1"}}}, {"spec": {"hard": {"cpu": "junk"}}}, QP)


def managed(fields, manager="m", operation="Apply"):
    return [{"manager": manager, "operation": operation, "fieldsV1": fields}]


def test_owned_and_stale_paths():
    actual = {
        "metadata": {
            "name": "x",
            "labels": {"a": "1", "b": "2"},
            "managedFields": managed(
                {"f:metadata": {"f:labels": {"f:a": {}, "f:b": {}}}, "f:spec": {"f:hard": {"f:pods": {}}}}
            )
            + managed({"f:metadata": {"f:labels": {"f:c": {}}}}, manager="kubectl", operation="Update"),
        },
        "spec": {"hard": {"pods": "1"}},
    }
    assert ("metadata", "labels", "b") in owned_paths(actual, "m")
    assert ("metadata", "labels", "c") not in owned_paths(actual, "m")
    desired = {"metadata": {"name": "x", "labels": {"a": "1"}}, "spec": {"hard": {"pods": "1"}}}
    assert stale_paths(desired, actual, "m") == [("metadata", "labels", "b")]
    assert needs_update(desired, actual, "m", QP)
    desired["metadata"]["labels"]["b"] = "2"
    assert not needs_update(desired, actual, "m", QP)


def test_list_item_fields_are_not_paths():
    actual = {
        "metadata": {
            "managedFields": managed({"f:spec": {"f:limits": {}}, "f:subjects": {'k:{"name":"a"}': {".": {}}}})
        }
    }
    assert owned_paths(actual, "m") == {("spec",), ("spec", "limits"), ("subjects",)}


def test_clean_for_diff():
    obj = {
        "kind": "Namespace",
        "metadata": {"name": "n", "uid": "u", "resourceVersion": "1", "managedFields": [], "labels": {"a": "b"}},
        "status": {"phase": "Active"},
    }
    assert clean_for_diff(obj) == {"kind": "Namespace", "metadata": {"name": "n", "labels": {"a": "b"}}}
    assert clean_for_diff(None) is None


class FakeRest:
    """Records calls; map() runs concurrently like the real one."""

    def __init__(self, fail=()):
        self.calls = []
        self.fail = set(fail)
        self.lock = threading.Lock()

    def _record(self, *call):
        with self.lock:
            self.calls.append(call)

    def apply(self, obj, manager, dry_run=False, force=True):
        self._record("apply", object_ref(obj), dry_run)
        if object_ref(obj) in self.fail:
            raise ApiError(422, "Invalid", "nope")
        return dict(obj, applied=True)

    def delete(self, obj, dry_run=False, propagation="Background"):
        self._record("delete", object_ref(obj), dry_run)
        return True

    def map(self, func, items):
        results = []
        for item in items:
            try:
                results.append((item, func(item), None))
            except Exception as exc:  # pylint: disable=broad-except
                results.append((item, None, exc))
        return results


def action(kind, verb, name, namespace=None, roleref="edit"):
    api = "v1" if kind in ("Namespace", "ResourceQuota") else "rbac.authorization.k8s.io/v1"
    obj = {"apiVersion": api, "kind": kind, "metadata": {"name": name}}
    if namespace:
        obj["metadata"]["namespace"] = namespace
    if kind == "RoleBinding":
        obj["roleRef"] = {"name": roleref}
    key = (kind, namespace, name)
    return {
        "action": verb,
        "key": key,
        "ref": object_ref(obj),
        "desired": None if verb == "delete" else obj,
        "actual": obj if verb != "create" else None,
        "tenant": "t",
    }


def test_execute_order_and_failures():
    rest = FakeRest(fail={"Namespace/bad"})
    actions = [
        action("RoleBinding", "delete", "old", "a"),
        action("Namespace", "delete", "gone"),
        action("ResourceQuota", "create", "q", "a"),
        action("ResourceQuota", "create", "q", "bad"),
        action("Namespace", "create", "a"),
        action("Namespace", "create", "bad"),
        action("RoleBinding", "replace", "rb", "a"),
    ]
    outcomes = execute(rest, actions, "m")
    assert [c[:2] for c in rest.calls] == [
        ("apply", "Namespace/a"),
        ("apply", "Namespace/bad"),
        ("apply", "ResourceQuota/a/q"),
        ("delete", "RoleBinding/a/rb"),
        ("apply", "RoleBinding/a/rb"),
        ("delete", "RoleBinding/a/old"),
        ("delete", "Namespace/gone"),
    ]
    errors = dict((o["ref"], o["error"]) for o in outcomes if o["error"])
    assert set(errors) == {"Namespace/bad", "ResourceQuota/bad/q"}  # objects of a failed namespace are skipped
    assert "could not be created" in errors["ResourceQuota/bad/q"]


def test_execute_check_mode_is_dry_run_and_skips_new_namespaces():
    rest = FakeRest()
    actions = [
        action("Namespace", "create", "new"),
        action("ResourceQuota", "create", "q", "new"),
        action("ResourceQuota", "update", "q", "old"),
        action("RoleBinding", "replace", "rb", "old"),
        action("Namespace", "delete", "gone"),
    ]
    outcomes = execute(rest, actions, "m", check_mode=True, new_namespaces=["new"])
    assert rest.calls == [
        ("apply", "Namespace/new", True),
        ("apply", "ResourceQuota/old/q", True),
        ("delete", "Namespace/gone", True),
    ]
    rendered = next(o for o in outcomes if o["ref"] == "ResourceQuota/new/q")
    assert rendered["after"]["metadata"]["name"] == "q" and rendered["error"] is None
