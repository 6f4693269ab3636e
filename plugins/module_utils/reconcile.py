# -*- coding: utf-8 -*-
# Copyright: anvil.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Reconcile labelled Kubernetes objects to a desired set: compare, then apply with bounded concurrency.

Comparison is local: the caller lists existing objects once per kind (by label) and this code decides
per object whether it must be created, updated or deleted, so a no-op run makes no write call at all.
An object needs an update when a desired field differs (quantities compared semantically) or when the
field manager owns a field, per ``metadata.managedFields``, that the desired object no longer sets
(server-side apply then removes it). Writes use server-side apply (``force``), deletions are plain
DELETEs, check mode uses the server's dry run.

Requests go through the collection's one client (k8s.client.KubeClient), passed in as ``client``.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import time

from ansible_collections.anvil.cluster.plugins.module_utils.k8s.client import ApiError
from ansible_collections.anvil.cluster.plugins.module_utils.quantity import QuantityError, quantities_equal

# Kinds the reconciler treats as cluster-scoped (created first, deleted last).
CLUSTER_SCOPED = frozenset(["Namespace"])
_NOISE = ("managedFields", "uid", "resourceVersion", "creationTimestamp", "generation", "selfLink")


# --------------------------------------------------------------------------- identity


def object_key(obj):
    meta = obj.get("metadata") or {}
    return (obj.get("kind"), meta.get("namespace") or None, meta.get("name"))


def object_ref(obj):
    kind, namespace, name = object_key(obj)
    return "%s/%s/%s" % (kind, namespace, name) if namespace else "%s/%s" % (kind, name)


# --------------------------------------------------------------------------- comparison


def field_paths(obj, prefix=()):
    """Every map path of an object (lists are leaves), e.g. ('metadata', 'labels', 'team')."""
    paths = set()
    for key, value in obj.items():
        path = (*prefix, key)
        paths.add(path)
        if isinstance(value, dict):
            paths.update(field_paths(value, path))
    return paths


def _walk_fields_v1(node, prefix, paths):
    for key, child in node.items():
        # 'k:', 'v:', 'i:' and '.' entries describe list items; lists are compared as a whole.
        if not key.startswith("f:"):
            continue
        path = (*prefix, key[2:])
        paths.add(path)
        if isinstance(child, dict):
            _walk_fields_v1(child, path, paths)


def owned_paths(obj, manager):
    """Map paths the field manager owns through server-side apply, from metadata.managedFields."""
    paths = set()
    for entry in (obj.get("metadata") or {}).get("managedFields") or []:
        if entry.get("manager") == manager and entry.get("operation") == "Apply":
            _walk_fields_v1(entry.get("fieldsV1") or {}, (), paths)
    return paths


def stale_paths(desired, actual, manager):
    """Fields the manager set earlier that the desired object no longer sets (apply will remove them)."""
    return sorted(owned_paths(actual, manager) - field_paths(desired))


def _empty(value):
    return value is None or value in ({}, [])


def is_subset(desired, actual, quantity_parents=(), parent=None):
    """True if every field of ``desired`` is present and equal in ``actual``.

    Leaves under a key in ``quantity_parents`` (e.g. ``hard``, ``max``) are compared as quantities;
    lists must have the same length and match element by element; an empty map or list in desired
    matches an absent field (the server omits empty values).
    """
    if isinstance(desired, dict):
        if _empty(desired):
            return _empty(actual)
        if not isinstance(actual, dict):
            return False
        for key, value in desired.items():
            if key not in actual:
                if _empty(value):
                    continue
                return False
            # A leaf is compared in the context of the map holding it (e.g. leaves of `hard` are quantities).
            context = key if isinstance(value, (dict, list)) else parent
            if not is_subset(value, actual[key], quantity_parents, context):
                return False
        return True
    if isinstance(desired, list):
        if _empty(desired):
            return _empty(actual)
        if not isinstance(actual, list) or len(actual) != len(desired):
            return False
        return all(is_subset(d, a, quantity_parents, parent) for d, a in zip(desired, actual))
    if desired == actual and type(desired) is type(actual):
        return True
    if parent in quantity_parents and desired is not None and actual is not None:
        try:
            return quantities_equal(desired, actual)
        except QuantityError:
            return False
    return False


def needs_update(desired, actual, manager, quantity_parents=()):
    return not is_subset(desired, actual, quantity_parents) or bool(stale_paths(desired, actual, manager))


def clean_for_diff(obj):
    """A copy of an object without server bookkeeping (managedFields, uid, resourceVersion, status ...)."""
    if obj is None:
        return None
    result = dict((k, v) for k, v in obj.items() if k != "status")
    meta = dict((k, v) for k, v in (obj.get("metadata") or {}).items() if k not in _NOISE)
    result["metadata"] = meta
    return result


# --------------------------------------------------------------------------- execution


def execute(client, actions, manager, check_mode=False, new_namespaces=()):
    """Carry out planned actions in dependency order and report what happened to each.

    Order: cluster-scoped creates/updates (namespaces), namespaced creates/updates/replacements,
    namespaced deletions, cluster-scoped deletions. In check mode every write is a server-side dry
    run, except for objects inside namespaces that do not exist yet (listed in ``new_namespaces``),
    which the server cannot dry-run: their rendered form is reported.

    Returns a list of outcomes {"action", "ref", "tenant", "before", "after", "error"} in the same
    order as the phases ran.
    """
    new_namespaces = set(new_namespaces)
    phases = [
        [a for a in actions if a["action"] != "delete" and a["key"][0] in CLUSTER_SCOPED],
        [a for a in actions if a["action"] != "delete" and a["key"][0] not in CLUSTER_SCOPED],
        [a for a in actions if a["action"] == "delete" and a["key"][0] not in CLUSTER_SCOPED],
        [a for a in actions if a["action"] == "delete" and a["key"][0] in CLUSTER_SCOPED],
    ]
    failed_namespaces = set()
    outcomes = []

    def run(action):
        _kind, namespace, _name = action["key"]
        if namespace in failed_namespaces:
            raise ApiError(0, "Skipped", "namespace %s could not be created or updated" % namespace)
        if action["action"] == "delete":
            client.delete(action["actual"], dry_run=check_mode)
            return None
        desired = action["desired"]
        if check_mode and namespace in new_namespaces:
            return desired
        if action["action"] == "replace":
            if check_mode:
                return desired
            client.delete(action["actual"])
            return _apply_after_delete(client, desired, manager)
        try:
            return client.apply(desired, manager, dry_run=check_mode)
        except ApiError as exc:
            # An object with the same name but an immutable field set differently (e.g. a RoleBinding's
            # roleRef, created by someone else without the module's labels): replace it.
            if exc.status == 422 and "cannot change" in exc.message and not check_mode:
                client.delete(desired)
                return _apply_after_delete(client, desired, manager)
            raise

    for phase in phases:
        for action, result, error in client.map(run, phase):
            if error is not None and action["key"][0] == "Namespace" and action["action"] != "delete":
                failed_namespaces.add(action["key"][2])
            outcomes.append(
                {
                    "action": action["action"],
                    "ref": action["ref"],
                    "key": action["key"],
                    "tenant": action.get("tenant"),
                    "before": action["actual"],
                    "after": result if action["action"] != "delete" else None,
                    "error": None if error is None else str(error),
                }
            )
    return outcomes


def _apply_after_delete(client, desired, manager, timeout=30.0):
    """Apply an object just deleted; retry while the old one is still being removed (409 Conflict)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return client.apply(desired, manager)
        except ApiError as exc:
            if exc.status != 409 or time.monotonic() > deadline:
                raise
        time.sleep(0.1)
