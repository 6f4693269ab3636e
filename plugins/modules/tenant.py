#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: anvil.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: tenant
short_description: Tenants on Kubernetes - namespaces with quotas, limits, members and network isolation
version_added: 0.1.0
description:
  - Creates, updates and removes I(tenants) - a team's set of namespaces with a ResourceQuota, a
    LimitRange (container defaults, bounds and the over-commit ratio), RoleBindings for the team's
    members, NetworkPolicies isolating the tenant from other tenants, and a Pod Security Admission level.
  - Everything the module creates carries the labels C(app.kubernetes.io/managed-by=anvil.cluster.tenant)
    and C(anvil.cluster/tenant=<name>) and is reconciled to the spec - what the spec no longer lists
    (members, allowed namespaces, quotas, limits, namespaces) is removed. Objects without these labels,
    for example RoleBindings a tenant admin creates, are never touched.
  - A namespace that still holds workloads (pods, Deployments, StatefulSets, DaemonSets, ReplicaSets,
    ReplicationControllers, Jobs, CronJobs) or PersistentVolumeClaims is only deleted with I(force=true);
    otherwise the module fails before changing anything and lists what is inside.
  - Quantities are compared by value (C(1000m) equals C(1), C(1Gi) equals C(1073741824)), so a re-run with
    equal values reports no change. Invalid input fails before any change, naming the field.
  - The module lists existing objects once per kind and writes only what differs, with server-side apply
    and bounded concurrency; use I(tenants) to reconcile hundreds of tenants in one task.
  - Check mode uses the API server's dry run and changes nothing. Objects inside namespaces that do not
    exist yet cannot be dry-run by the server; they are reported as rendered.
  - Member roles are namespaced bindings of the cluster's built-in aggregated ClusterRoles.
    C(admin) - everything inside the tenant's namespaces, including Roles and RoleBindings (so tenant
    admins can grant access inside their namespaces), but not the namespaces themselves, their labels,
    the ResourceQuota or the LimitRange (read-only), nor anything cluster-wide.
    C(edit) - deploys and operates applications (workloads, Services, ConfigMaps, Secrets, PVCs,
    NetworkPolicies), cannot view or change roles and bindings. C(view) - read-only access to most
    objects, no Secrets, for example auditors. Platform-wide roles stay outside this module.
  - Network isolation needs a CNI plugin that enforces NetworkPolicy (Calico, the collection's default, or
    Cilium); Flannel stores but does not enforce the policies, and the module warns when the cluster runs
    Flannel. NetworkPolicies are additive, so a tenant's own members can open their namespaces; I(cluster_isolation)
    adds a cluster-tier rule they cannot change.
author:
  - anvil.cluster contributors (@anvil-cluster)
options:
  name:
    description:
      - Name of the tenant (a DNS-1123 label). Stored as the value of the C(anvil.cluster/tenant) label.
      - Mutually exclusive with I(tenants).
    type: str
  state:
    description:
      - C(present) creates or updates the tenant, C(absent) removes its namespaces (subject to I(force))
        and every object the module created for it.
      - With I(tenants), the default for entries that do not set I(state).
    type: str
    choices: [present, absent]
    default: present
  namespaces:
    description:
      - The tenant's namespaces. Defaults to one namespace named like the tenant.
      - An item is a namespace name, or a mapping with C(name) and optionally C(quota), C(limits) (replacing
        the tenant-level values for that namespace), C(labels) and C(annotations) (added to the tenant-level ones).
      - Removing a namespace from the list deletes it, under the I(force) rule.
      - A namespace that already belongs to another tenant is refused. An existing namespace without the
        module's labels is adopted. C(default), C(kube-system), C(kube-public), C(kube-node-lease) are refused.
    type: list
    elements: raw
  quota:
    description:
      - ResourceQuota C(hard) limits applied to each namespace, for example C(requests.cpu), C(limits.memory),
        C(pods), C(services), C(requests.storage), C(<class>.storageclass.storage.k8s.io/requests.storage),
        C(count/deployments.apps).
      - Values are Kubernetes quantities (C(500m), C(8Gi), C(10)). Counts must be whole numbers.
      - Without a quota no ResourceQuota is created (an existing managed one is removed).
    type: dict
  limits:
    description:
      - Container defaults and bounds, rendered as a LimitRange named C(anvil-tenant) of type C(Container).
      - Each field maps resource names (C(cpu), C(memory), C(ephemeral-storage)) to quantities.
      - The API server's defaulting is applied before comparing (a missing I(default_limit) takes I(max),
        a missing I(default_request) takes the default limit, then I(min)), and the bounds are checked
        (min <= default_request <= default_limit <= max, ratio >= 1 and <= max/min).
    type: dict
    suboptions: &limits_options
      default_request:
        description: Requests given to containers that set none.
        type: dict
      default_limit:
        description: Limits given to containers that set none.
        type: dict
      max:
        description: Largest limit a container may set.
        type: dict
      min:
        description: Smallest request a container may set.
        type: dict
      max_limit_request_ratio:
        description:
          - Largest allowed limit/request ratio per resource - the over-commit ratio (for example C(cpu) C(4)).
        type: dict
  members:
    description:
      - People, groups and service accounts with access to all of the tenant's namespaces.
      - One RoleBinding per role and namespace (C(anvil-tenant-admin), C(anvil-tenant-edit), C(anvil-tenant-view))
        binds the ClusterRole of the same name; a member's role change moves it between bindings.
    type: list
    elements: dict
    suboptions: &member_options
      kind:
        description: Subject kind.
        type: str
        choices: [User, Group, ServiceAccount]
        default: User
      name:
        description: User, group or service account name.
        type: str
        required: true
      namespace:
        description: Namespace of a C(ServiceAccount) member; defaults to the tenant's first namespace.
        type: str
      role:
        description:
          - C(admin) manages everything inside the tenant's namespaces, including access of others.
          - C(edit) deploys and operates applications. C(view) reads (no Secrets).
        type: str
        required: true
        choices: [admin, edit, view]
  network_isolation:
    description:
      - Deny ingress to the tenant's pods from namespaces of other tenants and the rest of the cluster,
        allow it from the tenant's own namespaces and from I(allow_from_namespaces).
      - Rendered as the NetworkPolicy C(anvil-tenant-isolation) plus one C(anvil-allow-from-<namespace>) per
        allowed namespace in each tenant namespace. Egress is not restricted.
    type: bool
    default: true
  cluster_isolation:
    description:
      - Also keep every other tenant out at the cluster tier, whatever the tenant's own NetworkPolicies say.
        The AdminNetworkPolicy C(anvil-tenant-<name>) (priority 50) denies ingress to the tenant's namespaces
        from namespaces of any other tenant (except those in I(allow_from_namespaces)). Namespace users, even
        a tenant's C(admin) members, cannot change AdminNetworkPolicies, and they are evaluated before every
        NetworkPolicy; traffic they do not deny passes on to the NetworkPolicies of I(network_isolation).
      - Needs a CNI that implements AdminNetworkPolicy (Calico, C(anvil_cni=calico)); on a cluster that does
        not serve C(policy.networking.k8s.io/v1alpha1) the module fails before changing anything.
    type: bool
    default: false
  allow_from_namespaces:
    description:
      - Namespaces whose pods may reach the tenant's pods, for example the ingress controller's and monitoring.
    type: list
    elements: str
  pod_security:
    description:
      - Pod Security Admission level enforced (and warned and audited) on the tenant's namespaces.
    type: str
    choices: [privileged, baseline, restricted]
    default: baseline
  labels:
    description: Extra labels for the tenant's namespaces.
    type: dict
  annotations:
    description: Extra annotations for the tenant's namespaces.
    type: dict
  force:
    description:
      - Delete namespaces that still hold workloads or PersistentVolumeClaims, with everything in them,
        when the tenant is C(absent), a namespace is removed from I(namespaces), or I(prune) removes a tenant.
    type: bool
    default: false
  tenants:
    description:
      - Many tenants in one task (one API list per kind, concurrent writes). Mutually exclusive with I(name).
      - I(namespaces) and I(members) cannot be combined with I(tenants); set them in each entry.
      - Each entry takes the same options as a single tenant; I(state), I(quota), I(limits),
        I(network_isolation), I(cluster_isolation), I(allow_from_namespaces), I(pod_security), I(labels),
        I(annotations) and
        I(force) default to the module's top-level values.
    type: list
    elements: dict
    suboptions:
      name:
        description: Tenant name.
        type: str
        required: true
      state:
        description: C(present) or C(absent).
        type: str
        choices: [present, absent]
      namespaces:
        description: As the top-level I(namespaces).
        type: list
        elements: raw
      quota:
        description: As the top-level I(quota).
        type: dict
      limits:
        description: As the top-level I(limits).
        type: dict
        suboptions: *limits_options
      members:
        description: As the top-level I(members).
        type: list
        elements: dict
        suboptions: *member_options
      network_isolation:
        description: As the top-level I(network_isolation).
        type: bool
      cluster_isolation:
        description: As the top-level I(cluster_isolation).
        type: bool
      allow_from_namespaces:
        description: As the top-level I(allow_from_namespaces).
        type: list
        elements: str
      pod_security:
        description: As the top-level I(pod_security).
        type: str
        choices: [privileged, baseline, restricted]
      labels:
        description: As the top-level I(labels).
        type: dict
      annotations:
        description: As the top-level I(annotations).
        type: dict
      force:
        description: As the top-level I(force).
        type: bool
  prune:
    description:
      - With I(tenants) - remove every tenant found in the cluster (by the module's labels) that the list
        does not contain, as with I(state=absent); the top-level I(force) applies to their namespaces.
    type: bool
    default: false
  concurrency:
    description: Maximum number of API requests in flight.
    type: int
    default: 8
  wait:
    description: Wait until deleted namespaces are gone (their content removed by the namespace controller).
    type: bool
    default: false
  wait_timeout:
    description: Seconds to wait with I(wait).
    type: int
    default: 300
extends_documentation_fragment:
  - kubernetes.core.k8s_auth_options
  - ansible.builtin.action_common_attributes
  - anvil.cluster.k8s
notes:
  - Check mode uses the API server's dry run (except inside namespaces that do not exist yet, whose objects are
    rendered locally).
  - Objects are written with server-side apply as field manager C(anvil.cluster.tenant), with I(force), so
    the module's spec wins over manual edits of the fields it manages.
seealso:
  - name: Tenant module guide
    description: docs/modules/tenant.md in the collection.
    link: https://kubernetes.io/docs/concepts/security/multi-tenancy/
"""

EXAMPLES = r"""
- name: A team with two namespaces, quotas, limits, members and isolation
  anvil.cluster.tenant:
    name: payments
    namespaces: [payments-dev, payments-prod]
    quota:
      requests.cpu: "8"
      limits.cpu: "32"
      requests.memory: 16Gi
      limits.memory: 64Gi
      pods: 200
      requests.storage: 500Gi
      fast.storageclass.storage.k8s.io/requests.storage: 100Gi
      count/deployments.apps: 50
    limits:
      default_request: {cpu: 100m, memory: 128Mi}
      default_limit: {cpu: 500m, memory: 512Mi}
      max: {cpu: "4", memory: 8Gi}
      max_limit_request_ratio: {cpu: "4"}
    members:
      - {kind: Group, name: payments-leads, role: admin}
      - {kind: Group, name: payments-devs, role: edit}
      - {kind: User, name: auditor@example.com, role: view}
      - {kind: ServiceAccount, name: deployer, namespace: ci, role: edit}
    allow_from_namespaces: [ingress-nginx, monitoring]
    pod_security: restricted
    labels:
      cost-center: cc-1234

- name: Every tenant from the inventory in one task; remove tenants no longer listed
  anvil.cluster.tenant:
    tenants: "{{ anvil_tenants }}"
    allow_from_namespaces: [ingress-nginx, monitoring]
    prune: true

- name: Tenants that their own admins cannot open to each other (needs Calico, anvil_cni=calico)
  anvil.cluster.tenant:
    tenants: "{{ anvil_tenants }}"
    cluster_isolation: true
    allow_from_namespaces: [monitoring]

- name: Remove a tenant and its namespaces even if workloads still run there
  anvil.cluster.tenant:
    name: old-team
    state: absent
    force: true
    wait: true
"""

RETURN = r"""
tenants:
  description: One entry per tenant handled by the task.
  returned: always
  type: list
  elements: dict
  contains:
    name:
      description: Tenant name.
      type: str
      sample: payments
    state:
      description: Requested state.
      type: str
      sample: present
    namespaces:
      description: The tenant's namespaces after the run (empty when absent).
      type: list
      elements: str
      sample: [payments-dev, payments-prod]
    created:
      description: Objects created, as C(Kind/name) or C(Kind/namespace/name).
      type: list
      elements: str
      sample: [Namespace/payments-dev, ResourceQuota/payments-dev/anvil-tenant]
    updated:
      description: Objects updated (RoleBindings whose roleRef changed are replaced and listed here).
      type: list
      elements: str
      sample: [RoleBinding/payments-dev/anvil-tenant-edit]
    deleted:
      description: Objects deleted. Objects inside a deleted namespace are not listed separately.
      type: list
      elements: str
      sample: [NetworkPolicy/payments-dev/anvil-allow-from-monitoring]
    failed:
      description: Objects whose change failed, with the API server's answer.
      type: list
      elements: dict
      sample: [{ref: ResourceQuota/payments-dev/anvil-tenant, error: "422 Invalid: ..."}]
created:
  description: With I(name), the created objects of that tenant (same as C(tenants[0].created)).
  returned: when I(name) is used
  type: list
  elements: str
updated:
  description: With I(name), the updated objects of that tenant.
  returned: when I(name) is used
  type: list
  elements: str
deleted:
  description: With I(name), the deleted objects of that tenant.
  returned: when I(name) is used
  type: list
  elements: str
blocked:
  description: Namespaces that were not deleted because they hold workloads or PVCs, with their content.
  returned: on failure caused by the force rule
  type: dict
  sample: {payments-dev: [Pod/web-0, PersistentVolumeClaim/data-web-0]}
errors:
  description: Every problem found when the module fails on input or ownership, each naming its field.
  returned: on failure
  type: list
  elements: str
  sample: ["quota.requests.cpu: '2x' has an unknown suffix 'x'"]
stats:
  description: Counts of objects created, updated and deleted, and API requests made.
  returned: always
  type: dict
  sample: {created: 12, updated: 0, deleted: 0, api_requests: 20}
diff:
  description: In diff mode, per tenant, the objects before and after (server view, without bookkeeping fields).
  returned: when diff mode is on and something changed
  type: list
  elements: dict
"""

import time

from ansible_collections.anvil.cluster.plugins.module_utils.k8s.client import ApiError
from ansible_collections.anvil.cluster.plugins.module_utils.k8s.module import KubeModule, ModuleFailure
from ansible_collections.anvil.cluster.plugins.module_utils.k8s.waiter import wait_until
from ansible_collections.anvil.cluster.plugins.module_utils.reconcile import clean_for_diff, execute
from ansible_collections.anvil.cluster.plugins.module_utils.tenant_spec import (
    ADMIN_POLICY_API,
    LABEL_MANAGED_BY,
    LABEL_TENANT,
    MANAGER,
    WORKLOAD_KINDS,
    TenantSpecError,
    blocked_namespace_errors,
    normalize_tenants,
    plan_tenants,
)

NAMESPACED_KINDS = (
    ("v1", "ResourceQuota"),
    ("v1", "LimitRange"),
    ("rbac.authorization.k8s.io/v1", "RoleBinding"),
    ("networking.k8s.io/v1", "NetworkPolicy"),
)
# Flannel's DaemonSet (namespace, name) as the cni_flannel role deploys it: its presence means that
# NetworkPolicies are not enforced.
FLANNEL_DAEMONSET = ("kube-flannel", "kube-flannel-ds")
# With more missing namespaces than this, list all namespaces once instead of one GET per namespace.
GET_NAMESPACES_MAX = 50


def _limits_options():
    keys = ("default_request", "default_limit", "max", "min", "max_limit_request_ratio")
    return dict((key, dict(type="dict")) for key in keys)


def _member_options():
    return dict(
        kind=dict(type="str", choices=["User", "Group", "ServiceAccount"], default="User"),
        name=dict(type="str", required=True),
        namespace=dict(type="str"),
        role=dict(type="str", required=True, choices=["admin", "edit", "view"]),
    )


def _tenant_options(defaults):
    """Options describing one tenant: top-level (with ``defaults``) or an entry of ``tenants`` (inheriting)."""
    options = dict(
        state=dict(type="str", choices=["present", "absent"]),
        namespaces=dict(type="list", elements="raw"),
        quota=dict(type="dict"),
        limits=dict(type="dict", options=_limits_options()),
        members=dict(type="list", elements="dict", options=_member_options()),
        network_isolation=dict(type="bool"),
        cluster_isolation=dict(type="bool"),
        allow_from_namespaces=dict(type="list", elements="str"),
        pod_security=dict(type="str", choices=["privileged", "baseline", "restricted"]),
        labels=dict(type="dict"),
        annotations=dict(type="dict"),
        force=dict(type="bool"),
    )
    for key, value in defaults.items():
        options[key]["default"] = value
    return options


def argument_spec():
    spec = _tenant_options(
        dict(state="present", network_isolation=True, cluster_isolation=False, pod_security="baseline", force=False)
    )
    spec.update(
        name=dict(type="str"),
        tenants=dict(
            type="list", elements="dict", options=dict(_tenant_options({}), name=dict(type="str", required=True))
        ),
        prune=dict(type="bool", default=False),
        concurrency=dict(type="int", default=8),
        wait=dict(type="bool", default=False),
        wait_timeout=dict(type="int", default=300),
    )
    return spec


def _clean_params(params):
    """Drop None values that Ansible fills in for unset suboptions."""
    if isinstance(params, dict):
        return dict((k, _clean_params(v)) for k, v in params.items() if v is not None)
    if isinstance(params, list):
        return [_clean_params(v) for v in params]
    return params


def read_cluster(rest, specs, single):
    """Existing managed namespaces/objects, plus the desired namespaces that exist without our labels.

    Also returns what the cluster offers for isolation: whether it serves AdminNetworkPolicy, and whether
    Flannel (which enforces no NetworkPolicy) is its CNI. All lists and probes run concurrently.
    """
    selector = "%s=%s" % (LABEL_MANAGED_BY, MANAGER)
    if single:
        selector += ",%s=%s" % (LABEL_TENANT, specs[0]["name"])
    lists = [("v1", "Namespace"), *list(NAMESPACED_KINDS), (ADMIN_POLICY_API, "AdminNetworkPolicy")]
    isolating = any(s["state"] == "present" and s["network_isolation"] for s in specs)

    def read(item):
        if item == "flannel":
            return rest.get("apps/v1", "DaemonSet", FLANNEL_DAEMONSET[1], FLANNEL_DAEMONSET[0]) is not None
        if rest.resource(*item) is None:
            return None  # not served (AdminNetworkPolicy without a CNI that implements it)
        return rest.list(item[0], item[1], label_selector=selector)

    results = rest.map(read, lists + (["flannel"] if isolating else []))
    for _item, _result, error in results:
        if error is not None:
            raise error
    namespaces = dict((ns["metadata"]["name"], ns) for ns in results[0][1])
    objects = []
    for _item, result, _error in results[1 : len(lists)]:
        objects.extend(result or [])
    offers = {
        "admin_network_policy": results[len(lists) - 1][1] is not None,
        "flannel": bool(isolating and results[-1][1]),
    }
    wanted = set()
    for spec in specs:
        wanted.update(entry["name"] for entry in spec["namespaces"])
    missing = sorted(wanted - set(namespaces))
    if len(missing) > GET_NAMESPACES_MAX:
        for ns in rest.list("v1", "Namespace"):
            if ns["metadata"]["name"] in wanted:
                namespaces[ns["metadata"]["name"]] = ns
    elif missing:
        for name, found, error in rest.map(lambda n: rest.get("v1", "Namespace", n), missing):
            if error is not None:
                raise error
            if found is not None:
                namespaces[name] = found
    return namespaces, objects, offers


def namespace_contents(rest, names):
    """{namespace: ["Kind/name", ...]} for workloads and PVCs in the given namespaces (first 20 per kind)."""
    queries = [(ns, kind, api_version) for ns in names for kind, api_version in WORKLOAD_KINDS]

    def inspect(query):
        namespace, kind, api_version = query
        found = rest.list(api_version, kind, namespace=namespace, limit=20)
        return ["%s/%s" % (kind, item["metadata"]["name"]) for item in found]

    contents = {}
    for query, found, error in rest.map(inspect, queries):
        if error is not None:
            raise error
        if found:
            contents.setdefault(query[0], []).extend(found)
    return contents


def wait_for_deletion(rest, names, timeout):
    """Namespaces still present (or unreadable) after ``timeout`` seconds; [] once all are gone."""

    def still_present(pending):
        found = rest.map(lambda n: rest.get("v1", "Namespace", n), pending)
        return [name for name, obj, error in found if obj is not None or error is not None]

    return wait_until(names, still_present, time.monotonic() + timeout)


def summarize(plan, outcomes, want_diff):
    by_tenant = dict(
        (
            t["name"],
            {
                "name": t["name"],
                "state": t["state"],
                "namespaces": t["namespaces"],
                "created": [],
                "updated": [],
                "deleted": [],
                "failed": [],
            },
        )
        for t in plan["tenants"]
    )
    diffs = {}
    verbs = {"create": "created", "update": "updated", "replace": "updated", "delete": "deleted"}
    for outcome in outcomes:
        entry = by_tenant[outcome["tenant"]]
        if outcome["error"]:
            entry["failed"].append({"ref": outcome["ref"], "error": outcome["error"]})
            continue
        entry[verbs[outcome["action"]]].append(outcome["ref"])
        if want_diff:
            diff = diffs.setdefault(
                outcome["tenant"],
                {
                    "before_header": "tenant %s" % outcome["tenant"],
                    "after_header": "tenant %s" % outcome["tenant"],
                    "before": {},
                    "after": {},
                },
            )
            if outcome["before"] is not None:
                diff["before"][outcome["ref"]] = clean_for_diff(outcome["before"])
            if outcome["after"] is not None:
                diff["after"][outcome["ref"]] = clean_for_diff(outcome["after"])
    tenants = [by_tenant[t["name"]] for t in plan["tenants"]]
    return tenants, [diffs[t["name"]] for t in plan["tenants"] if t["name"] in diffs]


def run(module):
    params = _clean_params(module.params)
    single = module.params["tenants"] is None
    if not single and not module.params["tenants"]:
        if module.params["prune"]:
            # An empty or mistyped inventory variable must not wipe every tenant of the cluster.
            raise ModuleFailure("prune with an empty tenants list would remove every tenant; refusing")
        return {"changed": False, "tenants": [], "stats": {"created": 0, "updated": 0, "deleted": 0, "api_requests": 0}}
    try:
        specs = normalize_tenants(params)
    except TenantSpecError as exc:
        raise ModuleFailure("Invalid tenant input: %s" % exc, errors=exc.errors) from exc

    rest = module.client(concurrency=module.params["concurrency"])
    try:
        namespaces, objects, offers = read_cluster(rest, specs, single)
        wants_cluster_tier = [s["name"] for s in specs if s["state"] == "present" and s["cluster_isolation"]]
        if wants_cluster_tier and not offers["admin_network_policy"]:
            raise ModuleFailure(
                "Nothing was changed: cluster_isolation (tenants %s) needs AdminNetworkPolicy (%s), which this "
                "cluster does not serve; deploy a CNI that implements it (anvil_cni: calico) or set "
                "cluster_isolation: false" % (", ".join(wants_cluster_tier[:5]), ADMIN_POLICY_API)
            )
        if offers["flannel"]:
            module.warn(
                "this cluster's CNI is Flannel, which does not enforce NetworkPolicy: the tenants' network "
                "isolation is written but traffic is not filtered; use anvil_cni: calico to enforce it"
            )
        plan = plan_tenants(
            specs, namespaces, objects, prune=module.params["prune"] and not single, prune_force=module.params["force"]
        )
        errors = list(plan["errors"])
        to_inspect = [ns for t in plan["tenants"] if not t["force"] for ns in t["delete_namespaces"]]
        blocked = {}
        if to_inspect and not errors:
            blocked_errors, blocked = blocked_namespace_errors(plan, namespace_contents(rest, to_inspect))
            errors.extend(blocked_errors)
    except ApiError as exc:
        raise ModuleFailure("Reading the cluster failed: %s (%s)" % (exc, exc.path), status=exc.status) from exc
    if errors:
        raise ModuleFailure("Nothing was changed: %s" % "; ".join(errors), errors=errors, blocked=blocked)

    actions = [action for tenant in plan["tenants"] for action in tenant["actions"]]
    new_namespaces = [a["key"][2] for a in actions if a["key"][0] == "Namespace" and a["action"] == "create"]
    outcomes = execute(rest, actions, MANAGER, check_mode=module.check_mode, new_namespaces=new_namespaces)
    tenants, diffs = summarize(plan, outcomes, module.want_diff)

    result = {"changed": any(not o["error"] for o in outcomes), "tenants": tenants}
    result["stats"] = {
        "created": sum(len(t["created"]) for t in tenants),
        "updated": sum(len(t["updated"]) for t in tenants),
        "deleted": sum(len(t["deleted"]) for t in tenants),
        "api_requests": rest.total,
    }
    if single:
        for key in ("created", "updated", "deleted"):
            result[key] = tenants[0][key]
    if diffs:
        result["diff"] = diffs
    failures = ["%s: %s" % (f["ref"], f["error"]) for t in tenants for f in t["failed"]]
    if failures:
        raise ModuleFailure("Some changes failed: %s" % "; ".join(failures), **result)
    deleted_namespaces = [o["key"][2] for o in outcomes if o["action"] == "delete" and o["key"][0] == "Namespace"]
    if module.params["wait"] and deleted_namespaces and not module.check_mode:
        remaining = wait_for_deletion(rest, deleted_namespaces, module.params["wait_timeout"])
        if remaining:
            raise ModuleFailure(
                "Namespaces still terminating after %ss: %s" % (module.params["wait_timeout"], ", ".join(remaining)),
                **result,
            )
    return result


def main():
    module = KubeModule(
        argument_spec(),
        # namespaces and members describe one tenant: with `tenants` they belong in each entry.
        mutually_exclusive=[("name", "tenants"), ("namespaces", "tenants"), ("members", "tenants")],
        required_one_of=[("name", "tenants")],
    )
    module.run(lambda: run(module))


if __name__ == "__main__":
    main()
