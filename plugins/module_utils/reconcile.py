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

The REST layer sends raw JSON through the ``kubernetes`` package's ApiClient (its authentication and
TLS settings, as built by kubernetes.core), and skips model (de)serialization: for thousands of
objects that conversion costs more than the HTTP calls.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import time
from concurrent.futures import ThreadPoolExecutor

from ansible_collections.anvil.cluster.plugins.module_utils.quantity import QuantityError, quantities_equal

# kind -> plural resource name, for the kinds the collection reconciles or inspects.
PLURALS = {
    "Namespace": "namespaces",
    "ResourceQuota": "resourcequotas",
    "LimitRange": "limitranges",
    "RoleBinding": "rolebindings",
    "NetworkPolicy": "networkpolicies",
    "Pod": "pods",
    "PersistentVolumeClaim": "persistentvolumeclaims",
    "ConfigMap": "configmaps",
    "Secret": "secrets",
    "ServiceAccount": "serviceaccounts",
    "Service": "services",
    "Deployment": "deployments",
    "StatefulSet": "statefulsets",
    "DaemonSet": "daemonsets",
    "ReplicaSet": "replicasets",
    "ReplicationController": "replicationcontrollers",
    "Job": "jobs",
    "CronJob": "cronjobs",
}
CLUSTER_SCOPED = frozenset(["Namespace"])
_NOISE = ("managedFields", "uid", "resourceVersion", "creationTimestamp", "generation", "selfLink")


# --------------------------------------------------------------------------- identity


def object_key(obj):
    meta = obj.get("metadata") or {}
    return (obj.get("kind"), meta.get("namespace") or None, meta.get("name"))


def object_ref(obj):
    kind, namespace, name = object_key(obj)
    return "%s/%s/%s" % (kind, namespace, name) if namespace else "%s/%s" % (kind, name)


def api_prefix(api_version):
    return "/api/v1" if api_version == "v1" else "/apis/" + api_version


def collection_path(api_version, kind, namespace=None):
    prefix = api_prefix(api_version)
    plural = PLURALS[kind]
    if namespace and kind not in CLUSTER_SCOPED:
        return "%s/namespaces/%s/%s" % (prefix, namespace, plural)
    return "%s/%s" % (prefix, plural)


def object_path(obj):
    kind, namespace, name = object_key(obj)
    return "%s/%s" % (collection_path(obj["apiVersion"], kind, namespace), name)


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


# --------------------------------------------------------------------------- REST


class ApiError(Exception):
    """A failed API call: HTTP status, Kubernetes reason and message."""

    def __init__(self, status, reason, message, path=""):
        self.status = status
        self.reason = reason
        self.message = message
        self.path = path
        super(ApiError, self).__init__("%s %s: %s" % (status, reason, message))


class KubeRest:
    """Minimal JSON REST access over a kubernetes.client.ApiClient, safe for concurrent use."""

    def __init__(self, api_client, concurrency=8, timeout=60, retries=5):
        self.api = api_client
        self.concurrency = max(1, int(concurrency))
        self.timeout = timeout
        self.retries = retries
        self.calls = 0
        config = api_client.configuration
        if (getattr(config, "connection_pool_maxsize", None) or 0) < self.concurrency:
            # One HTTP connection per worker thread, instead of urllib3 discarding extra connections.
            from kubernetes.client import rest

            config.connection_pool_maxsize = self.concurrency
            api_client.rest_client = rest.RESTClientObject(config)

    def _send(self, method, path, query, body, content_type):
        headers = {"Accept": "application/json"}
        if body is not None:
            headers["Content-Type"] = content_type or "application/json"
        query = list((query or {}).items())
        from kubernetes.client.exceptions import ApiException

        try:
            if hasattr(self.api, "param_serialize"):
                request = self.api.param_serialize(
                    method=method,
                    resource_path=path,
                    query_params=query,
                    header_params=headers,
                    body=body,
                    auth_settings=["BearerToken"],
                )
                response = self.api.call_api(*request, _request_timeout=self.timeout)
                response.read()
                return response.status, response.data
            # kubernetes < 32: the older generated client
            response = self.api.call_api(
                path,
                method,
                query_params=query,
                header_params=headers,
                body=body,
                auth_settings=["BearerToken"],
                _preload_content=False,
                _return_http_data_only=True,
                _request_timeout=self.timeout,
            )
            return response.status, response.data
        except ApiException as exc:
            return exc.status, exc.body

    def request(self, method, path, query=None, body=None, content_type=None):
        """Send one request; return the decoded JSON body. Raises ApiError on a non-2xx answer.

        429 (throttled) and 5xx answers to idempotent requests are retried with backoff.
        """
        delay = 0.2
        for attempt in range(self.retries + 1):
            self.calls += 1
            status, data = self._send(method, path, query, body, content_type)
            if 200 <= status <= 299:
                return json.loads(data) if data else {}
            retryable = status == 429 or (status >= 500 and status != 501 and method in ("GET", "PATCH", "DELETE"))
            if not retryable or attempt == self.retries:
                break
            time.sleep(delay)
            delay = min(delay * 2, 5)
        try:
            payload = json.loads(data)
        except (TypeError, ValueError):
            payload = {}
        if isinstance(data, bytes):
            data = data.decode("utf-8", "replace")
        raise ApiError(status, payload.get("reason") or "", payload.get("message") or (data or "")[:500], path)

    def list(self, api_version, kind, namespace=None, label_selector=None, page_size=500):
        """All objects of a kind (every namespace unless ``namespace``), following continue tokens."""
        path = collection_path(api_version, kind, namespace)
        items = []
        query = {"limit": page_size}
        if label_selector:
            query["labelSelector"] = label_selector
        while True:
            page = self.request("GET", path, dict(query))
            for item in page.get("items") or []:
                item.setdefault("apiVersion", api_version)
                item.setdefault("kind", kind)
                items.append(item)
            token = (page.get("metadata") or {}).get("continue")
            if not token:
                return items
            query["continue"] = token

    def get(self, api_version, kind, name, namespace=None):
        """One object, or None if it does not exist."""
        try:
            obj = self.request("GET", "%s/%s" % (collection_path(api_version, kind, namespace), name))
        except ApiError as exc:
            if exc.status == 404:
                return None
            raise
        obj.setdefault("apiVersion", api_version)
        obj.setdefault("kind", kind)
        return obj

    def apply(self, obj, manager, dry_run=False, force=True):
        """Server-side apply (creates or updates); returns the resulting object."""
        query = {"fieldManager": manager}
        if force:
            query["force"] = "true"
        if dry_run:
            query["dryRun"] = "All"
        return self.request("PATCH", object_path(obj), query, obj, "application/apply-patch+yaml")

    def delete(self, obj, dry_run=False, propagation="Background"):
        """Delete; returns True if something was deleted, False if it was already gone."""
        query = {}
        if dry_run:
            query["dryRun"] = "All"
        body = {"kind": "DeleteOptions", "apiVersion": "v1", "propagationPolicy": propagation}
        if dry_run:
            body["dryRun"] = ["All"]
        try:
            self.request("DELETE", object_path(obj), query, body)
        except ApiError as exc:
            if exc.status == 404:
                return False
            raise
        return True

    def map(self, func, items):
        """Run func(item) for every item with at most ``concurrency`` in flight.

        Returns [(item, result, error)] in input order; an exception is captured, never raised.
        """
        items = list(items)

        def call(item):
            try:
                return item, func(item), None
            except Exception as exc:
                return item, None, exc

        if len(items) <= 1 or self.concurrency == 1:
            return [call(i) for i in items]
        with ThreadPoolExecutor(max_workers=min(self.concurrency, len(items))) as pool:
            return list(pool.map(call, items))


# --------------------------------------------------------------------------- execution


def execute(rest, actions, manager, check_mode=False, new_namespaces=()):
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
            rest.delete(action["actual"], dry_run=check_mode)
            return None
        desired = action["desired"]
        if check_mode and namespace in new_namespaces:
            return desired
        if action["action"] == "replace":
            if check_mode:
                return desired
            rest.delete(action["actual"])
            return _apply_after_delete(rest, desired, manager)
        try:
            return rest.apply(desired, manager, dry_run=check_mode)
        except ApiError as exc:
            # An object with the same name but an immutable field set differently (e.g. a RoleBinding's
            # roleRef, created by someone else without the module's labels): replace it.
            if exc.status == 422 and "cannot change" in exc.message and not check_mode:
                rest.delete(desired)
                return _apply_after_delete(rest, desired, manager)
            raise

    for phase in phases:
        for action, result, error in rest.map(run, phase):
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


def _apply_after_delete(rest, desired, manager, timeout=30.0):
    """Apply an object just deleted; retry while the old one is still being removed (409 Conflict)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return rest.apply(desired, manager)
        except ApiError as exc:
            if exc.status != 409 or time.monotonic() > deadline:
                raise
        time.sleep(0.1)
