"""Acceptance of the local API server: Ready kwok nodes, Deployments run, drain evicts, PDBs block (429),
and the kwok conventions other integration tests rely on (never-ready pods, Jobs complete, RBAC users,
quota enforcement, namespace deletion)."""

from __future__ import annotations

import json
import shutil
import uuid
from pathlib import Path

import pytest
from kubernetes import client as k8s
from kubernetes.client.rest import ApiException

from tests.helpers.wait import wait_until
from tools import kube_api as kapi


def _deployment(
    name: str, replicas: int, labels: dict, *, node_selector=None, tolerations=None, image="registry.local/app:1"
):
    return k8s.V1Deployment(
        metadata=k8s.V1ObjectMeta(name=name, labels=labels),
        spec=k8s.V1DeploymentSpec(
            replicas=replicas,
            selector=k8s.V1LabelSelector(match_labels=labels),
            template=k8s.V1PodTemplateSpec(
                metadata=k8s.V1ObjectMeta(labels=labels),
                spec=k8s.V1PodSpec(
                    containers=[k8s.V1Container(name="app", image=image)],
                    node_selector=node_selector,
                    tolerations=tolerations,
                ),
            ),
        ),
    )


def _pods(core, namespace: str, selector: str):
    return core.list_namespaced_pod(namespace, label_selector=selector).items


def _running_ready(pod) -> bool:
    if pod.status.phase != "Running" or pod.metadata.deletion_timestamp:
        return False
    return any(c.type == "Ready" and c.status == "True" for c in pod.status.conditions or [])


def _ready_condition(pod):
    return next((c.status for c in pod.status.conditions or [] if c.type == "Ready"), None)


def test_nodes_ready(kube_api):
    out = kube_api.kubectl("get", "nodes", "-l", "anvil.test/kwok-pool=default", "-o", "json").stdout
    nodes = json.loads(out)["items"]
    ready = [
        n["metadata"]["name"]
        for n in nodes
        if any(c["type"] == "Ready" and c["status"] == "True" for c in n["status"].get("conditions", []))
    ]
    assert len(ready) >= 3
    assert sorted(ready) == sorted(kube_api.nodes)
    for n in nodes:
        assert not n["spec"].get("taints"), "kwok nodes must be untainted so ordinary manifests schedule"


def test_deployment_reaches_three_running_pods(kube_api, namespace):
    api = kube_api.api_client()
    apps, core = k8s.AppsV1Api(api), k8s.CoreV1Api(api)
    labels = {"app": "web"}
    apps.create_namespaced_deployment(namespace, _deployment("web", 3, labels))

    def three_running():
        pods = _pods(core, namespace, "app=web")
        return len(pods) == 3 and all(_running_ready(p) for p in pods)

    wait_until(three_running, 60, "3 Running+Ready pods of Deployment web")
    wait_until(
        lambda: apps.read_namespaced_deployment(namespace=namespace, name="web").status.ready_replicas == 3,
        30,
        "readyReplicas=3",
    )
    assert all(p.spec.node_name in kube_api.nodes for p in _pods(core, namespace, "app=web"))


@pytest.fixture
def dedicated_nodes(kube_api):
    """Two kwok nodes only this test's pods can use (a unique taint), removed afterwards."""
    suffix = uuid.uuid4().hex[:6]
    names = [f"kwok-drain-{suffix}-a", f"kwok-drain-{suffix}-b"]
    key = f"anvil.test/drain-{suffix}"
    taint = {"key": key, "value": "true", "effect": "NoSchedule"}
    kube_api.add_nodes(names, labels={key: "true"}, taints=[taint])
    yield names, key
    kube_api.delete_nodes(names)


def test_drain_evicts_and_pdb_blocks_with_429(kube_api, namespace, dedicated_nodes):
    names, key = dedicated_nodes
    api = kube_api.api_client()
    apps, core, policy = k8s.AppsV1Api(api), k8s.CoreV1Api(api), k8s.PolicyV1Api(api)
    labels = {"app": "drained"}
    toleration = [k8s.V1Toleration(key=key, operator="Equal", value="true", effect="NoSchedule")]
    # Only node a is eligible at first: all 3 pods land there.
    kube_api.kubectl("cordon", names[1])
    apps.create_namespaced_deployment(
        namespace, _deployment("drained", 3, labels, node_selector={key: "true"}, tolerations=toleration)
    )

    def all_on(node):
        pods = _pods(core, namespace, "app=drained")
        return len(pods) == 3 and all(_running_ready(p) and p.spec.node_name == node for p in pods)

    wait_until(lambda: all_on(names[0]), 60, f"3 pods Running on {names[0]}")
    before = {p.metadata.uid for p in _pods(core, namespace, "app=drained")}

    kube_api.kubectl("uncordon", names[1])
    drain = kube_api.kubectl("drain", names[0], "--ignore-daemonsets", "--delete-emptydir-data", "--timeout=90s")
    assert "evicting pod" in drain.stdout + drain.stderr
    assert core.read_node(names[0]).spec.unschedulable is True
    # The evicted pods are gone and the Deployment runs 3 new pods on the other node.
    wait_until(lambda: all_on(names[1]), 60, f"3 replacement pods Running on {names[1]}")
    after = {p.metadata.uid for p in _pods(core, namespace, "app=drained")}
    assert not before & after

    # A PDB that allows no disruption makes the Eviction API answer 429 Too Many Requests.
    pdb = k8s.V1PodDisruptionBudget(
        metadata=k8s.V1ObjectMeta(name="drained"),
        spec=k8s.V1PodDisruptionBudgetSpec(min_available=3, selector=k8s.V1LabelSelector(match_labels=labels)),
    )
    policy.create_namespaced_pod_disruption_budget(namespace, pdb)

    def pdb_observed():
        st = policy.read_namespaced_pod_disruption_budget("drained", namespace).status
        return st and st.observed_generation == 1 and st.expected_pods == 3 and st.disruptions_allowed == 0

    wait_until(pdb_observed, 30, "the disruption controller to evaluate the PDB")
    victim = _pods(core, namespace, "app=drained")[0].metadata.name
    eviction = k8s.V1Eviction(metadata=k8s.V1ObjectMeta(name=victim, namespace=namespace))
    with pytest.raises(ApiException) as err:
        core.create_namespaced_pod_eviction(victim, namespace, eviction)
    assert err.value.status == 429
    assert "disruption budget" in err.value.body
    # kubectl drain retries on 429 and gives up at its timeout; the pods stay.
    blocked = kube_api.kubectl("drain", names[1], "--ignore-daemonsets", "--timeout=5s", check=False)
    assert blocked.returncode != 0
    assert "disruption budget" in blocked.stdout + blocked.stderr
    assert {p.metadata.name for p in _pods(core, namespace, "app=drained") if _running_ready(p)} >= {victim}


def test_never_ready_conventions(kube_api, namespace):
    api = kube_api.api_client()
    core = k8s.CoreV1Api(api)

    def pod(name, image, labels=None):
        return k8s.V1Pod(
            metadata=k8s.V1ObjectMeta(name=name, labels=labels),
            spec=k8s.V1PodSpec(containers=[k8s.V1Container(name="c", image=image)]),
        )

    core.create_namespaced_pod(namespace, pod("by-image", "registry.local/app:never-ready"))
    core.create_namespaced_pod(namespace, pod("by-label", "registry.local/app:1", {"anvil.test/ready": "false"}))
    core.create_namespaced_pod(namespace, pod("normal", "registry.local/app:1"))
    wait_until(lambda: _running_ready(core.read_namespaced_pod("normal", namespace)), 60, "pod normal Ready")
    for name in ("by-image", "by-label"):

        def running(n=name):
            pod_now = core.read_namespaced_pod(n, namespace)
            return pod_now if pod_now.status.phase == "Running" else None

        p = wait_until(running, 60, f"pod {name} Running")
        assert _ready_condition(p) == "False"
        assert p.status.container_statuses[0].ready is False
        assert p.status.container_statuses[0].state.running is not None


def test_job_completes_and_daemonset_runs(kube_api, namespace):
    api = kube_api.api_client()
    batch, apps, core = k8s.BatchV1Api(api), k8s.AppsV1Api(api), k8s.CoreV1Api(api)
    job = k8s.V1Job(
        metadata=k8s.V1ObjectMeta(name="once"),
        spec=k8s.V1JobSpec(
            completions=2,
            template=k8s.V1PodTemplateSpec(
                spec=k8s.V1PodSpec(
                    restart_policy="Never", containers=[k8s.V1Container(name="c", image="registry.local/job:1")]
                )
            ),
        ),
    )
    batch.create_namespaced_job(namespace, job)
    wait_until(
        lambda: (batch.read_namespaced_job("once", namespace).status.succeeded or 0) == 2, 60, "Job once succeeded x2"
    )
    conds = batch.read_namespaced_job("once", namespace).status.conditions or []
    assert any(c.type == "Complete" and c.status == "True" for c in conds)

    labels = {"app": "agent"}
    target = kube_api.nodes[:3]
    ds = k8s.V1DaemonSet(
        metadata=k8s.V1ObjectMeta(name="agent"),
        spec=k8s.V1DaemonSetSpec(
            selector=k8s.V1LabelSelector(match_labels=labels),
            template=k8s.V1PodTemplateSpec(
                metadata=k8s.V1ObjectMeta(labels=labels),
                spec=k8s.V1PodSpec(
                    containers=[k8s.V1Container(name="c", image="registry.local/agent:1")],
                    # Keep it to a few nodes: the shared instance may have 1000.
                    affinity=k8s.V1Affinity(
                        node_affinity=k8s.V1NodeAffinity(
                            required_during_scheduling_ignored_during_execution=k8s.V1NodeSelector(
                                node_selector_terms=[
                                    k8s.V1NodeSelectorTerm(
                                        match_expressions=[
                                            k8s.V1NodeSelectorRequirement(
                                                key="kubernetes.io/hostname", operator="In", values=target
                                            )
                                        ]
                                    )
                                ]
                            )
                        )
                    ),
                ),
            ),
        ),
    )
    apps.create_namespaced_daemon_set(namespace, ds)

    def on_each_node():
        pods = [p for p in _pods(core, namespace, "app=agent") if _running_ready(p)]
        return sorted(p.spec.node_name for p in pods) == sorted(target)

    wait_until(on_each_node, 60, f"one Ready agent pod on each of {target}")


def test_limited_user_rbac(kube_api, namespace):
    user = f"alice-{uuid.uuid4().hex[:6]}"
    kubeconfig = kube_api.user_kubeconfig(user, groups=["anvil-testers"])
    denied = kube_api.kubectl("-n", namespace, "get", "pods", kubeconfig=kubeconfig, check=False)
    assert denied.returncode != 0
    assert "forbidden" in denied.stderr.lower()
    assert user in denied.stderr

    rbac = k8s.RbacAuthorizationV1Api(kube_api.api_client())
    # A plain manifest: the model class of a subject is named differently across client releases.
    rbac.create_namespaced_role_binding(
        namespace,
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": {"name": "viewers"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "view"},
            "subjects": [{"kind": "Group", "name": "anvil-testers", "apiGroup": "rbac.authorization.k8s.io"}],
        },
    )
    wait_until(
        lambda: kube_api.kubectl("-n", namespace, "get", "pods", kubeconfig=kubeconfig, check=False).returncode == 0,
        30,
        "the group binding to take effect",
    )
    cannot = kube_api.kubectl("auth", "can-i", "create", "pods", "-n", namespace, kubeconfig=kubeconfig, check=False)
    assert cannot.stdout.strip() == "no"


def test_quota_and_limitrange_enforced(kube_api, namespace):
    core = k8s.CoreV1Api(kube_api.api_client())
    core.create_namespaced_limit_range(
        namespace,
        k8s.V1LimitRange(
            metadata=k8s.V1ObjectMeta(name="defaults"),
            spec=k8s.V1LimitRangeSpec(
                limits=[
                    k8s.V1LimitRangeItem(type="Container", default={"cpu": "200m"}, default_request={"cpu": "100m"})
                ]
            ),
        ),
    )
    core.create_namespaced_resource_quota(
        namespace,
        k8s.V1ResourceQuota(metadata=k8s.V1ObjectMeta(name="q"), spec=k8s.V1ResourceQuotaSpec(hard={"pods": "1"})),
    )
    wait_until(lambda: core.read_namespaced_resource_quota("q", namespace).status.hard, 30, "quota status")

    def pod(name):
        return k8s.V1Pod(
            metadata=k8s.V1ObjectMeta(name=name),
            spec=k8s.V1PodSpec(containers=[k8s.V1Container(name="c", image="x:1")]),
        )

    created = core.create_namespaced_pod(namespace, pod("first"))
    assert created.spec.containers[0].resources.requests == {"cpu": "100m"}
    assert created.spec.containers[0].resources.limits == {"cpu": "200m"}
    with pytest.raises(ApiException) as err:
        core.create_namespaced_pod(namespace, pod("second"))
    assert err.value.status == 403
    assert "exceeded quota" in err.value.body


def test_namespace_deletion_cascades(kube_api):
    core = k8s.CoreV1Api(kube_api.api_client())
    name = f"t-del-{uuid.uuid4().hex[:6]}"
    core.create_namespace(k8s.V1Namespace(metadata=k8s.V1ObjectMeta(name=name)))
    core.create_namespaced_config_map(name, k8s.V1ConfigMap(metadata=k8s.V1ObjectMeta(name="cm"), data={"a": "b"}))
    core.delete_namespace(name)

    def gone():
        try:
            core.read_namespace(name)
            return False
        except ApiException as e:
            return e.status == 404

    wait_until(gone, 60, f"namespace {name} deleted")


def _processes_mentioning(text: str) -> list[str]:
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if text in cmdline:
            found.append(f"{proc.name}: {cmdline[:120]}")
    return found


def _free_offset() -> int:
    """A port offset nobody uses right now (other sessions run their own benchmark instances)."""
    return next(
        o
        # Below 8900 every port stays under the kernel's range for outgoing connections (32768+).
        for o in range(1000 + uuid.uuid4().int % 97, 8900, 97)
        if not any(kapi.port_in_use(p) for p in kapi.Instance(port_offset=o).all_ports().values())
    )


def test_up_reuses_and_scales_a_private_instance():
    inst = kapi.Instance(name=f"scaletest-{uuid.uuid4().hex[:6]}", port_offset=_free_offset())
    try:
        first = kapi.up(inst, nodes=2)
        pids = {n: p["pid"] for n, p in first["processes"].items()}
        client = kapi.api_client(inst.admin_kubeconfig)

        def pool():
            return sorted(n["metadata"]["name"] for n in kapi.list_pool_nodes(client) if kapi.node_ready(n))

        assert pool() == ["kwok-node-0", "kwok-node-1"]
        again = kapi.up(inst, nodes=4)
        assert {n: p["pid"] for n, p in again["processes"].items()} == pids, "a healthy instance is reused"
        assert pool() == ["kwok-node-0", "kwok-node-1", "kwok-node-2", "kwok-node-3"]
        kapi.up(inst, nodes=1, allow_shrink=False)  # what the fixture does: never shrink a shared instance
        assert len(pool()) == 4
        kapi.up(inst, nodes=1)
        wait_until(
            lambda: (
                kapi.plan_node_scaling([n["metadata"]["name"] for n in kapi.list_pool_nodes(client)], 1) == ([], [])
            ),
            30,
            "the pool to shrink",
        )
        assert kapi.is_healthy(inst, patience=30)
    finally:
        kapi.down(inst)
        shutil.rmtree(inst.failed_logs_dir, ignore_errors=True)
    assert not inst.dir.exists()
    assert not _processes_mentioning(str(inst.dir))


def test_failed_start_cleans_up_everything(tmp_path):
    """kwok rejects a broken config file after etcd, apiserver, kcm and scheduler are up: `up` must fail,
    stop all of them and remove the instance directory (its logs are kept aside to say why)."""
    bad = tmp_path / "stages.yaml"
    bad.write_text("kind: Stage\n  : [\n")  # kwok cannot parse its config and exits
    inst = kapi.Instance(name=f"failtest-{uuid.uuid4().hex[:6]}", port_offset=_free_offset())
    try:
        with pytest.raises(kapi.KubeApiError, match="kwok exited"):
            kapi.up(inst, nodes=1, kwok_stages=bad, timeout=60)
        assert not inst.dir.exists()
        assert not _processes_mentioning(str(inst.dir))
        assert not any(kapi.port_in_use(p) for p in inst.all_ports().values())
        assert (inst.failed_logs_dir / "kwok.log").exists()
    finally:
        kapi.down(inst)
        shutil.rmtree(inst.failed_logs_dir, ignore_errors=True)
