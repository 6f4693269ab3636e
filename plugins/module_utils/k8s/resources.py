# -*- coding: utf-8 -*-
# Copyright: anvil.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""REST paths of Kubernetes objects: a table of the built-in kinds, discovery for the others.

The table answers for the kinds the collection's modules use without a discovery request (a tenant
run over 1000 namespaces must not pay for discovery); any other kind (a CRD in a release, a kind in
another API version) is looked up once per API group version through the server's discovery
document, which says its plural name and whether it is namespaced.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import threading

# (apiVersion, kind) -> (plural, namespaced) for the built-in kinds the modules read or write.
BUILTIN = {
    ("v1", "Namespace"): ("namespaces", False),
    ("v1", "Node"): ("nodes", False),
    ("v1", "PersistentVolume"): ("persistentvolumes", False),
    ("v1", "Pod"): ("pods", True),
    ("v1", "Service"): ("services", True),
    ("v1", "ServiceAccount"): ("serviceaccounts", True),
    ("v1", "ConfigMap"): ("configmaps", True),
    ("v1", "Secret"): ("secrets", True),
    ("v1", "PersistentVolumeClaim"): ("persistentvolumeclaims", True),
    ("v1", "ResourceQuota"): ("resourcequotas", True),
    ("v1", "LimitRange"): ("limitranges", True),
    ("v1", "ReplicationController"): ("replicationcontrollers", True),
    ("v1", "Endpoints"): ("endpoints", True),
    ("apps/v1", "Deployment"): ("deployments", True),
    ("apps/v1", "StatefulSet"): ("statefulsets", True),
    ("apps/v1", "DaemonSet"): ("daemonsets", True),
    ("apps/v1", "ReplicaSet"): ("replicasets", True),
    ("batch/v1", "Job"): ("jobs", True),
    ("batch/v1", "CronJob"): ("cronjobs", True),
    ("policy/v1", "PodDisruptionBudget"): ("poddisruptionbudgets", True),
    ("networking.k8s.io/v1", "NetworkPolicy"): ("networkpolicies", True),
    ("networking.k8s.io/v1", "Ingress"): ("ingresses", True),
    ("rbac.authorization.k8s.io/v1", "Role"): ("roles", True),
    ("rbac.authorization.k8s.io/v1", "RoleBinding"): ("rolebindings", True),
    ("rbac.authorization.k8s.io/v1", "ClusterRole"): ("clusterroles", False),
    ("rbac.authorization.k8s.io/v1", "ClusterRoleBinding"): ("clusterrolebindings", False),
    ("authentication.k8s.io/v1", "SelfSubjectReview"): ("selfsubjectreviews", False),
    ("storage.k8s.io/v1", "StorageClass"): ("storageclasses", False),
    ("apiextensions.k8s.io/v1", "CustomResourceDefinition"): ("customresourcedefinitions", False),
}


class Resource:
    """One kind as the API server serves it."""

    __slots__ = ("api_version", "kind", "namespaced", "plural")

    def __init__(self, api_version, kind, plural, namespaced):
        self.api_version = api_version
        self.kind = kind
        self.plural = plural
        self.namespaced = namespaced

    def collection_path(self, namespace=None):
        prefix = api_prefix(self.api_version)
        if self.namespaced and namespace:
            return "%s/namespaces/%s/%s" % (prefix, namespace, self.plural)
        return "%s/%s" % (prefix, self.plural)

    def path(self, name, namespace=None, subresource=None):
        path = "%s/%s" % (self.collection_path(namespace), name)
        return "%s/%s" % (path, subresource) if subresource else path


def api_prefix(api_version):
    return "/api/v1" if api_version == "v1" else "/apis/" + api_version


def builtin(api_version, kind):
    """The Resource of a built-in kind, or None."""
    entry = BUILTIN.get((api_version, kind))
    return Resource(api_version, kind, entry[0], entry[1]) if entry else None


def parse_discovery(api_version, document):
    """{kind: Resource} from an APIResourceList (subresources such as pods/eviction are skipped)."""
    found = {}
    for item in (document or {}).get("resources") or []:
        name = item.get("name") or ""
        if "/" in name or not item.get("kind"):
            continue
        found[item["kind"]] = Resource(api_version, item["kind"], name, bool(item.get("namespaced")))
    return found


class Catalog:
    """Resources by (apiVersion, kind): the built-in table first, then one discovery GET per group version.

    ``fetch(path)`` returns the decoded discovery document, or None when the server does not serve that
    group version (404). Safe for concurrent use; each group version is fetched at most once.
    """

    def __init__(self, fetch):
        self._fetch = fetch
        self._groups = {}
        self._lock = threading.Lock()

    def lookup(self, api_version, kind):
        """The Resource, or None when the server does not serve that kind in that API version."""
        known = builtin(api_version, kind)
        if known is not None:
            return known
        with self._lock:
            if api_version not in self._groups:
                self._groups[api_version] = parse_discovery(api_version, self._fetch(api_prefix(api_version)))
            return self._groups[api_version].get(kind)
