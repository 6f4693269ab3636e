#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: anvil.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: node_maintenance
short_description: Cordon, drain and uncordon a Kubernetes node, with results operators can act on
version_added: 0.1.0
author:
  - anvil.cluster contributors (@anvil-cluster)
description:
  - Puts one node into maintenance (C(cordoned) or C(drained)) or takes it out again (C(uncordoned)).
  - A drain first lists the pods of that node only (field selector C(spec.nodeName)), and refuses before
    changing anything, naming every offending pod at once, when pods without a controller exist and
    O(force) is not set, or pods with emptyDir data exist and O(delete_emptydir_data) is not set.
  - It then cordons the node, evicts pods concurrently (bounded by O(concurrency)), retries evictions
    refused by a PodDisruptionBudget (HTTP 429) with backoff until O(timeout), and waits until every
    evicted pod is gone by UID (a StatefulSet pod recreated under the same name counts as gone).
  - On timeout it fails with the pods still present and the PodDisruptionBudgets that block them; the
    node stays cordoned unless O(uncordon_on_failure=true). A run that evicted anything never reports
    C(changed=false).
  - The reason, who asked and when are recorded as node annotations under C(maintenance.anvil.cluster/);
    C(uncordoned) removes those annotations and the taints this module added, and nothing else.
extends_documentation_fragment:
  - kubernetes.core.k8s_auth_options
  - ansible.builtin.action_common_attributes
  - anvil.cluster.k8s
options:
  name:
    description: Name of the node.
    type: str
    required: true
  state:
    description:
      - V(cordoned) marks the node unschedulable (and applies O(taints)).
      - V(drained) cordons the node and evicts its pods.
      - V(uncordoned) marks the node schedulable and removes this module's taints and annotations.
    type: str
    required: true
    choices: [cordoned, drained, uncordoned]
  timeout:
    description:
      - Seconds the whole drain may take, from the first API call until the last pod is gone.
      - V(0) waits without limit.
    type: int
    default: 300
  grace_period:
    description:
      - Termination grace period in seconds for evicted pods, overriding each pod's own.
      - V(0) is honoured and deletes pods immediately.
      - Unset uses each pod's C(terminationGracePeriodSeconds).
    type: int
  ignore_daemonsets:
    description: Leave DaemonSet-managed pods running. When V(false), such pods make the drain refuse.
    type: bool
    default: true
  delete_emptydir_data:
    description: Evict pods that use emptyDir volumes, discarding that data. When V(false), such pods make the drain refuse.
    type: bool
    default: false
  force:
    description: Also delete pods that no controller manages (they are not recreated anywhere).
    type: bool
    default: false
  pod_selector:
    description: Label selector restricting which of the node's pods the drain considers, for example C(app!=csi-node).
    type: str
  disable_eviction:
    description:
      - Delete pods instead of using the eviction API. This bypasses PodDisruptionBudgets; use it only
        when you accept the disruption.
    type: bool
    default: false
  taints:
    description:
      - Extra taints applied while the node is in maintenance. The module records which ones it added
        and removes exactly those when the node is uncordoned.
      - With O(state=uncordoned), taints listed here are removed as well.
    type: list
    elements: dict
    suboptions:
      key:
        description: Taint key.
        type: str
        required: true
      value:
        description: Taint value.
        type: str
      effect:
        description: Taint effect.
        type: str
        default: NoSchedule
        choices: [NoSchedule, PreferNoSchedule, NoExecute]
  reason:
    description: Why the node is in maintenance; recorded in the C(maintenance.anvil.cluster/reason) annotation.
    type: str
  requested_by:
    description:
      - Who asks for the maintenance, recorded in the C(maintenance.anvil.cluster/requested-by) annotation.
      - Defaults to the user name the API server sees for the credentials (SelfSubjectReview).
    type: str
  uncordon_on_failure:
    description: When a drain fails after cordoning (timeout, API error), make the node schedulable again.
    type: bool
    default: false
  concurrency:
    description: How many evictions are sent in parallel.
    type: int
    default: 10
notes:
  - Runs wherever the API server is reachable (a control-plane host or the controller); delegate it there
    when looping over nodes, see C(playbooks/maintenance.yml).
  - Pods that are already terminating are waited for. Completed pods and mirror pods are left alone.
seealso:
  - module: kubernetes.core.k8s_drain
"""

EXAMPLES = r"""
- name: Drain node3 for a kernel update, waiting up to 10 minutes for PodDisruptionBudgets
  anvil.cluster.node_maintenance:
    name: node3
    state: drained
    timeout: 600
    delete_emptydir_data: true
    reason: kernel 6.1.0-30 update
  register: drain

- name: Show what blocked, if anything
  ansible.builtin.debug:
    var: drain.blocked
  when: drain.blocked | default([]) | length > 0

- name: Keep new workloads off a node with a failing disk, without evicting anything yet
  anvil.cluster.node_maintenance:
    name: node7
    state: cordoned
    taints:
      - key: maintenance.example.com/disk
        value: replace
        effect: NoSchedule
    reason: disk sdb replacement, ticket OPS-1234

- name: Put the node back into service (removes this module's taints and annotations only)
  anvil.cluster.node_maintenance:
    name: node3
    state: uncordoned
"""

RETURN = r"""
node:
  description: Name of the node.
  returned: always
  type: str
  sample: node3
unschedulable:
  description: Whether the node is unschedulable after the run.
  returned: when the node was read
  type: bool
  sample: true
plan:
  description:
    - What the drain decided from the pods on the node before acting (identical in check mode).
    - C(evict), C(wait) (already terminating), C(skip) and C(refuse) are lists of C(pod) (namespace/name), C(uid), C(reason).
  returned: state=drained
  type: dict
  sample: {"evict": [{"pod": "shop/web-7d9-abcde", "uid": "1b2c...", "reason": "ReplicaSet/web-7d9"}], "wait": [], "skip": [], "refuse": []}
evicted:
  description: Pods evicted (or deleted with O(disable_eviction)) by this run, as namespace/name.
  returned: state=drained
  type: list
  elements: str
  sample: ["shop/web-7d9-abcde", "shop/db-0"]
skipped_pods:
  description:
    - Pods left alone, with the reason (C(daemonset), C(mirror pod), C(completed)).
    - Named C(skipped_pods) because Ansible reserves C(skipped) in task results.
  returned: state=drained
  type: list
  elements: dict
  sample: [{"pod": "kube-system/kube-proxy-x2x", "reason": "daemonset"}]
refused:
  description: Pods that made the drain refuse, with the option that would allow them.
  returned: when the drain refused
  type: list
  elements: dict
  sample: [{"pod": "default/debug", "reason": "unmanaged"}]
blocked:
  description: Pods still on the node when the drain failed, with the reason and the blocking PodDisruptionBudget (namespace/name) if any.
  returned: when a drain failed after cordoning
  type: list
  elements: dict
  sample:
    - pod: shop/db-1
      reason: disruption budget
      pdb: shop/db
      message: Cannot evict pod as it would violate the pod's disruption budget.
pdbs:
  description: PodDisruptionBudgets covering blocked pods (on failure) or pods to evict (in check mode), with their status.
  returned: when a drain failed, and in check mode
  type: list
  elements: dict
  sample: [{"pdb": "shop/db", "disruptions_allowed": 0, "current_healthy": 2, "desired_healthy": 2, "expected_pods": 2}]
node_changes:
  description: The node fields this module manages, before and after (unschedulable, taints, its annotations).
  returned: when the node was read
  type: dict
  sample: {"before": {"unschedulable": false, "taints": [], "annotations": {}}, "after": {"unschedulable": true, "taints": [], "annotations": {}}}
retries:
  description:
    - Evictions refused (PodDisruptionBudget, rate limit, API error) and retried during the drain.
    - An eviction whose budget update conflicts with another write of the budget is retried by the API
      server itself (about every 500 ms); when the budget allows it by then, the module sees no refusal.
  returned: when a drain ran (not in check mode)
  type: int
  sample: 3
duration:
  description: Seconds the run took.
  returned: always
  type: float
  sample: 4.213
api_calls:
  description: Number of API requests the run made, by kind, and C(total).
  returned: always
  type: dict
  sample: {"get node": 1, "list pods": 3, "patch node": 1, "create eviction": 12, "total": 17}
"""

import time
from datetime import datetime, timezone

from ansible_collections.anvil.cluster.plugins.module_utils.drain import (
    DrainApi,
    DrainLoop,
    budgets_for,
    node_view,
    normalize_taints,
    pdb_summary,
    plan_node,
    plan_pods,
    refusal_message,
)
from ansible_collections.anvil.cluster.plugins.module_utils.k8s.client import ApiError
from ansible_collections.anvil.cluster.plugins.module_utils.k8s.module import KubeModule, ModuleFailure


def argument_spec():
    return dict(
        name=dict(type="str", required=True),
        state=dict(type="str", required=True, choices=["cordoned", "drained", "uncordoned"]),
        timeout=dict(type="int", default=300),
        grace_period=dict(type="int"),
        ignore_daemonsets=dict(type="bool", default=True),
        delete_emptydir_data=dict(type="bool", default=False),
        force=dict(type="bool", default=False),
        pod_selector=dict(type="str"),
        disable_eviction=dict(type="bool", default=False),
        taints=dict(
            type="list",
            elements="dict",
            options=dict(
                key=dict(type="str", required=True, no_log=False),
                value=dict(type="str"),
                effect=dict(type="str", default="NoSchedule", choices=["NoSchedule", "PreferNoSchedule", "NoExecute"]),
            ),
        ),
        reason=dict(type="str"),
        requested_by=dict(type="str"),
        uncordon_on_failure=dict(type="bool", default=False),
        concurrency=dict(type="int", default=10),
    )


class Maintenance(object):
    def __init__(self, module):
        self.module = module
        self.params = module.params
        self.started = time.monotonic()
        self.result = dict(changed=False, node=self.params["name"])
        self.api = None
        self.node_changed = False

    def report(self):
        """Fields every result has, also a failed one: duration and API requests by kind."""
        return dict(
            self.result,
            duration=round(time.monotonic() - self.started, 3),
            api_calls=self.api.client.report() if self.api else {"total": 0},
        )

    def validate(self):
        p = self.params
        errors = []
        if p["timeout"] < 0:
            errors.append("timeout must be 0 (no limit) or a positive number of seconds, got %d" % p["timeout"])
        if p["grace_period"] is not None and p["grace_period"] < 0:
            errors.append("grace_period must be 0 or more seconds, got %d" % p["grace_period"])
        if p["concurrency"] < 1:
            errors.append("concurrency must be at least 1, got %d" % p["concurrency"])
        if not p["name"] or "/" in p["name"]:
            errors.append("name must be a node name, got %r" % p["name"])
        self.taints, taint_errors = normalize_taints(p["taints"])
        errors.extend(taint_errors)
        if errors:
            raise ModuleFailure("Invalid options: " + "; ".join(errors))

    def connect(self):
        self.api = DrainApi(self.module.client(concurrency=self.params["concurrency"]))

    def parallel(self, func, items):
        """A bounded parallel map for DrainLoop (its calls capture their own errors)."""
        return [result for _item, result, _error in self.api.client.map(func, items)]

    @staticmethod
    def failure(msg):
        raise ModuleFailure(msg)

    def read_node(self):
        name = self.params["name"]
        try:
            return self.api.get_node(name)
        except ApiError as err:
            if err.status == 404:
                self.failure(
                    "Node %r not found: check the name (kubectl get nodes) or the node_name host variable." % name
                )
            if err.status == 0:
                self.failure("Cannot reach the Kubernetes API server to read node %s: %s" % (name, err.message))
            self.failure("Cannot read node %s: %s" % (name, err))

    def requested_by(self):
        if self.params["requested_by"]:
            return self.params["requested_by"]
        try:
            return self.api.whoami() or "unknown"
        except Exception:
            return "unknown"

    def converge_node(self, node, state):
        """Apply the node part of `state` (cordon/uncordon, taints, annotations); retry on 409 conflicts."""
        name = self.params["name"]
        who = None
        before = node_view(node)
        for _attempt in range(5):
            now = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
            patch, after = plan_node(
                node, state, taints=self.taints, reason=self.params["reason"], requested_by=who, now=now
            )
            if patch is not None and who is None and state != "uncordoned":
                who = self.requested_by()
                patch, after = plan_node(
                    node, state, taints=self.taints, reason=self.params["reason"], requested_by=who, now=now
                )
            self.result["node_changes"] = dict(before=before, after=after)
            self.result["unschedulable"] = after["unschedulable"]
            if self.module.want_diff:
                self.result["diff"] = dict(before=before, after=after)
            if patch is None:
                return node
            self.result["changed"] = True
            if self.module.check_mode:
                return node
            try:
                node = self.api.patch_node(name, patch)
                self.node_changed = True
                return node
            except ApiError as err:
                if err.status != 409:
                    self.failure("Cannot update node %s: %s" % (name, err))
                node = self.read_node()
        self.failure("Node %s kept changing while this module tried to update it (5 conflicts); retry." % name)

    def pdbs_for(self, pods):
        namespaces = sorted(set(p["metadata"]["namespace"] for p in pods))
        found = self.api.client.map(self.api.list_pdbs, namespaces)
        by_ns = dict((ns, pdbs if error is None else []) for ns, pdbs, error in found)
        seen = {}
        for pod in pods:
            for pdb in budgets_for(pod, by_ns.get(pod["metadata"]["namespace"], [])):
                summary = pdb_summary(pdb)
                seen[summary["pdb"]] = summary
        return by_ns, [seen[k] for k in sorted(seen)]

    def drain(self, node):
        p = self.params
        name = p["name"]
        deadline = self.started + p["timeout"] if p["timeout"] else None
        try:
            pods = self.api.list_node_pods(name, p["pod_selector"])
        except ApiError as err:
            if err.status == 400 and p["pod_selector"]:
                self.failure("pod_selector %r is not a valid label selector: %s" % (p["pod_selector"], err.message))
            self.failure("Cannot list the pods of node %s: %s" % (name, err))
        plan = plan_pods(pods, p["force"], p["ignore_daemonsets"], p["delete_emptydir_data"])
        self.result["plan"] = plan
        self.result["evicted"] = []
        self.result["skipped_pods"] = [dict(pod=e["pod"], reason=e["reason"]) for e in plan["skip"]]
        if plan["refuse"]:
            self.result["refused"] = [dict(pod=e["pod"], reason=e["reason"]) for e in plan["refuse"]]
            self.failure(refusal_message(name, plan["refuse"]))
        self.converge_node(node, "drained")
        if self.module.check_mode:
            to_evict = set(e["uid"] for e in plan["evict"])
            _by_ns, self.result["pdbs"] = self.pdbs_for([x for x in pods if x["metadata"]["uid"] in to_evict])
            self.result["changed"] = self.result["changed"] or bool(plan["evict"])
            return
        loop = DrainLoop(
            self.api,
            name,
            pods,
            label_selector=p["pod_selector"],
            grace_period=p["grace_period"],
            disable_eviction=p["disable_eviction"],
            force=p["force"],
            ignore_daemonsets=p["ignore_daemonsets"],
            delete_emptydir_data=p["delete_emptydir_data"],
            deadline=deadline,
            parallel=self.parallel,
        )
        try:
            loop.run()
        except Exception as err:
            loop.error = "API error while draining node %s: %s" % (name, err)
        self.result["evicted"] = sorted(loop.evicted)
        self.result["retries"] = loop.retries
        self.result["changed"] = self.result["changed"] or bool(loop.evicted)
        if loop.error or loop.timed_out or loop.late_refused:
            remaining = [t.pod for t in loop.remaining()]
            by_ns, self.result["pdbs"] = self.pdbs_for(remaining)
            self.result["blocked"] = loop.blocked(by_ns)
            if loop.error:
                msg = loop.error
            elif loop.timed_out:
                msg = "Drain of node %s timed out after %ss with %d pod(s) still on it: %s." % (
                    name,
                    p["timeout"],
                    len(self.result["blocked"]),
                    ", ".join(
                        "%s (%s%s)" % (b["pod"], b["reason"], ", PDB " + b["pdb"] if b["pdb"] else "")
                        for b in self.result["blocked"]
                    ),
                )
                if self.result["pdbs"]:
                    msg += " Blocking budgets: %s." % ", ".join(
                        "%s allows %d disruption(s), %d/%d healthy"
                        % (b["pdb"], b["disruptions_allowed"], b["current_healthy"], b["desired_healthy"])
                        for b in self.result["pdbs"]
                    )
                msg += " Wait for replacements to become ready and re-run, raise timeout, or fix the budget."
            else:
                msg = "Node %s drained except pods that appeared during the drain: %s" % (
                    name,
                    ", ".join("%s (%s)" % (b["pod"], b["reason"]) for b in self.result["blocked"]),
                )
            if p["uncordon_on_failure"]:
                self.converge_node(self.read_node(), "uncordoned")
                msg += " The node was uncordoned (uncordon_on_failure)."
            else:
                msg += " The node stays cordoned."
            self.failure(msg)

    def run(self):
        self.validate()
        self.connect()
        node = self.read_node()
        state = self.params["state"]
        if state == "drained":
            self.drain(node)
        else:
            self.converge_node(node, state)
        return {}


def main():
    module = KubeModule(argument_spec())
    maintenance = Maintenance(module)
    module.run(maintenance.run, always=maintenance.report)


if __name__ == "__main__":
    main()
