"""anvil.cluster.app_release through Ansible against a real kube-apiserver + etcd + kwok.

kwok makes scheduled pods Running+Ready, except pods whose image contains `never-ready`: that is how a
failed upgrade is produced.
"""

from __future__ import annotations

import copy
import os
import shutil
import threading
from pathlib import Path

import yaml
from ansible_collections.anvil.cluster.plugins.module_utils import release_store as store
from kubernetes import client

from tests.helpers.ansible import run_playbook
from tests.helpers.wait import wait_until

MODULE = "anvil.cluster.app_release"


def configmap(name, data):
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": data}


def deployment(image, replicas=2, name="web"):
    labels = {"app": name}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": labels},
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}},
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "containers": [
                        {
                            "name": "app",
                            "image": image,
                            "resources": {"requests": {"cpu": "100m", "memory": "64Mi"}},
                        }
                    ]
                },
            },
        },
    }


def service(name="web"):
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name},
        "spec": {"selector": {"app": name}, "ports": [{"port": 80, "targetPort": 8080}]},
    }


V1 = [
    configmap("settings", {"mode": "one"}),
    configmap("extra", {"x": "1"}),
    deployment("example.test/web:1"),
    service(),
]
# v2 drops the ConfigMap "extra" (pruned), changes the image and the settings.
V2 = [configmap("settings", {"mode": "two"}), deployment("example.test/web:2"), service()]
# A revision that never becomes ready (kwok keeps its pods unready), and that also drops "extra".
BAD = [configmap("settings", {"mode": "bad"}), deployment("example.test/never-ready:3"), service()]


def release(kube_api, namespace, name="shop", *, check=False, diff=False, task="release", **params):
    args = {"name": name, "namespace": namespace, "timeout": 120}
    args.update(params)
    plays = [
        {
            "hosts": "localhost",
            "gather_facts": False,
            "module_defaults": {"group/anvil.cluster.k8s": {"kubeconfig": str(kube_api.kubeconfig)}},
            "tasks": [{"name": task, MODULE: args, "ignore_errors": True}],
        }
    ]
    return run_playbook(plays, check=check, diff=diff).result(task)


def core(kube_api):
    return client.CoreV1Api(kube_api.api_client())


def apps(kube_api):
    return client.AppsV1Api(kube_api.api_client())


def records(kube_api, namespace, name="shop"):
    api = core(kube_api)
    items = api.list_namespaced_secret(namespace, label_selector=store.selector(name)).items
    out = [store.from_secret(api.api_client.sanitize_for_serialization(s)) for s in items]
    return {r["revision"]: r for r in out}


def statuses(kube_api, namespace, name="shop"):
    return {rev: r["status"] for rev, r in records(kube_api, namespace, name).items()}


def configmaps(kube_api, namespace):
    return {c.metadata.name: c.data for c in core(kube_api).list_namespaced_config_map(namespace).items}


def image(kube_api, namespace, name="web"):
    return apps(kube_api).read_namespaced_deployment(name, namespace).spec.template.spec.containers[0].image


def names(refs):
    return sorted("%s/%s" % (r["kind"], r["name"]) for r in refs)


def test_install_upgrade_prune_and_idempotence(kube_api, namespace):
    first = release(kube_api, namespace, definitions=V1)
    assert not first.get("failed"), first.get("msg")
    assert first["changed"] and first["revision"] == 1 and first["status"] == "deployed"
    assert names(first["created"]) == ["ConfigMap/extra", "ConfigMap/settings", "Deployment/web", "Service/web"]
    # wait=true: the Deployment is rolled out when the task returns.
    dep = apps(kube_api).read_namespaced_deployment("web", namespace)
    assert dep.status.available_replicas == 2 and dep.status.updated_replicas == 2
    secret = core(kube_api).read_namespaced_secret(store.secret_name("shop", 1), namespace)
    assert secret.type == "anvil.cluster/release.v1"
    assert secret.metadata.labels == {"owner": "anvil.cluster", "name": "shop", "version": "1", "status": "deployed"}
    assert len(secret.data["release"]) < 8 * 1024  # compressed: a 4-object release is a few KiB at most
    assert records(kube_api, namespace)[1]["objects"][0]["kind"] == "ConfigMap"

    again = release(kube_api, namespace, definitions=V1)
    assert not again["changed"] and again["revision"] == 1
    assert names(again["unchanged"]) == names(first["created"]) and again["created"] == again["updated"] == []
    assert statuses(kube_api, namespace) == {1: "deployed"}

    upgrade = release(kube_api, namespace, definitions=V2, description="v2")
    assert not upgrade.get("failed"), upgrade.get("msg")
    assert upgrade["changed"] and upgrade["revision"] == 2
    assert names(upgrade["pruned"]) == ["ConfigMap/extra"]
    assert names(upgrade["updated"]) == ["ConfigMap/settings", "Deployment/web"]
    assert names(upgrade["unchanged"]) == ["Service/web"]
    assert "extra" not in configmaps(kube_api, namespace)
    assert image(kube_api, namespace) == "example.test/web:2"
    assert statuses(kube_api, namespace) == {1: "superseded", 2: "deployed"}
    assert records(kube_api, namespace)[2]["description"] == "v2"
    dep = apps(kube_api).read_namespaced_deployment("web", namespace)
    assert dep.status.updated_replicas == 2 and dep.status.available_replicas == 2 and dep.status.replicas == 2

    # The same input again, with quantities written differently: still no change, no revision.
    v2_same = copy.deepcopy(V2)
    v2_same[1]["spec"]["template"]["spec"]["containers"][0]["resources"]["requests"]["cpu"] = "0.1"
    rerun = release(kube_api, namespace, definitions=v2_same)
    assert not rerun.get("failed"), rerun.get("msg")
    assert not rerun["changed"] and rerun["revision"] == 2
    assert statuses(kube_api, namespace) == {1: "superseded", 2: "deployed"}


def test_check_mode_and_diff_write_nothing(kube_api, namespace):
    assert not release(kube_api, namespace, definitions=V1).get("failed")
    preview = release(kube_api, namespace, definitions=V2, check=True, diff=True)
    assert not preview.get("failed"), preview.get("msg")
    assert preview["changed"] and preview["revision"] == 1
    assert names(preview["pruned"]) == ["ConfigMap/extra"]
    assert names(preview["updated"]) == ["ConfigMap/settings", "Deployment/web"]
    headers = {d["after_header"] for d in preview["diff"]}
    assert any("ConfigMap %s/extra (deleted)" % namespace == h for h in headers)
    web = next(d for d in preview["diff"] if d["after_header"] == "Deployment %s/web" % namespace)
    assert "example.test/web:1" in web["before"] and "example.test/web:2" in web["after"]
    # Nothing changed in the cluster and no record was written.
    assert image(kube_api, namespace) == "example.test/web:1"
    assert "extra" in configmaps(kube_api, namespace)
    assert statuses(kube_api, namespace) == {1: "deployed"}

    # Check mode of a first install: server-side dry-run of every object, no record.
    fresh = release(kube_api, namespace, name="fresh", definitions=[configmap("fresh", {"a": "b"})], check=True)
    assert fresh["changed"] and names(fresh["created"]) == ["ConfigMap/fresh"]
    assert "fresh" not in configmaps(kube_api, namespace) and records(kube_api, namespace, "fresh") == {}


def test_secret_values_never_shown(kube_api, namespace):
    secret = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "db"},
        "stringData": {"password": "hunter2-s3cr3t"},
    }
    out = release(kube_api, namespace, name="creds", definitions=[secret], diff=True)
    assert not out.get("failed"), out.get("msg")
    assert "hunter2-s3cr3t" not in str(out) and "aHVudGVyMi1zM2NyM3Q" not in str(out)


def test_failed_upgrade_rolls_back_atomically(kube_api, namespace):
    assert not release(kube_api, namespace, definitions=V1).get("failed")
    bad = release(kube_api, namespace, definitions=BAD, timeout=15)
    assert bad.get("failed")
    assert "revision 2" in bad["msg"] and "timed out" in bad["msg"] and "rolled back to revision 1" in bad["msg"]
    assert bad["failed_revision"] == 2 and bad["rolled_back_to"] == 1
    history = records(kube_api, namespace)
    assert {r: h["status"] for r, h in history.items()} == {1: "superseded", 2: "failed", 3: "deployed"}
    assert history[3]["rollback_of"] == 1 and history[3]["digest"] == history[1]["digest"]
    assert "timed out" in history[2]["error"]
    # v1 is back: image, settings, and the ConfigMap the bad revision had pruned.
    assert image(kube_api, namespace) == "example.test/web:1"
    cms = configmaps(kube_api, namespace)
    assert cms["settings"] == {"mode": "one"} and "extra" in cms
    dep = apps(kube_api).read_namespaced_deployment("web", namespace)
    assert dep.status.available_replicas == 2
    # Re-running v1 now is a no-op (the rollback revision holds v1).
    assert not release(kube_api, namespace, definitions=V1)["changed"]


def test_failed_first_install_cleans_up(kube_api, namespace):
    out = release(kube_api, namespace, name="never", definitions=[deployment("x/never-ready:1", name="nr")], timeout=8)
    assert out.get("failed") and "deleted the 1 object" in out["msg"]
    assert apps(kube_api).list_namespaced_deployment(namespace).items == []
    assert statuses(kube_api, namespace, "never") == {1: "failed"}


def test_explicit_rollback_and_default_previous(kube_api, namespace):
    assert not release(kube_api, namespace, definitions=V1).get("failed")
    assert not release(kube_api, namespace, definitions=V2).get("failed")
    back = release(kube_api, namespace, state="rolled_back", revision=1)
    assert not back.get("failed"), back.get("msg")
    assert back["changed"] and back["revision"] == 3 and back["rolled_back_to"] == 1
    assert names(back["created"]) == ["ConfigMap/extra"]
    assert image(kube_api, namespace) == "example.test/web:1"
    assert statuses(kube_api, namespace) == {1: "superseded", 2: "superseded", 3: "deployed"}
    # Idempotent: the deployed revision already is revision 1's content.
    assert not release(kube_api, namespace, state="rolled_back", revision=1)["changed"]
    assert not release(kube_api, namespace, state="rolled_back")["changed"]
    # Check mode of a rollback to 2 shows the change and writes nothing.
    preview = release(kube_api, namespace, state="rolled_back", revision=2, check=True)
    assert preview["changed"] and names(preview["pruned"]) == ["ConfigMap/extra"]
    assert len(records(kube_api, namespace)) == 3
    missing = release(kube_api, namespace, state="rolled_back", revision=42)
    assert missing.get("failed") and "revision 42 not found" in missing["msg"]


def test_history_is_bounded_and_keeps_last_deployed(kube_api, namespace):
    for index in range(4):
        out = release(kube_api, namespace, definitions=[configmap("c", {"n": str(index)})], history_max=2, wait=False)
        assert not out.get("failed"), out.get("msg")
    assert statuses(kube_api, namespace) == {3: "superseded", 4: "deployed"}
    # Failed revisions count too, but the last deployed one survives any number of them.
    for _ in range(2):
        out = release(
            kube_api,
            namespace,
            definitions=[deployment("x/never-ready:1", replicas=1)],
            history_max=2,
            timeout=5,
            atomic=False,
        )
        assert out.get("failed")
    assert statuses(kube_api, namespace) == {4: "deployed", 6: "failed"}


def test_concurrent_run_is_refused_and_stale_lock_recovered(kube_api, namespace):
    assert not release(kube_api, namespace, definitions=V1).get("failed")
    outcome = {}
    slow = threading.Thread(target=lambda: outcome.update(r=release(kube_api, namespace, definitions=BAD, timeout=40)))
    slow.start()
    try:
        wait_until(lambda: statuses(kube_api, namespace).get(2) == "pending-upgrade", 60, "revision 2 pending-upgrade")
        assert statuses(kube_api, namespace).get(2) == "pending-upgrade"
        second = release(kube_api, namespace, definitions=V2)
        assert second.get("failed") and "is locked: revision 2 is pending-upgrade" in second["msg"]
        assert image(kube_api, namespace) != "example.test/web:2"
    finally:
        slow.join(timeout=300)
    assert outcome["r"].get("failed") and outcome["r"]["rolled_back_to"] == 1
    assert statuses(kube_api, namespace) == {1: "superseded", 2: "failed", 3: "deployed"}

    # A run that died left a pending record whose lock has expired: the next run recovers it.
    api = core(kube_api)
    dead_objects = copy.deepcopy(V2)
    for obj in dead_objects:
        obj["metadata"]["namespace"] = namespace
    dead = store.new_record(
        "shop",
        namespace,
        4,
        store.PENDING_UPGRADE,
        dead_objects,
        lock_expires="2020-01-01T00:00:00Z",
        lock_owner={"host": "gone", "pid": 1},
    )
    api.create_namespaced_secret(namespace, store.to_secret(dead))
    recovered = release(kube_api, namespace, definitions=V2)
    assert not recovered.get("failed"), recovered.get("msg")
    assert recovered["revision"] == 5 and any("revision 4" in w for w in recovered.get("warnings", []))
    assert statuses(kube_api, namespace)[4] == "failed"


def test_bad_input_fails_before_anything_is_applied(kube_api, namespace):
    other = configmap("elsewhere", {"a": "b"})
    other["metadata"]["namespace"] = "kube-system"
    broken = deployment("x/web:1")
    del broken["spec"]["selector"]  # rejected by the API server's validation (dry-run)
    out = release(kube_api, namespace, definitions=[configmap("fine", {"a": "b"}), other, broken])
    assert out.get("failed") and "allowed_namespaces" in out["msg"]
    out = release(kube_api, namespace, definitions=[configmap("fine", {"a": "b"}), broken])
    assert out.get("failed") and "nothing was applied" in out["msg"] and "Deployment %s/web" % namespace in out["msg"]
    out = release(kube_api, namespace, definitions=["kind: [unclosed"])
    assert out.get("failed") and "not valid YAML" in out["msg"]
    out = release(kube_api, namespace, chart="/nonexistent/chart")
    assert out.get("failed") and "does not exist" in out["msg"]
    assert "fine" not in configmaps(kube_api, namespace)
    assert records(kube_api, namespace) == {}


def test_namespace_admin_user_and_rbac_checked_before_apply(kube_api, namespace):
    """A user who is admin of the release namespace only: can run releases there; an object in a namespace
    the user may not write is refused by the dry-run, before anything is applied."""
    user_name = "release-user-%s" % namespace[-6:]
    user = kube_api.user_kubeconfig(user_name)
    client.RbacAuthorizationV1Api(kube_api.api_client()).create_namespaced_role_binding(
        namespace,
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": {"name": "release-admin"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "admin"},
            "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": user_name}],
        },
    )
    outside = configmap("outside-%s" % namespace[-6:], {"a": "b"})
    outside["metadata"]["namespace"] = "default"
    out = release(
        kube_api,
        namespace,
        definitions=[configmap("mine", {"a": "b"}), outside],
        allowed_namespaces=["default"],
        kubeconfig=user,
    )
    assert out.get("failed") and "nothing was applied" in out["msg"] and "forbidden" in out["msg"].lower()
    assert "mine" not in configmaps(kube_api, namespace) and records(kube_api, namespace) == {}
    ok = release(kube_api, namespace, definitions=[configmap("mine", {"a": "b"})], kubeconfig=user)
    assert not ok.get("failed"), ok.get("msg")
    assert ok["revision"] == 1 and configmaps(kube_api, namespace)["mine"] == {"a": "b"}


def test_other_releases_objects_are_never_touched(kube_api, namespace):
    assert not release(kube_api, namespace, name="one", definitions=[configmap("shared", {"by": "one"})]).get("failed")
    out = release(kube_api, namespace, name="two", definitions=[configmap("shared", {"by": "two"})])
    assert out.get("failed") and "belongs to release %s/one" % namespace in out["msg"]
    assert configmaps(kube_api, namespace)["shared"] == {"by": "one"}
    core(kube_api).create_namespaced_config_map(
        namespace, client.V1ConfigMap(metadata=client.V1ObjectMeta(name="manual"))
    )
    out = release(kube_api, namespace, name="two", definitions=[configmap("manual", {"a": "b"})])
    assert out.get("failed") and "adopt=true" in out["msg"]
    out = release(kube_api, namespace, name="two", definitions=[configmap("manual", {"a": "b"})], adopt=True)
    assert not out.get("failed") and names(out["updated"]) == ["ConfigMap/manual"]


def test_uninstall_keeps_annotated_objects(kube_api, namespace):
    keep = configmap("keep-me", {"a": "b"})
    keep["metadata"]["annotations"] = {"anvil.cluster/resource-policy": "keep"}
    assert not release(kube_api, namespace, definitions=[*V1, keep]).get("failed")
    # Dropping the kept object from the release does not delete it.
    out = release(kube_api, namespace, definitions=V1)
    assert names(out["kept"]) == ["ConfigMap/keep-me"] and out["pruned"] == []
    gone = release(kube_api, namespace, state="absent")
    assert not gone.get("failed"), gone.get("msg")
    assert gone["changed"] and names(gone["pruned"]) == [
        "ConfigMap/extra",
        "ConfigMap/settings",
        "Deployment/web",
        "Service/web",
    ]
    assert set(configmaps(kube_api, namespace)) <= {"keep-me", "kube-root-ca.crt"} and "keep-me" in configmaps(
        kube_api, namespace
    )
    assert records(kube_api, namespace) == {}
    assert not release(kube_api, namespace, state="absent")["changed"]
    # keep_history: records stay, marked uninstalled; a later install continues the numbering.
    assert not release(kube_api, namespace, name="hist", definitions=[configmap("h", {"a": "b"})]).get("failed")
    out = release(kube_api, namespace, name="hist", state="absent", keep_history=True)
    assert out["changed"] and statuses(kube_api, namespace, "hist") == {1: "uninstalled"}
    assert not release(kube_api, namespace, name="hist", state="absent", keep_history=True)["changed"]
    again = release(kube_api, namespace, name="hist", definitions=[configmap("h", {"a": "b"})])
    assert again["revision"] == 2 and statuses(kube_api, namespace, "hist") == {1: "uninstalled", 2: "deployed"}


def test_src_directory_read_on_controller(kube_api, namespace, tmp_path):
    manifests = tmp_path / "manifests"
    (manifests / "sub").mkdir(parents=True)
    (manifests / "a.yml").write_text(yaml.safe_dump_all(V2[:2]))
    (manifests / "sub" / "b.yaml").write_text(yaml.safe_dump(V2[2]))
    (manifests / "README.md").write_text("not a manifest")
    out = release(kube_api, namespace, src=str(manifests))
    assert not out.get("failed"), out.get("msg")
    assert names(out["created"]) == ["ConfigMap/settings", "Deployment/web", "Service/web"]
    assert records(kube_api, namespace)[1]["source"]["type"] == "src"


def _helm():
    """helm as `make artifacts-api` builds it (the integration target builds it first), else from PATH."""
    cache = Path(os.environ.get("ANVIL_CACHE", "/var/cache/anvil"))
    found = sorted((cache / "files" / "helm").glob("*/linux-amd64/helm"))
    helm = str(found[-1]) if found else shutil.which("helm")
    assert helm, f"helm is not built in {cache}/files/helm and not on PATH: run `make artifacts-api`"
    return helm


def test_chart_rendered_with_helm_template(kube_api, namespace, tmp_path):
    chart = tmp_path / "chart"
    (chart / "templates").mkdir(parents=True)
    (chart / "Chart.yaml").write_text("apiVersion: v2\nname: demo\nversion: 1.2.3\n")
    (chart / "values.yaml").write_text("mode: default\nreplicas: 1\n")
    (chart / "templates" / "cm.yaml").write_text(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {{ .Release.Name }}-cfg\n"
        "data:\n  mode: {{ .Values.mode | quote }}\n"
    )
    out = release(kube_api, namespace, name="demo", chart=str(chart), values={"mode": "custom"}, helm_binary=_helm())
    assert not out.get("failed"), out.get("msg")
    assert configmaps(kube_api, namespace)["demo-cfg"] == {"mode": "custom"}
    record = records(kube_api, namespace, "demo")[1]
    assert record["source"]["chart"] == "demo" and record["source"]["version"] == "1.2.3"
    assert record["values"] == {"mode": "custom"}
    assert not release(
        kube_api, namespace, name="demo", chart=str(chart), values={"mode": "custom"}, helm_binary=_helm()
    )["changed"]


def test_apps_playbook_deploys_inventory_releases_in_order(kube_api, namespace):
    playbook = Path(__file__).resolve().parents[2] / "playbooks" / "apps.yml"
    apps_vars = {
        "anvil_apps_kubeconfig": kube_api.kubeconfig,
        "anvil_app_defaults": {"timeout": 60, "history_max": 3},
        "anvil_apps": [
            {"name": "config", "namespace": namespace, "definitions": [configmap("settings", {"mode": "one"})]},
            {"name": "web", "namespace": namespace, "definitions": V2[1:], "description": "web 2"},
        ],
    }
    first = run_playbook(playbook, extra_vars=apps_vars)
    assert first.rc == 0, first.stdout[-3000:]
    assert first.result("Release %s/config" % namespace)["revision"] == 1
    assert first.result("Release %s/web" % namespace)["status"] == "deployed"
    assert (
        "%s/config: revision 1 deployed; %s/web: revision 1 deployed" % (namespace, namespace)
        in first.result("Summary")["msg"]
    )
    assert records(kube_api, namespace, "web")[1]["description"] == "web 2"
    assert image(kube_api, namespace) == "example.test/web:2"
    again = run_playbook(playbook, extra_vars=apps_vars)
    assert again.rc == 0 and again.changed() == 0
    # A failing release stops the run; releases after it are not deployed.
    apps_vars["anvil_apps"] = [
        {"name": "broken", "namespace": namespace, "definitions": [{"kind": "ConfigMap", "metadata": {"name": "x"}}]},
        {"name": "late", "namespace": namespace, "definitions": [configmap("late", {"a": "b"})]},
    ]
    failed = run_playbook(playbook, extra_vars=apps_vars)
    assert failed.rc != 0 and "late" not in configmaps(kube_api, namespace)


def test_drift_is_reported_and_repaired_with_force_conflicts(kube_api, namespace):
    assert not release(kube_api, namespace, definitions=V1[:1]).get("failed")
    # Someone edits a field the release owns (another field manager now owns it).
    core(kube_api).patch_namespaced_config_map(
        "settings", namespace, {"data": {"mode": "edited"}}, field_manager="kubectl-edit"
    )
    out = release(kube_api, namespace, definitions=V1[:1])
    assert out.get("failed") and "conflict" in out["msg"].lower() and "force_conflicts=true" in out["msg"]
    assert configmaps(kube_api, namespace)["settings"] == {"mode": "edited"}
    fixed = release(kube_api, namespace, definitions=V1[:1], force_conflicts=True)
    assert not fixed.get("failed"), fixed.get("msg")
    assert fixed["changed"] and names(fixed["updated"]) == ["ConfigMap/settings"] and fixed["revision"] == 2
    assert configmaps(kube_api, namespace)["settings"] == {"mode": "one"}
    assert not release(kube_api, namespace, definitions=V1[:1])["changed"]


def test_no_op_reads_each_kind_once_and_sees_edits_of_any_field(kube_api, namespace):
    def objects(count):
        web = "web%d" % count  # two releases in one namespace: each its own Deployment and Service
        return [configmap("%s-c%d" % (web, i), {"i": str(i)}) for i in range(count)] + [
            deployment("example.test/web:1", name=web),
            service(name=web),
        ]

    costs = {}
    for count in (3, 30):
        name = "size%d" % count
        assert not release(kube_api, namespace, name, definitions=objects(count)).get("failed")
        again = release(kube_api, namespace, name, definitions=objects(count))
        assert not again["changed"] and len(again["unchanged"]) == count + 2, again
        costs[count] = again["api_requests"]
    # The record and one label-selected LIST per kind: ten times the objects, not one request more.
    assert costs[3] == costs[30], costs
    assert costs[30] <= 8, costs

    # Someone else adds an annotation (a field the release does not own): not a change for the release, but no
    # longer what it left behind, so this run reads every object the slow way (a dry run each) to find that.
    core(kube_api).patch_namespaced_config_map(
        "web30-c1", namespace, {"metadata": {"annotations": {"note": "hand-made"}}}, field_manager="kubectl-annotate"
    )
    noted = release(kube_api, namespace, "size30", definitions=objects(30))
    assert not noted["changed"] and noted["api_requests"] > costs[30] + 30, noted["api_requests"]

    # Someone removes the release's label: the object drops out of the LIST, and the run puts it back.
    core(kube_api).patch_namespaced_config_map(
        "web30-c2", namespace, {"metadata": {"labels": {"anvil.cluster/release": None}}}, field_manager="kubectl-label"
    )
    repaired = release(kube_api, namespace, "size30", definitions=objects(30))
    assert repaired["changed"] and names(repaired["updated"]) == ["ConfigMap/web30-c2"], repaired
    labels = core(kube_api).read_namespaced_config_map("web30-c2", namespace).metadata.labels
    assert labels["anvil.cluster/release"] == "size30", labels
    # The repair recorded what it left: the next run is a no-op at the constant cost again.
    assert release(kube_api, namespace, "size30", definitions=objects(30))["api_requests"] == costs[30]
