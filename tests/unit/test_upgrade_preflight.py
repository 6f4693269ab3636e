"""The upgrade preflight (module_utils/upgrade, filter upgrade_preflight): each refusal is named, the plan is right."""

from __future__ import annotations

import copy

import pytest
from ansible_collections.anvil.cluster.plugins.filter.upgrade import FilterModule
from ansible_collections.anvil.cluster.plugins.module_utils.upgrade import parse, plan_lines, preflight

HELD = ["v1.36.1", "v1.35.4", "v1.34.12"]


def node(name, kubelet, ready="True", control_plane=False):
    labels = {"kubernetes.io/hostname": name}
    if control_plane:
        labels["node-role.kubernetes.io/control-plane"] = ""
    conditions = [{"type": "MemoryPressure", "status": "False"}]
    if ready is not None:
        conditions.append({"type": "Ready", "status": ready})
    return {
        "metadata": {"name": name, "labels": labels},
        "status": {"conditions": conditions, "nodeInfo": {"kubeletVersion": kubelet}},
    }


def cluster(version="v1.34.12"):
    return [node("w2", version), node("cp1", version, control_plane=True), node("w1", version)]


def test_the_next_minor_is_planned_control_planes_first():
    result = preflight("v1.35.4", HELD, "v1.34.12", cluster())
    assert result["problems"] == []
    assert result["kind"] == "minor"
    assert [(s["node"], s["role"], s["from"], s["to"]) for s in result["plan"]] == [
        ("cp1", "control_plane", "v1.34.12", "v1.35.4"),
        ("w1", "worker", "v1.34.12", "v1.35.4"),
        ("w2", "worker", "v1.34.12", "v1.35.4"),
    ]
    assert plan_lines(result) == [
        "cluster: v1.34.12 -> v1.35.4 (minor)",
        "cp1 (control plane): v1.34.12 -> v1.35.4",
        "w1 (worker): v1.34.12 -> v1.35.4",
        "w2 (worker): v1.34.12 -> v1.35.4",
    ]


def test_a_patch_of_the_current_minor_is_planned():
    result = preflight("v1.34.13", ["v1.34.13", "v1.34.12"], "v1.34.12", cluster())
    assert result["problems"] == [] and result["kind"] == "patch" and len(result["plan"]) == 3


def test_a_cluster_already_at_the_target_has_nothing_to_do():
    result = preflight("v1.34.12", HELD, "v1.34.12", cluster())
    assert result["problems"] == [] and result["kind"] == "none" and result["plan"] == []
    assert plan_lines(result)[-1] == "every node already runs v1.34.12: nothing to upgrade"


def test_an_interrupted_upgrade_plans_only_the_nodes_left():
    nodes = [node("cp1", "v1.35.4", control_plane=True), node("w1", "v1.35.4"), node("w2", "v1.34.12")]
    result = preflight("v1.35.4", HELD, "v1.35.4", nodes)
    assert result["problems"] == []
    assert result["kind"] == "minor"
    assert [s["node"] for s in result["plan"]] == ["w2"]


@pytest.mark.parametrize(
    ("target", "server", "nodes", "expected"),
    [
        pytest.param(
            "v1.36.1",
            "v1.34.12",
            cluster(),
            "the target v1.36.1 skips minor 1.35 (the cluster runs v1.34.12): upgrade one minor at a time, to a 1.35 "
            "release first",
            id="skip a minor",
        ),
        pytest.param(
            "v1.34.12",
            "v1.35.4",
            cluster("v1.35.4"),
            "the cluster runs v1.35.4, newer than the target v1.34.12: downgrades are refused",
            id="downgrade",
        ),
        pytest.param(
            "v1.35.4",
            "v1.35.4",
            [*cluster("v1.35.4"), node("w9", "v1.36.1")],
            "node w9 runs kubelet v1.36.1, newer than the target v1.35.4: downgrades are refused",
            id="a node newer than the target",
        ),
        pytest.param(
            "v1.34.0",
            "v1.34.12",
            cluster(),
            "Kubernetes v1.34.0 is not a release of the versions manifest (vars/versions.yml holds v1.36.1, v1.35.4, "
            "v1.34.12)",
            id="a release the manifest does not hold",
        ),
        pytest.param(
            "v1.35.4",
            "v1.34.12",
            [*cluster(), node("w3", "v1.34.12", ready="False")],
            "node w3 is NotReady: repair it (or remove it with remove_node.yml) before an upgrade",
            id="a NotReady node",
        ),
        pytest.param(
            "v1.35.4",
            "v1.34.12",
            [*cluster(), node("w3", "v1.34.12", ready=None)],
            "node w3 is NotReady",
            id="a node without a Ready condition",
        ),
        pytest.param(
            "v1.36.1",
            "v1.35.4",
            [*cluster("v1.35.4"), node("w3", "v1.34.12")],
            "node w3 runs kubelet v1.34.12: the target v1.36.1 would skip a minor on it",
            id="a kubelet that would skip a minor",
        ),
        pytest.param(
            "latest", "v1.34.12", cluster(), "the target 'latest' is not a Kubernetes release", id="no version"
        ),
        pytest.param("v1.35.4", "v1.34.12-rc.0", cluster(), "the API server reports version", id="odd server version"),
        pytest.param("v2.0.0", "v1.34.12", cluster(), "upgrades stay within a major version", id="another major"),
    ],
)
def test_each_refusal_is_named(target, server, nodes, expected):
    held = [*HELD, "v2.0.0"] if target == "v2.0.0" else HELD
    result = preflight(target, held, server, nodes)
    assert any(expected in p for p in result["problems"]), result["problems"]


def test_every_problem_is_gathered_at_once():
    nodes = [*cluster(), node("w3", "v1.34.12", ready="False"), node("w4", "v1.36.1"), node("w5", "v1.33.2")]
    problems = preflight("v1.35.4", HELD, "v1.34.12", nodes)["problems"]
    assert [p.split(":")[0] for p in problems] == [
        "node w3 is NotReady",
        "node w4 runs kubelet v1.36.1, newer than the target v1.35.4",
        "node w5 runs kubelet v1.33.2",
    ]
    # A downgrade of the cluster is named once, not once more for every node.
    problems = preflight("v1.34.12", HELD, "v1.35.4", [*cluster("v1.35.4"), node("w3", "v1.35.4", ready="False")])[
        "problems"
    ]
    assert [p.split(":")[0] for p in problems] == [
        "the cluster runs v1.35.4, newer than the target v1.34.12",
        "node w3 is NotReady",
    ]


def test_input_is_not_modified_and_the_filter_is_the_same_judgement():
    nodes = cluster()
    before = copy.deepcopy(nodes)
    result = FilterModule().filters()["upgrade_preflight"]("v1.35.4", HELD, "v1.34.12", nodes)
    assert nodes == before
    assert result == preflight("v1.35.4", HELD, "v1.34.12", before)
    assert FilterModule().filters()["upgrade_plan_lines"](result)[0] == "cluster: v1.34.12 -> v1.35.4 (minor)"


def test_versions_are_releases_only():
    assert parse("v1.35.4") == (1, 35, 4)
    assert parse("1.35.4") is None and parse("v1.35.4-rc.1") is None and parse(None) is None
