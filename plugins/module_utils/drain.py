# -*- coding: utf-8 -*-
# Copyright: anvil.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Node maintenance logic: classify a node's pods, plan node changes, run the eviction loop.

Pure logic (no AnsibleModule): pods, nodes and budgets are the plain JSON dicts the API server
returns. The eviction loop talks to a small interface (DrainApi, over the collection's KubeClient)
and takes its clock, sleep and parallel-map functions as arguments, so unit tests drive it with fakes.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import re
import threading
import time

from ansible_collections.anvil.cluster.plugins.module_utils.k8s.client import ApiError

MIRROR_ANNOTATION = "kubernetes.io/config.mirror"
ANNOTATION_PREFIX = "maintenance.anvil.cluster/"
ANN_REASON = ANNOTATION_PREFIX + "reason"
ANN_BY = ANNOTATION_PREFIX + "requested-by"
ANN_SINCE = ANNOTATION_PREFIX + "since"
ANN_TAINTS = ANNOTATION_PREFIX + "taints"
MODULE_ANNOTATIONS = (ANN_REASON, ANN_BY, ANN_SINCE, ANN_TAINTS)
TAINT_EFFECTS = ("NoSchedule", "PreferNoSchedule", "NoExecute")

# Retry pacing. kubectl drain retries a refused eviction every 5 s; we start faster (a budget often
# frees up as soon as a replacement replica is Ready) and back off to the same 5 s ceiling.
BACKOFF_INITIAL = 0.5
BACKOFF_MAX = 5.0
POLL_INITIAL = 0.25
POLL_MAX = 2.0

REFUSE_HINTS = {
    "unmanaged": "not managed by a controller: set force=true to delete it",
    "emptydir": "uses emptyDir local data: set delete_emptydir_data=true to discard it",
    "daemonset": "managed by a DaemonSet: set ignore_daemonsets=true to leave it running",
}


def pod_key(pod):
    meta = pod.get("metadata", {})
    return "%s/%s" % (meta.get("namespace"), meta.get("name"))


def controller_of(pod):
    for ref in pod.get("metadata", {}).get("ownerReferences") or []:
        if ref.get("controller"):
            return ref
    return None


def classify_pod(pod, force=False, ignore_daemonsets=True, delete_emptydir_data=False):
    """Decide what a drain does with one pod: ("evict"|"wait"|"skip"|"refuse", reason)."""
    meta = pod.get("metadata", {})
    spec = pod.get("spec", {})
    if MIRROR_ANNOTATION in (meta.get("annotations") or {}):
        return "skip", "mirror pod"
    if pod.get("status", {}).get("phase") in ("Succeeded", "Failed"):
        return "skip", "completed"
    if meta.get("deletionTimestamp"):
        return "wait", "terminating"
    owner = controller_of(pod)
    if owner is not None and owner.get("kind") == "DaemonSet":
        if ignore_daemonsets:
            return "skip", "daemonset"
        return "refuse", "daemonset"
    problems = []
    if owner is None and not force:
        problems.append("unmanaged")
    if not delete_emptydir_data and any("emptyDir" in vol for vol in spec.get("volumes") or []):
        problems.append("emptydir")
    if problems:
        return "refuse", ",".join(problems)
    return "evict", "unmanaged" if owner is None else "%s/%s" % (owner.get("kind"), owner.get("name"))


def plan_pods(pods, force=False, ignore_daemonsets=True, delete_emptydir_data=False):
    """Classify every pod of a node; return dict(evict, wait, skip, refuse) of entry lists."""
    plan = {"evict": [], "wait": [], "skip": [], "refuse": []}
    for pod in sorted(pods, key=pod_key):
        action, reason = classify_pod(pod, force, ignore_daemonsets, delete_emptydir_data)
        plan[action].append({"pod": pod_key(pod), "uid": pod["metadata"].get("uid"), "reason": reason})
    return plan


def refusal_message(node, refused):
    parts = []
    for entry in refused:
        hints = "; ".join(REFUSE_HINTS.get(r, r) for r in entry["reason"].split(","))
        parts.append("%s (%s)" % (entry["pod"], hints))
    return "Refusing to drain node %s: %d pod(s) need an explicit option, nothing was changed: %s" % (
        node,
        len(refused),
        ", ".join(parts),
    )


# --- node changes -------------------------------------------------------------------------------


def normalize_taints(taints):
    """Validate user taints; return (list of {key, value, effect}, list of error strings)."""
    result, errors = [], []
    for index, taint in enumerate(taints or []):
        key = (taint or {}).get("key")
        effect = (taint or {}).get("effect") or "NoSchedule"
        if not key:
            errors.append("taints[%d]: key is required" % index)
            continue
        if effect not in TAINT_EFFECTS:
            errors.append("taints[%d]: effect must be one of %s, got %r" % (index, ", ".join(TAINT_EFFECTS), effect))
            continue
        entry = {"key": key, "effect": effect}
        if taint.get("value") not in (None, ""):
            entry["value"] = str(taint["value"])
        result.append(entry)
    return result, errors


def _taint_id(taint):
    return (taint.get("key"), taint.get("effect"))


def recorded_taints(node):
    raw = (node.get("metadata", {}).get("annotations") or {}).get(ANN_TAINTS)
    if not raw:
        return []
    try:
        value = json.loads(raw)
    except ValueError:
        return []
    return [t for t in value if isinstance(t, dict) and t.get("key")] if isinstance(value, list) else []


def node_view(node):
    """The part of a node this module manages (for diff output)."""
    annotations = node.get("metadata", {}).get("annotations") or {}
    return {
        "unschedulable": bool(node.get("spec", {}).get("unschedulable")),
        "taints": list(node.get("spec", {}).get("taints") or []),
        "annotations": dict((k, v) for k, v in annotations.items() if k in MODULE_ANNOTATIONS),
    }


def plan_node(node, state, *, taints=None, reason=None, requested_by=None, now=None):
    """Compute the merge patch that brings a node to `state`.

    Returns (patch or None, after_view). The patch carries metadata.resourceVersion so the API server
    rejects it (409) if the node changed since it was read, and the taint list is sent whole.
    """
    before = node_view(node)
    current_taints = before["taints"]
    ours = recorded_taints(node)
    annotations = before["annotations"]
    new_annotations = dict(annotations)
    desired_taints = list(current_taints)
    if state in ("cordoned", "drained"):
        unschedulable = True
        wanted = taints or []
        wanted_ids = set(_taint_id(t) for t in wanted)
        ours_ids = set(_taint_id(t) for t in ours)
        # Taints we added earlier and that are no longer wanted go away; wanted ones are added.
        desired_taints = [
            t for t in current_taints if not (_taint_id(t) in ours_ids and _taint_id(t) not in wanted_ids)
        ]
        present = dict((_taint_id(t), t) for t in desired_taints)
        new_ours = [t for t in ours if _taint_id(t) in wanted_ids]
        for taint in wanted:
            existing = present.get(_taint_id(taint))
            if existing is None:
                desired_taints.append(dict(taint))
                new_ours.append(dict(taint))
            elif _taint_id(taint) in ours_ids and existing.get("value") != taint.get("value"):
                desired_taints[desired_taints.index(existing)] = dict(taint)
                new_ours = [t for t in new_ours if _taint_id(t) != _taint_id(taint)] + [dict(taint)]
        if new_ours:
            new_ours = sorted(new_ours, key=lambda t: (t["key"], t["effect"]))
            new_annotations[ANN_TAINTS] = json.dumps(new_ours, sort_keys=True, separators=(",", ":"))
        else:
            new_annotations.pop(ANN_TAINTS, None)
        if ANN_SINCE not in annotations:
            new_annotations[ANN_SINCE] = now
            if requested_by:
                new_annotations[ANN_BY] = requested_by
        if reason is not None and annotations.get(ANN_REASON) != reason:
            new_annotations[ANN_REASON] = reason
            if requested_by:
                new_annotations[ANN_BY] = requested_by
    else:  # uncordoned: remove our taints (and those named in `taints`) and our annotations only
        unschedulable = False
        remove_ids = set(_taint_id(t) for t in ours) | set(_taint_id(t) for t in taints or [])
        desired_taints = [t for t in current_taints if _taint_id(t) not in remove_ids]
        new_annotations = {}
    after = {"unschedulable": unschedulable, "taints": desired_taints, "annotations": new_annotations}
    if after == before:
        return None, after
    patch = {"metadata": {"resourceVersion": node["metadata"].get("resourceVersion")}}
    if after["unschedulable"] != before["unschedulable"]:
        patch["spec"] = {"unschedulable": unschedulable or None}
    if after["taints"] != before["taints"]:
        patch.setdefault("spec", {})["taints"] = desired_taints or None
    if after["annotations"] != annotations:
        changes = {}
        for key in MODULE_ANNOTATIONS:
            if new_annotations.get(key) != annotations.get(key):
                changes[key] = new_annotations.get(key)
        patch["metadata"]["annotations"] = changes
    return patch, after


# --- label selectors and budgets -----------------------------------------------------------------


def selector_matches(selector, labels):
    """metav1.LabelSelector semantics (matchLabels AND matchExpressions); None matches nothing."""
    if selector is None:
        return False
    labels = labels or {}
    for key, value in (selector.get("matchLabels") or {}).items():
        if labels.get(key) != value:
            return False
    for expr in selector.get("matchExpressions") or []:
        key, op, values = expr.get("key"), expr.get("operator"), expr.get("values") or []
        if op == "In" and labels.get(key) not in values:
            return False
        if op == "NotIn" and key in labels and labels[key] in values:
            return False
        if op == "Exists" and key not in labels:
            return False
        if op == "DoesNotExist" and key in labels:
            return False
    return True


def pdb_summary(pdb):
    status = pdb.get("status") or {}
    return {
        "pdb": "%s/%s" % (pdb["metadata"]["namespace"], pdb["metadata"]["name"]),
        "disruptions_allowed": status.get("disruptionsAllowed", 0),
        "current_healthy": status.get("currentHealthy", 0),
        "desired_healthy": status.get("desiredHealthy", 0),
        "expected_pods": status.get("expectedPods", 0),
    }


def budgets_for(pod, pdbs):
    labels = pod.get("metadata", {}).get("labels") or {}
    ns = pod.get("metadata", {}).get("namespace")
    return [p for p in pdbs if p["metadata"]["namespace"] == ns and selector_matches(p["spec"].get("selector"), labels)]


_PDB_CAUSE = re.compile(r"disruption budget (\S+?) needs")


def blocking_pdb_from_error(err, namespace):
    """Name the PDB in a 429 eviction refusal ("The disruption budget web needs 2 healthy pods...")."""
    for cause in (err.details or {}).get("causes") or []:
        match = _PDB_CAUSE.search(cause.get("message") or "")
        if match:
            return "%s/%s" % (namespace, match.group(1))
    return None


# --- eviction loop -------------------------------------------------------------------------------


def serial_map(func, items):
    return [func(item) for item in items]


def threaded_map(workers):
    """A bounded parallel map (threads: each eviction is one blocking HTTP call)."""
    from concurrent.futures import ThreadPoolExecutor

    def run(func, items):
        if len(items) <= 1:
            return serial_map(func, items)
        with ThreadPoolExecutor(max_workers=min(workers, len(items))) as pool:
            return list(pool.map(func, items))

    return run


class _Track(object):
    def __init__(self, pod, action):
        meta = pod["metadata"]
        self.pod = pod
        self.key = pod_key(pod)
        self.namespace = meta.get("namespace")
        self.name = meta.get("name")
        self.uid = meta.get("uid")
        self.action = action  # "evict" or "wait"
        self.next_at = 0.0
        self.attempts = 0
        self.accepted = action == "wait"
        self.done = False
        self.reason = "terminating" if action == "wait" else None
        self.pdb = None
        self.message = None


class DrainLoop(object):
    """Evict (or delete) a node's pods concurrently and wait until each is gone by UID.

    api: object with list_node_pods(node, label_selector), evict(namespace, name, uid, grace_period)
    and delete(namespace, name, uid, grace_period), raising ApiError.
    """

    def __init__(
        self,
        api,
        node,
        pods,
        *,
        label_selector=None,
        grace_period=None,
        disable_eviction=False,
        force=False,
        ignore_daemonsets=True,
        delete_emptydir_data=False,
        deadline=None,
        clock=time.monotonic,
        sleep=time.sleep,
        parallel=serial_map,
    ):
        self.api = api
        self.node = node
        self.label_selector = label_selector
        self.grace_period = grace_period
        self.disable_eviction = disable_eviction
        self.classify = dict(
            force=force, ignore_daemonsets=ignore_daemonsets, delete_emptydir_data=delete_emptydir_data
        )
        self.deadline = deadline
        self.clock = clock
        self.sleep = sleep
        self.parallel = parallel
        self.tracks = {}
        self.evicted = []
        self.retries = 0
        self.list_errors = 0
        self.late_refused = {}
        self.error = None
        self.timed_out = False
        self._lock = threading.Lock()
        for pod in pods:
            self._adopt(pod)

    def _adopt(self, pod):
        action, reason = classify_pod(pod, **self.classify)
        uid = pod["metadata"].get("uid")
        if action in ("evict", "wait"):
            self.tracks[uid] = _Track(pod, action)
        elif action == "refuse":
            self.late_refused[uid] = {"pod": pod_key(pod), "uid": uid, "reason": reason}

    def _attempt(self, track):
        try:
            if self.disable_eviction:
                self.api.delete(track.namespace, track.name, track.uid, self.grace_period)
            else:
                self.api.evict(track.namespace, track.name, track.uid, self.grace_period)
        except ApiError as err:
            return err
        except Exception as err:  # connection errors: transient, retried like a 5xx
            return ApiError(0, "ConnectionError", str(err))
        return None

    def _handle(self, track, err, now):
        if err is None:
            track.accepted = True
            track.reason = "evicted, waiting for the pod to terminate"
            self.evicted.append(track.key)
            return
        if err.status == 404 or (err.status == 409 and "uid" in (err.message or "").lower()):
            track.done = True  # already gone, or replaced by a new pod with the same name
            return
        track.attempts += 1
        track.message = err.message
        if err.status == 429:
            track.pdb = blocking_pdb_from_error(err, track.namespace) or track.pdb
            track.reason = "disruption budget" if track.pdb or "disruption budget" in err.message else "rate limited"
        elif err.status == 500 and "disruption" in (err.message or "").lower():
            track.reason = "disruption budget"  # e.g. more than one PDB selects the pod
        elif err.status == 0 or err.status >= 500:
            track.reason = "api error"
        else:
            self.error = "Evicting %s failed (HTTP %s %s): %s" % (track.key, err.status, err.reason, err.message)
            if err.status == 403:
                self.error += (
                    " (the credentials need 'create' on pods/eviction, or 'delete' on pods with disable_eviction)"
                )
            return
        self.retries += 1
        delay = min(BACKOFF_MAX, BACKOFF_INITIAL * (2 ** (track.attempts - 1)))
        if err.retry_after:
            delay = max(delay, float(err.retry_after))
        track.next_at = now + delay

    def _observe(self):
        current = {}
        for pod in self.api.list_node_pods(self.node, self.label_selector):
            current[pod["metadata"].get("uid")] = pod
        for uid, track in self.tracks.items():
            pod = current.get(uid)
            if pod is None or pod.get("status", {}).get("phase") in ("Succeeded", "Failed"):
                track.done = True
        for uid, pod in current.items():
            if uid not in self.tracks and uid not in self.late_refused:
                self._adopt(pod)  # scheduled onto the node before the cordon took effect
        for uid in list(self.late_refused):
            if uid not in current:
                del self.late_refused[uid]

    def remaining(self):
        return [t for t in self.tracks.values() if not t.done]

    def run(self):
        poll = POLL_INITIAL
        while True:
            now = self.clock()
            due = [t for t in self.remaining() if not t.accepted and t.next_at <= now]
            if due:
                results = self.parallel(self._attempt, due)
                now = self.clock()
                for track, err in zip(due, results):
                    self._handle(track, err, now)
                if self.error:
                    return self
            try:
                self._observe()
            except ApiError as err:
                if 400 <= err.status < 500 and err.status != 429:
                    raise
                self.list_errors += 1  # transient (5xx, throttling): look again at the next poll
            except Exception:
                self.list_errors += 1  # connection trouble: same
            pending = self.remaining()
            if not pending:
                return self
            now = self.clock()
            if self.deadline is not None and now >= self.deadline:
                self.timed_out = True
                return self
            wake = now + poll
            retry_times = [t.next_at for t in pending if not t.accepted]
            if retry_times:
                wake = min(wake, max(min(retry_times), now))
            if self.deadline is not None:
                wake = min(wake, self.deadline)
            poll = min(POLL_MAX, poll * 1.5)
            if wake > now:
                self.sleep(wake - now)

    def blocked(self, pdbs_by_namespace=None):
        """Pods still on the node, with what blocks them (named PDB, reason, last API message)."""
        result = []
        for track in sorted(self.remaining(), key=lambda t: t.key):
            pdb = track.pdb
            if pdb is None and pdbs_by_namespace is not None:
                matching = budgets_for(track.pod, pdbs_by_namespace.get(track.namespace, []))
                if matching:
                    pdb = ",".join(pdb_summary(p)["pdb"] for p in matching)
            entry = {"pod": track.key, "reason": track.reason or "not evicted", "pdb": pdb}
            if track.message:
                entry["message"] = track.message
            result.append(entry)
        for entry in sorted(self.late_refused.values(), key=lambda e: e["pod"]):
            hints = "; ".join(REFUSE_HINTS.get(r, r) for r in entry["reason"].split(","))
            result.append({"pod": entry["pod"], "reason": "appeared during the drain and " + hints, "pdb": None})
        return result


# --- API adapter ---------------------------------------------------------------------------------


class DrainApi(object):
    """The calls node maintenance makes, on the collection's KubeClient (k8s.client), as JSON dicts.

    Evictions and pod deletions are sent without client-side retries: DrainLoop must see every 429
    from a PodDisruptionBudget to pace its own retries and report them.
    """

    def __init__(self, client):
        self.client = client

    @property
    def calls(self):
        return self.client.calls

    def get_node(self, name):
        node = self.client.get("v1", "Node", name, what="get node")
        if node is None:
            raise ApiError(404, "NotFound", 'nodes "%s" not found' % name)
        return node

    def patch_node(self, name, patch):
        return self.client.patch("v1", "Node", name, patch, what="patch node")

    def list_node_pods(self, node, label_selector=None):
        return self.client.list(
            "v1", "Pod", label_selector=label_selector, field_selector="spec.nodeName=" + node, what="list pods"
        )

    @staticmethod
    def _pod(namespace, name):
        return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": namespace}}

    @staticmethod
    def _delete_options(uid, grace_period):
        options = {"preconditions": {"uid": uid}}
        if grace_period is not None:
            options["gracePeriodSeconds"] = grace_period
        return options

    def evict(self, namespace, name, uid, grace_period=None):
        body = {
            "apiVersion": "policy/v1",
            "kind": "Eviction",
            "metadata": {"name": name, "namespace": namespace},
            "deleteOptions": self._delete_options(uid, grace_period),
        }
        return self.client.post_subresource(
            self._pod(namespace, name), "eviction", body, what="create eviction", retry=False
        )

    def delete(self, namespace, name, uid, grace_period=None):
        deleted = self.client.delete(
            self._pod(namespace, name),
            propagation=None,
            options=self._delete_options(uid, grace_period),
            what="delete pod",
            retry=False,
        )
        if not deleted:
            raise ApiError(404, "NotFound", 'pods "%s" not found' % name)

    def list_pdbs(self, namespace):
        return self.client.list("policy/v1", "PodDisruptionBudget", namespace=namespace, what="list pdbs")

    def whoami(self):
        return self.client.whoami()
