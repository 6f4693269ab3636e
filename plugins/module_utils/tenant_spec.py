# -*- coding: utf-8 -*-
# Copyright: anvil.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Tenants: validate specs, render the desired Kubernetes objects, plan the changes.

Pure logic used by the ``anvil.cluster.tenant`` module (no Ansible, no API calls), so every rule is
unit-testable: a tenant is a set of namespaces, each holding a ResourceQuota, a LimitRange,
RoleBindings (one per role) and NetworkPolicies. Every object carries the labels
``app.kubernetes.io/managed-by: anvil.cluster.tenant`` and ``anvil.cluster/tenant: <name>``, which is
how the module finds what it manages and prunes what a spec no longer lists.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import copy
import re

from ansible_collections.anvil.cluster.plugins.module_utils.quantity import (
    QuantityError,
    canonical_quantity,
    compare_quantities,
    is_integer_quantity,
    parse_quantity,
)
from ansible_collections.anvil.cluster.plugins.module_utils.reconcile import (
    needs_update,
    object_key,
    object_ref,
)

MANAGER = "anvil.cluster.tenant"
LABEL_MANAGED_BY = "app.kubernetes.io/managed-by"
LABEL_TENANT = "anvil.cluster/tenant"
NAMESPACE_NAME_LABEL = "kubernetes.io/metadata.name"
PSA_PREFIX = "pod-security.kubernetes.io/"
OBJECT_NAME = "anvil-tenant"
ISOLATION_POLICY = "anvil-tenant-isolation"
ALLOW_POLICY_PREFIX = "anvil-allow-from-"
# The cluster-tier rule (cluster_isolation): one AdminNetworkPolicy per tenant. AdminNetworkPolicies are
# evaluated before any NetworkPolicy, and namespace users cannot edit them, so a tenant's own policies cannot
# let another tenant in. The subjects (one tenant's namespaces each) never overlap, so one priority serves all.
ADMIN_POLICY_API = "policy.networking.k8s.io/v1alpha1"
ADMIN_POLICY_PREFIX = "anvil-tenant-"
ADMIN_POLICY_PRIORITY = 50
ROLE_BINDING_PREFIX = "anvil-tenant-"
# Tenant roles are namespaced bindings of the cluster's built-in aggregated roles.
ROLES = {"admin": "admin", "edit": "edit", "view": "view"}
MEMBER_KINDS = ("User", "Group", "ServiceAccount")
POD_SECURITY_LEVELS = ("privileged", "baseline", "restricted")
RESERVED_NAMESPACES = ("default", "kube-system", "kube-public", "kube-node-lease")
LIMIT_FIELDS = (
    ("default_request", "defaultRequest"),
    ("default_limit", "default"),
    ("max", "max"),
    ("min", "min"),
    ("max_limit_request_ratio", "maxLimitRequestRatio"),
)
# Options a `tenants` entry takes from the module's top-level option when it does not set them.
INHERITED_OPTIONS = (
    "state",
    "quota",
    "limits",
    "network_isolation",
    "cluster_isolation",
    "allow_from_namespaces",
    "pod_security",
    "labels",
    "annotations",
    "force",
)
TENANT_DEFAULTS = {
    "state": "present",
    "quota": None,
    "limits": None,
    "members": None,
    "network_isolation": True,
    "cluster_isolation": False,
    "allow_from_namespaces": None,
    "pod_security": "baseline",
    "labels": None,
    "annotations": None,
    "force": False,
}
# Parent keys under which leaf values are quantities (compared semantically, never as strings).
QUANTITY_PARENTS = ("hard", "default", "defaultRequest", "max", "min", "maxLimitRequestRatio")

# What a namespace must not hold when it is deleted without force: (kind, api path prefix, plural).
WORKLOAD_KINDS = (
    ("Pod", "v1"),
    ("PersistentVolumeClaim", "v1"),
    ("Deployment", "apps/v1"),
    ("StatefulSet", "apps/v1"),
    ("DaemonSet", "apps/v1"),
    ("ReplicaSet", "apps/v1"),
    ("ReplicationController", "v1"),
    ("Job", "batch/v1"),
    ("CronJob", "batch/v1"),
)

_DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_DNS1123_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_QUALIFIED_NAME = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")
# Quota resources counted in whole objects (no unit suffixes).
_INTEGER_RESOURCES = frozenset(
    [
        "pods",
        "services",
        "replicationcontrollers",
        "resourcequotas",
        "secrets",
        "configmaps",
        "persistentvolumeclaims",
        "services.nodeports",
        "services.loadbalancers",
    ]
)
_STANDARD_QUOTA = frozenset(
    [
        "cpu",
        "memory",
        "ephemeral-storage",
        "requests.cpu",
        "requests.memory",
        "requests.storage",
        "requests.ephemeral-storage",
        "limits.cpu",
        "limits.memory",
        "limits.ephemeral-storage",
    ]
).union(_INTEGER_RESOURCES)
_STANDARD_CONTAINER = frozenset(["cpu", "memory", "ephemeral-storage"])


class TenantSpecError(ValueError):
    """Invalid tenant input; ``errors`` lists every problem found, each naming its field."""

    def __init__(self, errors):
        self.errors = list(errors)
        super(TenantSpecError, self).__init__("; ".join(self.errors))


# --------------------------------------------------------------------------- validation helpers


def is_dns1123_label(value):
    return isinstance(value, str) and len(value) <= 63 and bool(_DNS1123_LABEL.match(value))


def is_dns1123_subdomain(value):
    return isinstance(value, str) and len(value) <= 253 and bool(_DNS1123_SUBDOMAIN.match(value))


def is_qualified_name(value):
    """Kubernetes qualified name: optional DNS subdomain prefix and '/', then a name of at most 63 chars."""
    if not isinstance(value, str) or not value:
        return False
    parts = value.split("/")
    if len(parts) > 2:
        return False
    if len(parts) == 2 and not (parts[0] and is_dns1123_subdomain(parts[0])):
        return False
    name = parts[-1]
    return len(name) <= 63 and bool(_QUALIFIED_NAME.match(name))


def _valid_label_value(value):
    return isinstance(value, str) and (value == "" or (len(value) <= 63 and bool(_QUALIFIED_NAME.match(value))))


def _is_extended(name):
    """apimachinery IsExtendedResourceName: fully qualified, not kubernetes.io/, not requests.*."""
    if "/" not in name or "kubernetes.io/" in name or name.startswith("requests."):
        return False
    return is_qualified_name("requests." + name)


def quota_name_error(name):
    """Why a ResourceQuota `hard` key is invalid (None if it is valid), following the API server's rules."""
    if not isinstance(name, str) or not is_qualified_name(name):
        return "%r is not a valid resource name" % (name,)
    if "/" in name:
        return None
    if name in _STANDARD_QUOTA or name.startswith("hugepages-") or name.startswith("requests.hugepages-"):
        return None
    return (
        "%r is not a quota resource: use cpu, memory, requests.*, limits.*, pods, services, "
        "requests.storage, persistentvolumeclaims, <class>.storageclass.storage.k8s.io/requests.storage, "
        "count/<resource>[.<group>], ..." % (name,)
    )


def container_resource_error(name):
    if not isinstance(name, str) or not is_qualified_name(name):
        return "%r is not a valid resource name" % (name,)
    if "/" in name or name in _STANDARD_CONTAINER or name.startswith("hugepages-"):
        return None
    return "%r is not a container resource: use cpu, memory, ephemeral-storage, hugepages-<size> or a/b" % (name,)


def _is_integer_resource(name):
    return name in _INTEGER_RESOURCES or _is_extended(name)


def _quantity_map(value, field, errors, name_check, integer_check=False):
    """Validate a resource map, return {name: canonical quantity} (or {} with errors appended)."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        errors.append("%s: must be a mapping of resource name to quantity, got %r" % (field, value))
        return {}
    result = {}
    for key in sorted(value, key=str):
        where = "%s.%s" % (field, key)
        problem = name_check(key)
        if problem:
            errors.append("%s: %s" % (where, problem))
            continue
        try:
            amount = parse_quantity(value[key])
        except QuantityError as exc:
            errors.append("%s: %s" % (where, exc))
            continue
        if amount < 0:
            errors.append("%s: %r must not be negative" % (where, value[key]))
            continue
        if integer_check and _is_integer_resource(key) and not is_integer_quantity(value[key]):
            errors.append("%s: %r must be a whole number for %s" % (where, value[key], key))
            continue
        result[key] = canonical_quantity(value[key])
    return result


def _string_map(value, field, errors, check_key, check_value):
    if value is None:
        return {}
    if not isinstance(value, dict):
        errors.append("%s: must be a mapping, got %r" % (field, value))
        return {}
    result = {}
    for key in sorted(value, key=str):
        val = value[key]
        if isinstance(val, bool) or val is None:
            errors.append("%s.%s: value must be a string (quote it in YAML), got %r" % (field, key, val))
            continue
        val = str(val)
        if not is_qualified_name(key):
            errors.append("%s: key %r is not a valid label/annotation key" % (field, key))
            continue
        if key in (LABEL_TENANT, LABEL_MANAGED_BY) or key.startswith(PSA_PREFIX):
            errors.append(
                "%s: key %r is set by the module itself (use pod_security for %s*)" % (field, key, PSA_PREFIX)
            )
            continue
        if check_key and key == NAMESPACE_NAME_LABEL:
            errors.append("%s: key %r is set by the API server" % (field, key))
            continue
        if check_value and not _valid_label_value(val):
            errors.append(
                "%s.%s: %r is not a valid label value (63 characters: letters, digits, - _ .)" % (field, key, val)
            )
            continue
        result[key] = val
    return result


def apply_limit_range_defaults(item):
    """The API server's defaulting of a Container LimitRange item (SetDefaults_LimitRangeItem), in place."""
    default = item.setdefault("default", {})
    default_request = item.setdefault("defaultRequest", {})
    for key, value in item.get("max", {}).items():
        default.setdefault(key, value)
    for key, value in default.items():
        default_request.setdefault(key, value)
    for key, value in item.get("min", {}).items():
        default_request.setdefault(key, value)
    for key in [k for k, v in item.items() if isinstance(v, dict) and not v]:
        del item[key]
    return item


def _limits(value, field, errors):
    """Validate `limits`, return a defaulted LimitRange Container item (or None)."""
    if value is None:
        return None
    if not isinstance(value, dict):
        errors.append(
            "%s: must be a mapping with default_request, default_limit, max, min, max_limit_request_ratio" % field
        )
        return None
    known = dict(LIMIT_FIELDS)
    for key in value:
        if key not in known:
            errors.append("%s.%s: unknown field; use one of %s" % (field, key, ", ".join(known)))
    count = len(errors)
    item = {"type": "Container"}
    for option, api_field in LIMIT_FIELDS:
        rendered = _quantity_map(value.get(option), "%s.%s" % (field, option), errors, container_resource_error)
        if rendered:
            item[api_field] = rendered
    if len(errors) > count or len(item) == 1:
        return None  # invalid, or nothing set: no LimitRange
    apply_limit_range_defaults(item)
    pairs = (
        ("min", "max", "min", "max"),
        ("defaultRequest", "default", "default_request", "default_limit"),
        ("min", "defaultRequest", "min", "default_request"),
        ("defaultRequest", "max", "default_request", "max"),
        ("min", "default", "min", "default_limit"),
        ("default", "max", "default_limit", "max"),
    )
    for low, high, low_option, high_option in pairs:
        for key in sorted(set(item.get(low, {})) & set(item.get(high, {}))):
            if compare_quantities(item[low][key], item[high][key]) > 0:
                errors.append(
                    "%s: %s.%s (%s) must not exceed %s.%s (%s)"
                    % (field, low_option, key, item[low][key], high_option, key, item[high][key])
                )
    for key, ratio in sorted(item.get("maxLimitRequestRatio", {}).items()):
        amount = parse_quantity(ratio)
        if amount < 1:
            errors.append("%s.max_limit_request_ratio.%s: %s must be at least 1" % (field, key, ratio))
        low, high = item.get("min", {}).get(key), item.get("max", {}).get(key)
        if low is not None and high is not None and parse_quantity(low) > 0:
            if amount > parse_quantity(high) / parse_quantity(low):
                errors.append(
                    "%s.max_limit_request_ratio.%s: %s is more than max/min = %s"
                    % (field, key, ratio, (parse_quantity(high) / parse_quantity(low)).normalize())
                )
    return item


def _namespace_entries(value, tenant_name, field, errors):
    if value is None:
        value = [tenant_name]
    if not isinstance(value, list) or not value:
        errors.append("%s: must be a non-empty list of namespace names" % field)
        return []
    entries = []
    seen = set()
    for index, item in enumerate(value):
        where = "%s[%d]" % (field, index)
        if isinstance(item, str):
            item = {"name": item}
        if not isinstance(item, dict):
            errors.append("%s: must be a name or a mapping with name, quota, limits, labels, annotations" % where)
            continue
        unknown = set(item) - {"name", "quota", "limits", "labels", "annotations"}
        if unknown:
            errors.append("%s: unknown field(s) %s" % (where, ", ".join(sorted(unknown))))
        name = item.get("name")
        if not is_dns1123_label(name):
            errors.append(
                "%s: namespace name %r is not a DNS-1123 label (lower case letters, digits and '-', "
                "starting and ending with a letter or digit, at most 63 characters)" % (where, name)
            )
            continue
        if name in RESERVED_NAMESPACES:
            errors.append("%s: namespace %r is reserved for the cluster and cannot belong to a tenant" % (where, name))
            continue
        if name in seen:
            errors.append("%s: namespace %r is listed twice" % (where, name))
            continue
        seen.add(name)
        entries.append((where, item))
    return entries


def _members(value, field, errors, default_sa_namespace):
    if value is None:
        return []
    if not isinstance(value, list):
        errors.append("%s: must be a list of {kind, name, role}" % field)
        return []
    members = []
    seen = {}
    for index, item in enumerate(value):
        where = "%s[%d]" % (field, index)
        if not isinstance(item, dict):
            errors.append("%s: must be a mapping with kind, name and role" % where)
            continue
        kind = item.get("kind") or "User"
        name = item.get("name")
        role = item.get("role")
        if kind not in MEMBER_KINDS:
            errors.append("%s.kind: %r is not one of %s" % (where, kind, ", ".join(MEMBER_KINDS)))
            continue
        if role not in ROLES:
            errors.append("%s.role: unknown role %r; use one of %s" % (where, role, ", ".join(ROLES)))
            continue
        if not isinstance(name, str) or not name.strip():
            errors.append("%s.name: a member needs a non-empty name" % where)
            continue
        member = {"kind": kind, "name": name, "role": role}
        if kind == "ServiceAccount":
            namespace = item.get("namespace") or default_sa_namespace
            if not is_dns1123_subdomain(name):
                errors.append("%s.name: %r is not a valid service account name" % (where, name))
                continue
            if not is_dns1123_label(namespace):
                errors.append("%s.namespace: %r is not a valid namespace name" % (where, namespace))
                continue
            member["namespace"] = namespace
        elif item.get("namespace"):
            errors.append("%s.namespace: only ServiceAccount members have a namespace" % where)
            continue
        identity = (kind, member.get("namespace"), name)
        if identity in seen:
            errors.append("%s: %s %r is already listed (as %s)" % (where, kind, name, seen[identity]))
            continue
        seen[identity] = role
        members.append(member)
    return members


def normalize_tenant(raw, field=""):
    """Validate one tenant spec (module option names) and return its normalized form.

    ``field`` prefixes error messages (``tenants[3].``). Raises TenantSpecError listing every problem.
    """
    errors = []
    spec = dict(TENANT_DEFAULTS)
    spec.update(dict((k, v) for k, v in raw.items() if v is not None))
    name = spec.get("name")
    if not is_dns1123_label(name):
        errors.append(
            "%sname: tenant name %r must be a DNS-1123 label "
            "(lower case letters, digits and '-', at most 63 characters)" % (field, name)
        )
        raise TenantSpecError(errors)
    state = spec["state"]
    if state not in ("present", "absent"):
        errors.append("%sstate: must be present or absent, got %r" % (field, state))
    pod_security = spec["pod_security"]
    if pod_security not in POD_SECURITY_LEVELS:
        errors.append("%spod_security: %r is not one of %s" % (field, pod_security, ", ".join(POD_SECURITY_LEVELS)))
    quota = _quantity_map(spec["quota"], field + "quota", errors, quota_name_error, integer_check=True)
    limits = _limits(spec["limits"], field + "limits", errors)
    labels = _string_map(spec["labels"], field + "labels", errors, True, True)
    annotations = _string_map(spec["annotations"], field + "annotations", errors, False, False)
    allow_from = spec["allow_from_namespaces"] or []
    if not isinstance(allow_from, list):
        errors.append("%sallow_from_namespaces: must be a list of namespace names" % field)
        allow_from = []
    for index, namespace in enumerate(allow_from):
        if not is_dns1123_label(namespace):
            errors.append("%sallow_from_namespaces[%d]: %r is not a valid namespace name" % (field, index, namespace))
    namespaces = []
    entries = _namespace_entries(spec.get("namespaces"), name, field + "namespaces", errors)
    for where, item in entries:
        ns_quota = quota
        if item.get("quota") is not None:
            ns_quota = _quantity_map(item["quota"], where + ".quota", errors, quota_name_error, integer_check=True)
        ns_limits = limits
        if item.get("limits") is not None:
            ns_limits = _limits(item["limits"], where + ".limits", errors)
        ns_labels = dict(labels)
        ns_labels.update(_string_map(item.get("labels"), where + ".labels", errors, True, True))
        ns_annotations = dict(annotations)
        ns_annotations.update(_string_map(item.get("annotations"), where + ".annotations", errors, False, False))
        namespaces.append(
            {
                "name": item["name"],
                "field": where,
                "quota": ns_quota,
                "limits": ns_limits,
                "labels": ns_labels,
                "annotations": ns_annotations,
            }
        )
    first = namespaces[0]["name"] if namespaces else name
    members = _members(spec["members"], field + "members", errors, first)
    for flag in ("network_isolation", "cluster_isolation"):
        if not isinstance(spec[flag], bool):
            errors.append("%s%s: must be true or false" % (field, flag))
    if not isinstance(spec["force"], bool):
        errors.append("%sforce: must be true or false" % field)
    if errors:
        raise TenantSpecError(errors)
    return {
        "name": name,
        "field": field,
        "state": state,
        "namespaces": namespaces,
        "members": members,
        "network_isolation": spec["network_isolation"],
        "cluster_isolation": spec["cluster_isolation"],
        "allow_from_namespaces": sorted(set(allow_from)),
        "pod_security": pod_security,
        "force": spec["force"],
    }


def normalize_tenants(params):
    """Validate module parameters: either one tenant (``name`` ...) or ``tenants`` (a list).

    Entries of ``tenants`` inherit INHERITED_OPTIONS from the top level. Returns the list of normalized
    specs; raises TenantSpecError listing every problem in every tenant, each naming its field.
    """
    errors = []
    specs = []
    if params.get("tenants") is not None:
        defaults = dict((k, params.get(k)) for k in INHERITED_OPTIONS if params.get(k) is not None)
        raws = []
        for index, entry in enumerate(params["tenants"]):
            if not isinstance(entry, dict):
                errors.append("tenants[%d]: must be a mapping with at least a name" % index)
                continue
            raw = dict(defaults)
            raw.update(dict((k, v) for k, v in entry.items() if v is not None))
            raws.append(("tenants[%d]." % index, raw))
    else:
        raws = [("", dict(params))]
    names = {}
    claimed = {}
    for field, raw in raws:
        try:
            spec = normalize_tenant(raw, field)
        except TenantSpecError as exc:
            errors.extend(exc.errors)
            continue
        if spec["name"] in names:
            errors.append("%sname: tenant %r is listed twice (also at %s)" % (field, spec["name"], names[spec["name"]]))
            continue
        names[spec["name"]] = field.rstrip(".") or "name"
        if spec["state"] == "present":
            for namespace in spec["namespaces"]:
                other = claimed.get(namespace["name"])
                if other:
                    errors.append(
                        "%s: namespace %r is also listed by tenant %r" % (namespace["field"], namespace["name"], other)
                    )
                claimed[namespace["name"]] = spec["name"]
        specs.append(spec)
    if errors:
        raise TenantSpecError(errors)
    return specs


# --------------------------------------------------------------------------- rendering


def managed_labels(tenant):
    return {LABEL_MANAGED_BY: MANAGER, LABEL_TENANT: tenant}


def _meta(tenant, name, namespace=None, labels=None, annotations=None):
    meta = {"name": name, "labels": managed_labels(tenant)}
    if namespace:
        meta["namespace"] = namespace
    if labels:
        meta["labels"].update(labels)
    if annotations:
        meta["annotations"] = dict(annotations)
    return meta


def render_namespace(spec, entry):
    labels = dict(entry["labels"])
    for mode in ("enforce", "warn", "audit"):
        labels[PSA_PREFIX + mode] = spec["pod_security"]
    return {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": _meta(spec["name"], entry["name"], labels=labels, annotations=entry["annotations"]),
    }


def _subject(member):
    if member["kind"] == "ServiceAccount":
        return {"kind": "ServiceAccount", "name": member["name"], "namespace": member["namespace"]}
    return {"apiGroup": "rbac.authorization.k8s.io", "kind": member["kind"], "name": member["name"]}


def render_namespaced(spec, entry):
    """Desired objects inside one namespace of the tenant."""
    tenant, namespace = spec["name"], entry["name"]
    objects = []
    if entry["quota"]:
        objects.append(
            {
                "apiVersion": "v1",
                "kind": "ResourceQuota",
                "metadata": _meta(tenant, OBJECT_NAME, namespace),
                "spec": {"hard": dict(entry["quota"])},
            }
        )
    if entry["limits"]:
        objects.append(
            {
                "apiVersion": "v1",
                "kind": "LimitRange",
                "metadata": _meta(tenant, OBJECT_NAME, namespace),
                "spec": {"limits": [copy.deepcopy(entry["limits"])]},
            }
        )
    for role, cluster_role in ROLES.items():
        subjects = [_subject(m) for m in spec["members"] if m["role"] == role]
        if not subjects:
            continue
        subjects.sort(key=lambda s: (s["kind"], s.get("namespace", ""), s["name"]))
        objects.append(
            {
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "RoleBinding",
                "metadata": _meta(tenant, ROLE_BINDING_PREFIX + role, namespace),
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": cluster_role},
                "subjects": subjects,
            }
        )
    if spec["network_isolation"]:
        objects.append(
            {
                "apiVersion": "networking.k8s.io/v1",
                "kind": "NetworkPolicy",
                "metadata": _meta(tenant, ISOLATION_POLICY, namespace),
                "spec": {
                    "podSelector": {},
                    "policyTypes": ["Ingress"],
                    "ingress": [{"from": [{"namespaceSelector": {"matchLabels": {LABEL_TENANT: tenant}}}]}],
                },
            }
        )
        for source in spec["allow_from_namespaces"]:
            objects.append(
                {
                    "apiVersion": "networking.k8s.io/v1",
                    "kind": "NetworkPolicy",
                    "metadata": _meta(tenant, ALLOW_POLICY_PREFIX + source, namespace),
                    "spec": {
                        "podSelector": {},
                        "policyTypes": ["Ingress"],
                        "ingress": [{"from": [{"namespaceSelector": {"matchLabels": {NAMESPACE_NAME_LABEL: source}}}]}],
                    },
                }
            )
    return objects


def render_admin_policy(spec):
    """The tenant's AdminNetworkPolicy: ingress from any other tenant's namespace is denied (namespaces the
    tenant allows by name excepted); all other traffic passes on to the NetworkPolicies."""
    tenant = spec["name"]
    others = [
        {"key": LABEL_TENANT, "operator": "Exists"},
        {"key": LABEL_TENANT, "operator": "NotIn", "values": [tenant]},
    ]
    if spec["allow_from_namespaces"]:
        others.append({"key": NAMESPACE_NAME_LABEL, "operator": "NotIn", "values": list(spec["allow_from_namespaces"])})
    return {
        "apiVersion": ADMIN_POLICY_API,
        "kind": "AdminNetworkPolicy",
        "metadata": _meta(tenant, ADMIN_POLICY_PREFIX + tenant),
        "spec": {
            "priority": ADMIN_POLICY_PRIORITY,
            "subject": {"namespaces": {"matchLabels": {LABEL_TENANT: tenant}}},
            "ingress": [
                {"name": "deny-other-tenants", "action": "Deny", "from": [{"namespaces": {"matchExpressions": others}}]}
            ],
        },
    }


def render_tenant(spec):
    """All desired objects of a present tenant: namespaces first, then what they hold, then its cluster rule."""
    if spec["state"] != "present":
        return []
    objects = [render_namespace(spec, entry) for entry in spec["namespaces"]]
    for entry in spec["namespaces"]:
        objects.extend(render_namespaced(spec, entry))
    if spec.get("cluster_isolation"):
        objects.append(render_admin_policy(spec))
    return objects


# --------------------------------------------------------------------------- planning


def tenant_of(obj):
    return ((obj.get("metadata") or {}).get("labels") or {}).get(LABEL_TENANT)


def is_managed(obj):
    return ((obj.get("metadata") or {}).get("labels") or {}).get(LABEL_MANAGED_BY) == MANAGER


def is_terminating(obj):
    return bool((obj.get("metadata") or {}).get("deletionTimestamp"))


def plan_tenants(specs, namespaces, objects, prune=False, prune_force=False):
    """Compare desired tenants with what the cluster holds and return the plan.

    ``namespaces``: {name: Namespace object} for every existing namespace the specs mention plus every
    namespace labelled as managed; ``objects``: existing managed namespaced objects (any kind).
    With ``prune`` every tenant found in the cluster but absent from ``specs`` is removed.

    Returns {"tenants": [per-tenant plan], "errors": [...]} where a per-tenant plan is
    {"name", "state", "force", "namespaces": [...], "actions": [...]} and an action is
    {"action": create|update|replace|delete, "key", "ref", "desired", "actual", "tenant"}.
    """
    errors = []
    specs = list(specs)
    listed = set(s["name"] for s in specs)
    if prune:
        found = set()
        for obj in list(namespaces.values()) + list(objects):
            if is_managed(obj) and tenant_of(obj) and not is_terminating(obj):
                found.add(tenant_of(obj))
        for name in sorted(found - listed):
            specs.append(
                {
                    "name": name,
                    "field": "prune",
                    "state": "absent",
                    "namespaces": [],
                    "members": [],
                    "network_isolation": False,
                    "cluster_isolation": False,
                    "allow_from_namespaces": [],
                    "pod_security": "baseline",
                    "force": prune_force,
                }
            )
    in_run = dict((s["name"], s) for s in specs)
    # A namespace listed by a present tenant in this run: name -> tenant.
    claims = {}
    for spec in specs:
        if spec["state"] == "present":
            for entry in spec["namespaces"]:
                claims[entry["name"]] = spec["name"]

    # Indexes, so that planning stays linear in the number of tenants and objects.
    existing = {}
    objects_by_tenant = {}
    for obj in objects:
        existing[object_key(obj)] = obj
        objects_by_tenant.setdefault(tenant_of(obj), []).append(obj)
    namespaces_by_tenant = {}
    terminating = set()
    for name, ns in namespaces.items():
        if is_terminating(ns):
            terminating.add(name)
        elif is_managed(ns):
            namespaces_by_tenant.setdefault(tenant_of(ns), []).append(name)
    rendered = dict((spec["name"], render_tenant(spec)) for spec in specs)
    # Objects some tenant of this run wants: never deleted by another (a namespace changing hands).
    wanted_keys = set(object_key(obj) for objs in rendered.values() for obj in objs)
    plans = []
    for spec in specs:
        tenant = spec["name"]
        actions = []
        desired = rendered[tenant]
        desired_keys = set()
        for entry in spec["namespaces"] if spec["state"] == "present" else []:
            actual_ns = namespaces.get(entry["name"])
            if actual_ns is None:
                continue
            owner = tenant_of(actual_ns) if is_managed(actual_ns) else None
            if owner and owner != tenant:
                other = in_run.get(owner)
                released = other is not None and (other["state"] == "absent" or claims.get(entry["name"]) != owner)
                if not released:
                    errors.append(
                        "%s: namespace %r already belongs to tenant %r; remove it from that tenant first"
                        % (entry["field"], entry["name"], owner)
                    )
            if is_terminating(actual_ns):
                errors.append(
                    "%s: namespace %r is still being deleted; run again once it is gone"
                    % (entry["field"], entry["name"])
                )
        for obj in desired:
            key = object_key(obj)
            desired_keys.add(key)
            if obj["kind"] == "Namespace":
                actual = namespaces.get(obj["metadata"]["name"])
            else:
                actual = existing.get(key)
            if actual is None:
                actions.append(_action("create", obj, None, tenant))
            elif obj["kind"] == "RoleBinding" and actual.get("roleRef") != obj["roleRef"]:
                # roleRef is immutable: the binding is deleted and created again.
                actions.append(_action("replace", obj, actual, tenant))
            elif needs_update(obj, actual, MANAGER, QUANTITY_PARENTS):
                actions.append(_action("update", obj, actual, tenant))
        # Namespaces of this tenant that are no longer desired.
        removed_namespaces = []
        for name in sorted(namespaces_by_tenant.get(tenant, [])):
            ns = namespaces[name]
            if ("Namespace", None, name) in desired_keys:
                continue
            if claims.get(name) and claims[name] != tenant:
                continue  # handed over to another tenant of this run
            removed_namespaces.append(name)
            actions.append(_action("delete", None, ns, tenant))
        gone = terminating.union(removed_namespaces)
        for obj in objects_by_tenant.get(tenant, []):
            key = object_key(obj)
            if key in wanted_keys or is_terminating(obj):
                continue
            if obj["metadata"].get("namespace") in gone:
                continue  # deleted with its namespace
            actions.append(_action("delete", None, obj, tenant))
        plans.append(
            {
                "name": tenant,
                "field": spec["field"],
                "state": spec["state"],
                "force": spec["force"],
                "namespaces": [e["name"] for e in spec["namespaces"]] if spec["state"] == "present" else [],
                "delete_namespaces": removed_namespaces,
                "actions": actions,
            }
        )
    return {"tenants": plans, "errors": errors}


def _action(kind, desired, actual, tenant):
    obj = desired if desired is not None else actual
    return {
        "action": kind,
        "key": object_key(obj),
        "ref": object_ref(obj),
        "desired": desired,
        "actual": actual,
        "tenant": tenant,
    }


def blocked_namespace_errors(plan, contents):
    """Errors for namespaces the plan deletes although they hold workloads or PVCs and force is off.

    ``contents``: {namespace: ["Pod/web-1", "PersistentVolumeClaim/data", ...]}.
    """
    errors = []
    blocked = {}
    for tenant in plan["tenants"]:
        if tenant["force"]:
            continue
        for namespace in tenant["delete_namespaces"]:
            inside = contents.get(namespace)
            if inside:
                blocked[namespace] = inside
                errors.append(
                    "tenant %r: namespace %r still holds %s; move or delete them, or set force: true to delete "
                    "the namespace with everything in it" % (tenant["name"], namespace, ", ".join(inside))
                )
    return errors, blocked
