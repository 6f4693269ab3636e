# -*- coding: utf-8 -*-
# Copyright: anvil.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Planning for anvil.cluster.app_release: object identity, validation, prune set, diff, readiness.

Pure logic: the module feeds it manifests and objects read from the API server and acts on the
answers. No Kubernetes client and no AnsibleModule here, so all of it is unit-tested.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import copy
import hashlib
import json
import os
import re

from ansible_collections.anvil.cluster.plugins.module_utils.quantity import QuantityError, parse_quantity

FIELD_MANAGER = "anvil.cluster.app_release"
RELEASE_LABEL = "anvil.cluster/release"
ANNOTATION_NAME = "anvil.cluster/release-name"
ANNOTATION_NAMESPACE = "anvil.cluster/release-namespace"
# Like Helm's helm.sh/resource-policy: keep -- an object carrying it survives pruning and uninstall.
ANNOTATION_POLICY = "anvil.cluster/resource-policy"
KEEP = "keep"

# Apply order (Helm's install order, which puts what others depend on first); unknown kinds last.
# Deletion uses the reverse order.
INSTALL_ORDER = [
    "Namespace",
    "NetworkPolicy",
    "ResourceQuota",
    "LimitRange",
    "PodDisruptionBudget",
    "ServiceAccount",
    "Secret",
    "ConfigMap",
    "StorageClass",
    "PersistentVolume",
    "PersistentVolumeClaim",
    "CustomResourceDefinition",
    "ClusterRole",
    "ClusterRoleBinding",
    "Role",
    "RoleBinding",
    "Service",
    "DaemonSet",
    "Pod",
    "ReplicationController",
    "ReplicaSet",
    "Deployment",
    "HorizontalPodAutoscaler",
    "StatefulSet",
    "Job",
    "CronJob",
    "IngressClass",
    "Ingress",
    "APIService",
]

DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")

# Metadata the server owns; dropped before comparing live objects with dry-run results and in diffs.
VOLATILE_METADATA = ("managedFields", "resourceVersion", "generation", "creationTimestamp", "uid", "selfLink")


class PlanError(Exception):
    """Bad input: every problem found, so the user fixes them all at once."""

    def __init__(self, problems):
        self.problems = list(problems)
        super().__init__("; ".join(self.problems))


def group_of(api_version):
    return api_version.split("/", 1)[0] if "/" in api_version else ""


def identity(obj):
    """Identity of an object across revisions: API group (not version), kind, namespace, name.

    The group rather than the apiVersion, so that moving a manifest from apps/v1beta2 to apps/v1 does
    not read as "drop one object, add another" (which would prune it).
    """
    meta = obj.get("metadata") or {}
    return "%s/%s/%s/%s" % (
        group_of(obj.get("apiVersion", "")),
        obj.get("kind", ""),
        meta.get("namespace") or "",
        meta.get("name", ""),
    )


def ref(obj):
    """The reference to an object returned to playbooks."""
    meta = obj.get("metadata") or {}
    out = {"apiVersion": obj.get("apiVersion"), "kind": obj.get("kind"), "name": meta.get("name")}
    if meta.get("namespace"):
        out["namespace"] = meta["namespace"]
    return out


def ref_text(obj):
    meta = obj.get("metadata") or {}
    if meta.get("namespace"):
        return "%s %s/%s" % (obj.get("kind"), meta["namespace"], meta.get("name"))
    return "%s %s" % (obj.get("kind"), meta.get("name"))


def install_rank(obj):
    kind = obj.get("kind", "")
    return INSTALL_ORDER.index(kind) if kind in INSTALL_ORDER else len(INSTALL_ORDER)


def install_sorted(objects):
    return sorted(objects, key=lambda o: (install_rank(o), identity(o)))


def uninstall_sorted(objects):
    return list(reversed(install_sorted(objects)))


def flatten(documents):
    """Drop empty YAML documents and expand `kind: List` / `*List` documents into their items."""
    out = []
    for doc in documents:
        if doc is None:
            continue
        if isinstance(doc, dict) and doc.get("kind", "").endswith("List") and isinstance(doc.get("items"), list):
            out.extend(flatten(doc["items"]))
        else:
            out.append(doc)
    return out


MANIFEST_SUFFIXES = (".yml", ".yaml", ".json")


def manifest_files(path):
    """The manifest files of ``src``: the file itself, or a directory's YAML/JSON files in name order."""
    if not os.path.exists(path):
        raise PlanError(["src %s does not exist" % path])
    if not os.path.isdir(path):
        return [path]
    files = []
    for root, dirnames, filenames in os.walk(path):
        dirnames.sort()
        files.extend(os.path.join(root, name) for name in sorted(filenames) if name.endswith(MANIFEST_SUFFIXES))
    if not files:
        raise PlanError(["src directory %s holds no .yml, .yaml or .json file" % path])
    return files


def load_documents(text, origin):
    """All YAML documents of a text; PlanError naming ``origin`` when it is not valid YAML."""
    import yaml

    try:
        return list(yaml.safe_load_all(text))
    except yaml.YAMLError as exc:
        raise PlanError(["%s is not valid YAML: %s" % (origin, exc)]) from exc


def read_manifests(path):
    docs = []
    for filename in manifest_files(path):
        with open(filename) as handle:
            docs.extend(load_documents(handle.read(), filename))
    return docs


def render(documents, release, namespace, is_namespaced, allowed_namespaces=()):
    """Validate manifests and return them ready to apply (namespace set, ownership marks added).

    ``is_namespaced(api_version, kind)`` returns True/False, or None when the API server does not know
    the kind. Raises PlanError listing every problem found.
    """
    problems = []
    objects = []
    seen = {}
    allowed = set(allowed_namespaces or ())
    for index, doc in enumerate(flatten(documents)):
        where = "manifest %d" % (index + 1)
        if not isinstance(doc, dict):
            problems.append("%s is not a mapping (got %s)" % (where, type(doc).__name__))
            continue
        obj = copy.deepcopy(doc)
        api_version, kind = obj.get("apiVersion"), obj.get("kind")
        meta = obj.get("metadata")
        if not api_version or not isinstance(api_version, str):
            problems.append("%s has no apiVersion" % where)
        if not kind or not isinstance(kind, str):
            problems.append("%s has no kind" % where)
        if not isinstance(meta, dict) or not meta.get("name"):
            problems.append("%s (%s) has no metadata.name" % (where, kind or "?"))
            continue
        if meta.get("generateName"):
            problems.append("%s (%s %s) uses generateName, which a release cannot track" % (where, kind, meta["name"]))
        name = meta["name"]
        if not isinstance(name, str) or not DNS_SUBDOMAIN.match(name) or len(name) > 253:
            problems.append("%s (%s) has an invalid metadata.name %r" % (where, kind, name))
        if not api_version or not kind:
            continue
        where = "%s (%s %s)" % (where, kind, name)
        namespaced = is_namespaced(api_version, kind)
        if namespaced is None:
            problems.append(
                "%s: the API server does not serve %s in %s (is the CRD installed?)" % (where, kind, api_version)
            )
            continue
        if namespaced:
            obj_ns = meta.get("namespace") or namespace
            if obj_ns != namespace and obj_ns not in allowed and "*" not in allowed:
                problems.append(
                    "%s is in namespace %s, not the release namespace %s; list it in allowed_namespaces to permit it"
                    % (where, obj_ns, namespace)
                )
            meta["namespace"] = obj_ns
        elif meta.get("namespace"):
            # Cluster-scoped objects have no namespace; drop it as kubectl does.
            del meta["namespace"]
        labels = meta.get("labels") or {}
        annotations = meta.get("annotations") or {}
        if not isinstance(labels, dict) or not isinstance(annotations, dict):
            problems.append("%s: metadata.labels and metadata.annotations must be mappings" % where)
            continue
        labels = dict(labels)
        annotations = dict(annotations)
        labels[RELEASE_LABEL] = release
        annotations[ANNOTATION_NAME] = release
        annotations[ANNOTATION_NAMESPACE] = namespace
        meta["labels"] = labels
        meta["annotations"] = annotations
        # Server-owned fields in a manifest (e.g. copied from `kubectl get -o yaml`) break apply.
        for key in VOLATILE_METADATA:
            meta.pop(key, None)
        obj.pop("status", None)
        key = identity(obj)
        if key in seen:
            problems.append("%s duplicates %s" % (where, seen[key]))
            continue
        seen[key] = where
        objects.append(obj)
    if not objects and not problems:
        problems.append("the release has no objects: give definitions, src or chart with at least one manifest")
    if problems:
        raise PlanError(problems)
    return install_sorted(objects)


# Maps whose values are resource quantities: container requests/limits, quota hard/used, LimitRange bounds,
# node/PV capacity, and overhead.
QUANTITY_MAPS = frozenset(
    [
        "requests",
        "limits",
        "hard",
        "capacity",
        "max",
        "min",
        "default",
        "defaultRequest",
        "maxLimitRequestRatio",
        "podFixed",
    ]
)


def _semantic(value, key=None):
    if isinstance(value, dict):
        if key in QUANTITY_MAPS:
            out = {}
            for name, item in value.items():
                if not isinstance(item, (str, int, float)):
                    out[name] = _semantic(item, name)
                    continue
                try:
                    out[name] = "q:" + str(parse_quantity(item).normalize())
                except QuantityError:
                    out[name] = _semantic(item, name)
            return out
        return {name: _semantic(item, name) for name, item in value.items()}
    if isinstance(value, list):
        return [_semantic(item) for item in value]
    return value


def semantic_view(objects):
    """Objects with resource quantities replaced by their exact value, for the release digest.

    So that rewriting ``cpu: 1000m`` as ``cpu: 1`` (or ``memory: 1Gi`` as ``1073741824``) is not a new
    revision: the cluster would hold exactly the same object.
    """
    return [_semantic(obj) for obj in objects]


def owner_of(obj):
    """(release name, release namespace) of a live object, or None if no release owns it."""
    annotations = (obj.get("metadata") or {}).get("annotations") or {}
    if ANNOTATION_NAME not in annotations:
        return None
    return annotations.get(ANNOTATION_NAME), annotations.get(ANNOTATION_NAMESPACE)


def ownership_problem(live, release, namespace, adopt=False):
    """Why this run must not touch a live object, or None."""
    owner = owner_of(live)
    if owner is None:
        if adopt:
            return None
        return "%s exists and is not managed by any release; delete it, or set adopt=true to take it over" % ref_text(
            live
        )
    if owner != (release, namespace):
        return "%s belongs to release %s/%s; a release never touches another release's objects" % (
            ref_text(live),
            owner[1],
            owner[0],
        )
    return None


def keep(obj):
    annotations = (obj.get("metadata") or {}).get("annotations") or {}
    return annotations.get(ANNOTATION_POLICY) == KEEP


def prune_set(previous_objects, desired_objects):
    """Objects of the previous revision that the new one drops and that are not marked keep."""
    wanted = {identity(o) for o in desired_objects}
    return uninstall_sorted([o for o in previous_objects if identity(o) not in wanted and not keep(o)])


def comparable(obj):
    """An object without server-owned noise, for change detection and diffs."""
    if obj is None:
        return None
    out = copy.deepcopy(obj)
    meta = out.get("metadata") or {}
    for key in VOLATILE_METADATA:
        meta.pop(key, None)
    annotations = meta.get("annotations") or {}
    annotations.pop("deployment.kubernetes.io/revision", None)
    annotations.pop("kubectl.kubernetes.io/last-applied-configuration", None)
    if "annotations" in meta and not annotations:
        del meta["annotations"]
    out.pop("status", None)
    return out


def fingerprint(obj):
    """What a live object is, as far as a release is concerned: the sha256 of comparable(obj) (everything but
    status and the server's bookkeeping). A deployment records it for each object it leaves behind, so a
    later run with the same manifests can tell from one LIST per kind that nothing needs a dry run."""
    text = json.dumps(comparable(obj), sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:32]


def is_changed(live, dry_run):
    """Would applying change the object? Compares the live object with the server's dry-run answer.

    Both come from the server, already defaulted and normalised (quantities, ports, ...), so an equal
    comparison here is semantic, not textual.
    """
    return comparable(live) != comparable(dry_run)


def _redact_value(value):
    text = value if isinstance(value, str) else json.dumps(value, sort_keys=True)
    return "<redacted sha256:%s>" % hashlib.sha256(text.encode("utf-8")).hexdigest()[:12]


def redact(obj):
    """A copy safe to show: Secret values replaced by a short hash (changes stay visible in diffs)."""
    if obj is None or obj.get("kind") != "Secret":
        return obj
    out = copy.deepcopy(obj)
    for field in ("data", "stringData"):
        if isinstance(out.get(field), dict):
            out[field] = {k: _redact_value(v) for k, v in out[field].items()}
    annotations = (out.get("metadata") or {}).get("annotations") or {}
    if "kubectl.kubernetes.io/last-applied-configuration" in annotations:
        annotations["kubectl.kubernetes.io/last-applied-configuration"] = "<redacted>"
    return out


def diff_entry(before, after, dump):
    """One entry of Ansible's diff list for an object: ``dump`` turns an object into YAML text."""
    obj = after if after is not None else before
    label = ref_text(obj)
    return {
        "before_header": label if before is not None else "%s (absent)" % label,
        "after_header": label if after is not None else "%s (deleted)" % label,
        "before": dump(redact(comparable(before))) if before is not None else "",
        "after": dump(redact(comparable(after))) if after is not None else "",
    }


def _condition(obj, kind):
    for cond in (obj.get("status") or {}).get("conditions") or []:
        if cond.get("type") == kind:
            return cond
    return None


def readiness(obj):
    """(state, message) of a live object: state is 'ready', 'waiting' or 'failed'.

    Deployments, StatefulSets and DaemonSets must be fully rolled out at their current generation,
    Jobs complete, PVCs bound; other kinds are ready once they exist.
    """
    kind = obj.get("kind")
    meta = obj.get("metadata") or {}
    spec = obj.get("spec") or {}
    status = obj.get("status") or {}
    generation = meta.get("generation", 0)
    observed = status.get("observedGeneration", 0)
    label = ref_text(obj)
    if kind in ("Deployment", "StatefulSet", "DaemonSet") and observed < generation:
        return "waiting", "%s: controller has not observed generation %d yet" % (label, generation)
    if kind == "Deployment":
        if spec.get("paused"):
            return "ready", "%s is paused" % label
        progressing = _condition(obj, "Progressing")
        if progressing and progressing.get("reason") == "ProgressDeadlineExceeded":
            return "failed", "%s: %s" % (label, progressing.get("message", "progress deadline exceeded"))
        want = spec.get("replicas", 1)
        updated = status.get("updatedReplicas", 0)
        total = status.get("replicas", 0)
        available = status.get("availableReplicas", 0)
        if updated < want:
            return "waiting", "%s: %d of %d replicas updated" % (label, updated, want)
        if total > updated:
            return "waiting", "%s: %d old replicas pending termination" % (label, total - updated)
        if available < want:
            return "waiting", "%s: %d of %d updated replicas available" % (label, available, want)
        return "ready", "%s rolled out" % label
    if kind == "StatefulSet":
        want = spec.get("replicas", 1)
        ready = status.get("readyReplicas", 0)
        strategy = (spec.get("updateStrategy") or {}).get("type", "RollingUpdate")
        if strategy == "RollingUpdate":
            partition = ((spec.get("updateStrategy") or {}).get("rollingUpdate") or {}).get("partition", 0)
            updated = status.get("updatedReplicas", 0)
            if updated < want - partition:
                return "waiting", "%s: %d of %d replicas updated" % (label, updated, want - partition)
            if partition == 0 and status.get("updateRevision") != status.get("currentRevision"):
                return "waiting", "%s: rollout to %s in progress" % (label, status.get("updateRevision"))
        if ready < want:
            return "waiting", "%s: %d of %d replicas ready" % (label, ready, want)
        return "ready", "%s rolled out" % label
    if kind == "DaemonSet":
        desired = status.get("desiredNumberScheduled", 0)
        updated = status.get("updatedNumberScheduled", 0)
        available = status.get("numberAvailable", 0)
        if updated < desired:
            return "waiting", "%s: %d of %d pods updated" % (label, updated, desired)
        if available < desired:
            return "waiting", "%s: %d of %d pods available" % (label, available, desired)
        return "ready", "%s rolled out" % label
    if kind == "Job":
        failed = _condition(obj, "Failed")
        if failed and failed.get("status") == "True":
            return "failed", "%s failed: %s" % (label, failed.get("message") or failed.get("reason"))
        complete = _condition(obj, "Complete")
        if complete and complete.get("status") == "True":
            return "ready", "%s complete" % label
        return "waiting", "%s: %d of %s completions" % (label, status.get("succeeded", 0), spec.get("completions", 1))
    if kind == "PersistentVolumeClaim":
        phase = status.get("phase")
        if phase == "Bound":
            return "ready", "%s bound" % label
        if phase == "Lost":
            return "failed", "%s lost its volume" % label
        return "waiting", "%s is %s" % (label, phase or "not bound")
    return "ready", "%s exists" % label


WAITED_KINDS = ("Deployment", "StatefulSet", "DaemonSet", "Job", "PersistentVolumeClaim")
