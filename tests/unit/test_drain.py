"""Unit tests of node maintenance logic: pod classification, node patches, the eviction loop."""

from __future__ import annotations

import json

import pytest
from ansible_collections.anvil.cluster.plugins.module_utils import drain
from ansible_collections.anvil.cluster.plugins.module_utils.drain import (
    ANN_BY,
    ANN_REASON,
    ANN_SINCE,
    ANN_TAINTS,
    DrainLoop,
    blocking_pdb_from_error,
    classify_pod,
    normalize_taints,
    plan_node,
    plan_pods,
    refusal_message,
    selector_matches,
)
from ansible_collections.anvil.cluster.plugins.module_utils.k8s.client import ApiError


def pod(name, *, ns="app", uid=None, owner="ReplicaSet", phase="Running", volumes=None, labels=None, **meta):
    refs = [{"kind": owner, "name": name.rsplit("-", 1)[0], "controller": True}] if owner else []
    metadata = {"name": name, "namespace": ns, "uid": uid or "uid-" + name, "ownerReferences": refs}
    metadata["labels"] = labels or {}
    metadata.update(meta)
    return {"metadata": metadata, "spec": {"volumes": volumes or []}, "status": {"phase": phase}}


def node(unschedulable=False, taints=None, annotations=None):
    return {
        "metadata": {"name": "n1", "resourceVersion": "7", "annotations": annotations or {}},
        "spec": {"unschedulable": unschedulable, "taints": taints or []},
    }


# --- classification -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("p", "kwargs", "expected"),
    [
        (pod("web-1"), {}, ("evict", "ReplicaSet/web")),
        (pod("db-0", owner="StatefulSet"), {}, ("evict", "StatefulSet/db")),
        (pod("ds-1", owner="DaemonSet"), {}, ("skip", "daemonset")),
        (pod("ds-1", owner="DaemonSet"), {"ignore_daemonsets": False}, ("refuse", "daemonset")),
        (pod("job-1", owner="Job", phase="Succeeded"), {}, ("skip", "completed")),
        (pod("bare", owner=None), {}, ("refuse", "unmanaged")),
        (pod("bare", owner=None), {"force": True}, ("evict", "unmanaged")),
        (pod("cache-1", volumes=[{"name": "c", "emptyDir": {}}]), {}, ("refuse", "emptydir")),
        (
            pod("cache-1", volumes=[{"name": "c", "emptyDir": {}}]),
            {"delete_emptydir_data": True},
            ("evict", "ReplicaSet/cache"),
        ),
        (pod("bare", owner=None, volumes=[{"name": "c", "emptyDir": {}}]), {}, ("refuse", "unmanaged,emptydir")),
        (pod("static", owner=None, annotations={drain.MIRROR_ANNOTATION: "x"}), {}, ("skip", "mirror pod")),
        (pod("going-1", deletionTimestamp="2026-01-01T00:00:00Z"), {}, ("wait", "terminating")),
    ],
)
def test_classify_pod(p, kwargs, expected):
    assert classify_pod(p, **kwargs) == expected


def test_owner_reference_without_controller_flag_is_unmanaged():
    p = pod("x", owner=None)
    p["metadata"]["ownerReferences"] = [{"kind": "ReplicaSet", "name": "rs", "controller": False}]
    assert classify_pod(p) == ("refuse", "unmanaged")


def test_plan_lists_every_offender_and_message_names_the_options():
    pods = [pod("web-1"), pod("bare", owner=None), pod("cache-1", volumes=[{"name": "c", "emptyDir": {}}])]
    plan = plan_pods(pods)
    assert [e["pod"] for e in plan["evict"]] == ["app/web-1"]
    assert [e["pod"] for e in plan["refuse"]] == ["app/bare", "app/cache-1"]
    msg = refusal_message("n1", plan["refuse"])
    assert "app/bare" in msg and "force=true" in msg
    assert "app/cache-1" in msg and "delete_emptydir_data=true" in msg
    assert "2 pod(s)" in msg


# --- node patches -------------------------------------------------------------------------------


def test_cordon_records_who_when_and_reason_then_is_idempotent():
    n = node()
    patch, after = plan_node(n, "cordoned", taints=[], reason="kernel", requested_by="alice", now="T1")
    assert patch["spec"] == {"unschedulable": True}
    assert patch["metadata"]["resourceVersion"] == "7"
    assert patch["metadata"]["annotations"] == {ANN_REASON: "kernel", ANN_BY: "alice", ANN_SINCE: "T1"}
    applied = node(True, annotations=after["annotations"])
    assert plan_node(applied, "drained", taints=[], reason="kernel", requested_by="bob", now="T2")[0] is None
    assert plan_node(applied, "cordoned", taints=[], reason=None, requested_by="bob", now="T2")[0] is None
    # a new reason is recorded with who asked for it; "since" is kept
    patch, _summary = plan_node(applied, "cordoned", taints=[], reason="disk", requested_by="bob", now="T2")
    assert patch["metadata"]["annotations"] == {ANN_REASON: "disk", ANN_BY: "bob"}
    assert "spec" not in patch


def test_taints_added_recorded_and_only_ours_removed_on_uncordon():
    foreign = {"key": "gpu", "effect": "NoSchedule"}
    ours = {"key": "maint", "value": "disk", "effect": "NoExecute"}
    n = node(taints=[foreign], annotations={"other": "keep"})
    patch, after = plan_node(n, "cordoned", taints=[ours, foreign], reason=None, requested_by="alice", now="T1")
    assert patch["spec"]["taints"] == [foreign, ours]
    assert json.loads(after["annotations"][ANN_TAINTS]) == [ours]  # the pre-existing taint is not "ours"
    applied = node(True, taints=[foreign, ours], annotations=dict(after["annotations"], other="keep"))
    assert plan_node(applied, "cordoned", taints=[ours, foreign], reason=None, requested_by="x", now="T2")[0] is None
    patch, after = plan_node(applied, "uncordoned", taints=[], reason=None, requested_by=None, now="T3")
    assert patch["spec"] == {"unschedulable": None, "taints": [foreign]}
    assert patch["metadata"]["annotations"] == {ANN_BY: None, ANN_SINCE: None, ANN_TAINTS: None}
    assert "other" not in patch["metadata"]["annotations"]


def test_dropped_taint_is_removed_and_changed_value_replaced():
    a = {"key": "a", "effect": "NoSchedule"}
    b = {"key": "b", "value": "1", "effect": "NoSchedule"}
    n = node(True, taints=[a, b], annotations={ANN_SINCE: "T", ANN_TAINTS: json.dumps([a, b])})
    b2 = dict(b, value="2")
    patch, after = plan_node(n, "cordoned", taints=[b2], reason=None, requested_by="x", now="T2")
    assert patch["spec"]["taints"] == [b2]
    assert json.loads(after["annotations"][ANN_TAINTS]) == [b2]


def test_uncordon_of_untouched_node_is_a_no_op_and_keeps_foreign_cordon_data():
    assert plan_node(node(), "uncordoned", taints=[], reason=None, requested_by=None, now="T")[0] is None
    n = node(True, taints=[{"key": "node.kubernetes.io/unschedulable", "effect": "NoSchedule"}])
    patch, _summary = plan_node(n, "uncordoned", taints=[], reason=None, requested_by=None, now="T")
    assert patch["spec"] == {"unschedulable": None}  # the controller removes its own taint


def test_normalize_taints_reports_every_error():
    taints, errors = normalize_taints([{"key": "a"}, {"value": "x"}, {"key": "b", "effect": "Bogus"}])
    assert taints == [{"key": "a", "effect": "NoSchedule"}]
    assert len(errors) == 2 and "taints[1]" in errors[0] and "taints[2]" in errors[1]


# --- selectors and budgets ----------------------------------------------------------------------


def test_selector_matches():
    labels = {"app": "web", "tier": "front"}
    assert selector_matches({"matchLabels": {"app": "web"}}, labels)
    assert not selector_matches({"matchLabels": {"app": "db"}}, labels)
    assert selector_matches({"matchExpressions": [{"key": "tier", "operator": "In", "values": ["front"]}]}, labels)
    assert not selector_matches(
        {"matchExpressions": [{"key": "tier", "operator": "NotIn", "values": ["front"]}]}, labels
    )
    assert selector_matches({"matchExpressions": [{"key": "x", "operator": "DoesNotExist"}]}, labels)
    assert not selector_matches({"matchExpressions": [{"key": "x", "operator": "Exists"}]}, labels)
    assert selector_matches({}, labels)  # empty selector selects everything
    assert not selector_matches(None, labels)


def test_blocking_pdb_named_from_eviction_refusal():
    err = ApiError(
        429,
        "TooManyRequests",
        "Cannot evict pod as it would violate the pod's disruption budget.",
        {
            "causes": [
                {
                    "reason": "DisruptionBudget",
                    "message": "The disruption budget web-pdb needs 2 healthy pods and has 2 currently",
                }
            ]
        },
    )
    assert blocking_pdb_from_error(err, "shop") == "shop/web-pdb"
    assert blocking_pdb_from_error(ApiError(429, "TooManyRequests", "slow down"), "shop") is None


# --- eviction loop ------------------------------------------------------------------------------


class FakeClock:
    def __init__(self):
        self.now = 1000.0
        self.sleeps = []

    def __call__(self):
        return self.now

    def sleep(self, seconds):
        assert seconds > 0
        self.sleeps.append(seconds)
        self.now += seconds


class FakeApi:
    """Pods on one node; evictions succeed unless a budget refuses; accepted pods vanish after `lag` lists."""

    def __init__(self, pods, clock, refuse_until=None, lag=1, errors=None):
        self.pods = {p["metadata"]["uid"]: p for p in pods}
        self.clock = clock
        self.refuse_until = refuse_until or {}  # uid -> time until which evictions get 429
        self.lag = lag
        self.errors = errors or {}  # uid -> ApiError raised on eviction
        self.accepted = {}  # uid -> lists left before the pod is gone
        self.calls = []
        self.lists = 0
        self.replacements = {}  # uid -> pod that appears when it is gone

    def evict(self, namespace, name, uid, grace_period):
        self.calls.append(("evict", f"{namespace}/{name}", uid, grace_period))
        if uid in self.errors:
            raise self.errors[uid]
        if uid not in self.pods:
            raise ApiError(404, "NotFound", "pods not found")
        if self.clock() < self.refuse_until.get(uid, 0):
            raise ApiError(
                429,
                "TooManyRequests",
                "Cannot evict pod as it would violate the pod's disruption budget.",
                {
                    "causes": [
                        {"reason": "DisruptionBudget", "message": "The disruption budget pdb-a needs 1 healthy pods"}
                    ]
                },
            )
        self.accepted.setdefault(uid, self.lag)

    def delete(self, namespace, name, uid, grace_period):
        self.calls.append(("delete", f"{namespace}/{name}", uid, grace_period))
        self.accepted.setdefault(uid, self.lag)

    def list_node_pods(self, node, label_selector=None):
        self.lists += 1
        for uid in list(self.accepted):
            self.accepted[uid] -= 1
            if self.accepted[uid] < 0:
                del self.accepted[uid]
                self.pods.pop(uid, None)
                if uid in self.replacements:
                    new = self.replacements.pop(uid)
                    self.pods[new["metadata"]["uid"]] = new
        return list(self.pods.values())


def make_loop(api, clock, pods, timeout=60, **kwargs):
    return DrainLoop(api, "n1", pods, deadline=clock() + timeout, clock=clock, sleep=clock.sleep, **kwargs)


def test_all_pods_evicted_in_one_parallel_round_and_waited_for():
    clock = FakeClock()
    pods = [pod(f"web-{i}") for i in range(5)] + [pod("ds-1", owner="DaemonSet")]
    api = FakeApi(pods, clock, lag=2)
    batches = []

    def parallel(func, items):
        batches.append(len(items))
        return [func(i) for i in items]

    loop = make_loop(api, clock, pods, parallel=parallel, grace_period=0).run()
    assert not loop.timed_out and loop.error is None
    assert batches == [5]  # every evictable pod in one concurrent batch, DaemonSet pod untouched
    assert sorted(loop.evicted) == [f"app/web-{i}" for i in range(5)]
    assert all(c[3] == 0 for c in api.calls)  # grace period 0 is passed through, not dropped
    assert loop.remaining() == []
    assert api.lists == 3  # waited until the pods were really gone


def test_budget_refusal_is_retried_with_backoff_until_allowed():
    clock = FakeClock()
    pods = [pod("web-1"), pod("web-2")]
    api = FakeApi(pods, clock, refuse_until={"uid-web-2": clock.now + 4})
    loop = make_loop(api, clock, pods).run()
    assert not loop.timed_out
    assert sorted(loop.evicted) == ["app/web-1", "app/web-2"]
    attempts = [c for c in api.calls if c[1] == "app/web-2"]
    assert 3 <= len(attempts) <= 6  # 0.5, 1, 2 ... backoff, not a hot loop
    assert loop.retries == len(attempts) - 1
    assert max(clock.sleeps) <= drain.BACKOFF_MAX


def test_budget_that_never_allows_times_out_with_blocker_named():
    clock = FakeClock()
    pods = [pod("web-1"), pod("web-2")]
    api = FakeApi(pods, clock, refuse_until={"uid-web-2": float("inf")})
    loop = make_loop(api, clock, pods, timeout=30).run()
    assert loop.timed_out
    assert clock.now == pytest.approx(1030.0)  # stops at the deadline, not later
    assert loop.evicted == ["app/web-1"]
    blocked = loop.blocked()
    assert blocked == [
        {
            "pod": "app/web-2",
            "reason": "disruption budget",
            "pdb": "app/pdb-a",
            "message": "Cannot evict pod as it would violate the pod's disruption budget.",
        }
    ]


def test_blocked_names_budget_from_listing_when_error_did_not():
    clock = FakeClock()
    p = pod("web-1", labels={"app": "web"})
    api = FakeApi([p], clock, errors={"uid-web-1": ApiError(429, "TooManyRequests", "Too many requests")})
    loop = make_loop(api, clock, [p], timeout=5).run()
    assert loop.timed_out
    pdbs = {
        "app": [
            {"metadata": {"namespace": "app", "name": "web"}, "spec": {"selector": {"matchLabels": {"app": "web"}}}}
        ]
    }
    assert loop.blocked(pdbs)[0]["pdb"] == "app/web"
    assert loop.blocked(pdbs)[0]["reason"] == "rate limited"


def test_statefulset_pod_recreated_with_same_name_counts_as_gone():
    clock = FakeClock()
    old = pod("db-0", owner="StatefulSet", uid="old")
    api = FakeApi([old], clock)
    # the controller recreates db-0 (new UID) elsewhere: not on this node, so never listed here
    loop = make_loop(api, clock, [old]).run()
    assert loop.evicted == ["app/db-0"] and loop.remaining() == []


def test_replacement_pod_on_same_node_is_a_new_pod_and_uid_precondition_conflict_is_gone():
    clock = FakeClock()
    old = pod("db-0", owner="StatefulSet", uid="old")
    new = pod("db-0", owner="StatefulSet", uid="new")
    api = FakeApi([old], clock)
    api.replacements["old"] = new
    loop = make_loop(api, clock, [old]).run()
    assert [c[2] for c in api.calls] == ["old", "new"]  # evicted by UID, each incarnation once
    assert loop.remaining() == []


def test_conflict_on_uid_precondition_means_replaced():
    clock = FakeClock()
    p = pod("db-0", owner="StatefulSet")
    err = ApiError(409, "Conflict", "Precondition failed: UID in precondition: a, UID in object meta: b")
    api = FakeApi([p], clock, errors={"uid-db-0": err})
    api.pods.clear()
    loop = make_loop(api, clock, [p]).run()
    assert loop.evicted == [] and loop.remaining() == [] and loop.error is None


def test_forbidden_is_fatal_and_says_which_permission():
    clock = FakeClock()
    p = pod("web-1")
    api = FakeApi([p], clock, errors={"uid-web-1": ApiError(403, "Forbidden", "cannot create pods/eviction")})
    loop = make_loop(api, clock, [p]).run()
    assert "pods/eviction" in loop.error and not loop.timed_out


def test_server_errors_are_retried():
    clock = FakeClock()
    p = pod("web-1")
    api = FakeApi([p], clock)
    failures = [ApiError(503, "ServiceUnavailable", "etcd leader changed")]
    original = api.evict

    def flaky(*args):
        if failures:
            raise failures.pop()
        return original(*args)

    api.evict = flaky
    loop = make_loop(api, clock, [p]).run()
    assert loop.evicted == ["app/web-1"] and loop.remaining() == []


def test_terminating_pods_are_waited_for_not_evicted():
    clock = FakeClock()
    p = pod("web-1", deletionTimestamp="2026-01-01T00:00:00Z")
    api = FakeApi([p], clock)
    api.accepted["uid-web-1"] = 2
    loop = make_loop(api, clock, [p]).run()
    assert api.calls == [] and loop.evicted == [] and loop.remaining() == []


def test_pod_arriving_during_drain_is_evicted_and_unmanaged_one_is_reported():
    clock = FakeClock()
    first = pod("web-1")
    api = FakeApi([first], clock)
    late = pod("web-2")
    bare = pod("bare", owner=None)
    api.pods[late["metadata"]["uid"]] = late
    api.pods[bare["metadata"]["uid"]] = bare
    loop = make_loop(api, clock, [first], timeout=10).run()
    assert sorted(loop.evicted) == ["app/web-1", "app/web-2"]
    assert loop.remaining() == []
    assert [b["pod"] for b in loop.blocked()] == ["app/bare"]
    assert "force=true" in loop.blocked()[0]["reason"]


def test_disable_eviction_deletes():
    clock = FakeClock()
    p = pod("web-1")
    api = FakeApi([p], clock)
    loop = make_loop(api, clock, [p], disable_eviction=True, grace_period=5).run()
    assert api.calls == [("delete", "app/web-1", "uid-web-1", 5)]
    assert loop.evicted == ["app/web-1"]


def test_completed_pod_while_waiting_is_done():
    clock = FakeClock()
    p = pod("job-1", owner="Job")
    api = FakeApi([p], clock, refuse_until={"uid-job-1": float("inf")})
    api.pods["uid-job-1"] = dict(p, status={"phase": "Succeeded"})
    loop = make_loop(api, clock, [p], timeout=10).run()
    assert not loop.timed_out and loop.remaining() == []


def test_no_deadline_means_wait_without_limit():
    clock = FakeClock()
    p = pod("web-1")
    api = FakeApi([p], clock, refuse_until={"uid-web-1": clock.now + 3600})
    loop = DrainLoop(api, "n1", [p], deadline=None, clock=clock, sleep=clock.sleep).run()
    assert not loop.timed_out and loop.evicted == ["app/web-1"] and clock.now >= 4600


def test_transient_list_errors_do_not_abort_the_drain():
    clock = FakeClock()
    p = pod("web-1")
    api = FakeApi([p], clock)
    failures = [ApiError(503, "ServiceUnavailable", "etcd"), ConnectionError("reset")]
    original = api.list_node_pods

    def flaky(*args):
        if failures:
            raise failures.pop()
        return original(*args)

    api.list_node_pods = flaky
    loop = make_loop(api, clock, [p]).run()
    assert loop.list_errors == 2 and loop.remaining() == [] and loop.evicted == ["app/web-1"]


def test_client_error_while_listing_is_raised():
    clock = FakeClock()
    p = pod("web-1")
    api = FakeApi([p], clock)

    def forbidden(*args):
        raise ApiError(403, "Forbidden", "cannot list pods")

    api.list_node_pods = forbidden
    with pytest.raises(ApiError):
        make_loop(api, clock, [p]).run()
