"""A fresh cluster that runs entirely from the private registry (`make e2e-registry`, a testbed of its own).

On the session testbed (3 machines): the third is the registry host only; the first two become a cluster
(1 control plane + 1 worker) whose every image comes from the registry, filled from the mirror by
playbooks/registry_import.yml. Tests run in file order:

  registry.yml -> registry_import.yml copies every image of the versions manifest -> a second import copies
  nothing -> the mirror's registry port is closed to the cluster's hosts -> site.yml with
  anvil_registry_mirror / anvil_image_repository / anvil_registries on the registry -> nodes Ready, every pod
  Running, every image the nodes hold is the registry's.
"""

from __future__ import annotations

import json
import secrets
import shutil
import subprocess
import time
from pathlib import Path

import pytest
import yaml
from ansible_collections.anvil.cluster.plugins.module_utils.registry_images import manifest_images

from tests.helpers.ansible import REPO_ROOT, run_playbook
from tests.helpers.mirror import default_url
from tests.helpers.testbed import sh
from tests.helpers.wait import wait_until as poll

pytestmark = pytest.mark.registry_cluster

PLAYBOOKS = REPO_ROOT / "playbooks"
WORK = REPO_ROOT / "build" / "e2e-registry-cluster"
KUBECTL = "kubectl --kubeconfig /etc/kubernetes/admin.conf --request-timeout=20s"
PORT = 5443
TIMINGS: dict[str, float] = {}
VERSIONS = yaml.safe_load((REPO_ROOT / "vars" / "versions.yml").read_text())["anvil_versions"]


@pytest.fixture(scope="module")
def bed(testbed, mirror):
    data = yaml.safe_load(Path(testbed.inventory).read_text())
    groups = data["all"]["children"]["k8s_cluster"]["children"]
    cp = next(iter(groups["control_plane"]["hosts"]))
    workers = sorted(groups["workers"]["hosts"])
    assert len(workers) >= 2, "needs 3 machines: a control plane, a worker and the registry host"
    reg_host, worker = workers[-1], workers[0]
    reg_vars = groups["workers"]["hosts"].pop(reg_host)
    for extra in workers[1:-1]:
        groups["workers"]["hosts"].pop(extra)
    data["all"]["children"]["registry"] = {"hosts": {reg_host: reg_vars}}
    address = f"{reg_vars['ansible_host']}:{PORT}"
    if WORK.exists():
        shutil.rmtree(WORK)
    WORK.mkdir(parents=True)
    inventory = WORK / "hosts.yml"
    inventory.write_text(yaml.safe_dump(data, sort_keys=False))
    password = secrets.token_urlsafe(18)
    mirror_repo = data["all"]["vars"]["anvil_image_repository"]
    common = {
        "anvil_cluster_name": "e2e-registry",
        "anvil_kubeconfig_dest": str(WORK / "admin.conf"),
        "anvil_registry_pki_dir": str(WORK / "pki"),
        "anvil_registry_users": [{"name": "platform", "password": password}],
    }
    cluster_vars = {
        "anvil_registry_mirror": address,
        "anvil_image_repository": f"{address}/anvil",
        "anvil_registries": [{"host": address, "username": "platform", "password": password}],
    }
    return {
        "testbed": testbed,
        "cp": cp,
        "worker": worker,
        "registry": reg_host,
        "address": address,
        "inventory": inventory,
        "common": common,
        "cluster": cluster_vars,
        # The mirror still serves packages and binaries; only its registry is the one to leave behind.
        "import": {"registry_import_source": f"docker://{mirror_repo}/{{name}}:{{tag}}"},
        "mirror_registry_port": int(mirror_repo.split("/")[0].rsplit(":", 1)[1]),
        "node_ips": [
            groups["control_plane"]["hosts"][cp]["ansible_host"],
            groups["workers"]["hosts"][worker]["ansible_host"],
        ],
    }


def play(bed, name: str, **extra):
    started = time.monotonic()
    extra_vars = {**bed["common"], **extra}
    result = run_playbook(PLAYBOOKS / name, inventory=bed["inventory"], extra_vars=extra_vars, workdir=WORK)
    result.seconds = time.monotonic() - started
    return result


def ok(result) -> None:
    assert result.rc == 0, result.failures() or f"rc={result.rc}\n{result.stdout[-6000:]}\n{result.stderr[-2000:]}"


def imported(bed, result) -> dict:
    return result.result("anvil.cluster.registry : Copy the images the registry does not have", host=bed["registry"])


def test_registry_comes_up(bed):
    result = play(bed, "registry.yml")
    ok(result)
    TIMINGS["registry.yml"] = result.seconds


def test_import_copies_every_image_of_the_manifest(bed):
    result = play(bed, "registry_import.yml", **bed["import"])
    ok(result)
    TIMINGS["registry_import.yml first"] = result.seconds
    wanted = sorted(f"{i['name']}:{i['tag']}" for i in manifest_images(VERSIONS))
    copied = imported(bed, result)
    assert sorted(copied["copied"]) == wanted and copied["present"] == [], copied
    print(f"\nregistry_import.yml: {len(wanted)} images copied in {result.seconds:.1f} s")


def test_a_second_import_copies_nothing(bed):
    result = play(bed, "registry_import.yml", **bed["import"])
    ok(result)
    TIMINGS["registry_import.yml again"] = result.seconds
    again = imported(bed, result)
    assert again["copied"] == [] and len(again["present"]) == len(manifest_images(VERSIONS)), again
    assert result.changed() == 0, result.stats


@pytest.fixture
def mirror_registry_closed(bed):
    """The mirror's registry port rejects the cluster's hosts (its files and packages stay reachable)."""
    rules = [
        ["INPUT", "-s", ip, "-p", "tcp", "--dport", str(bed["mirror_registry_port"]), "-j", "REJECT"]
        for ip in bed["node_ips"]
    ]
    for rule in rules:
        subprocess.run(["iptables", "-I", *rule], check=True)
    try:
        yield
    finally:
        for rule in rules:
            subprocess.run(["iptables", "-D", *rule], check=False)


def test_a_fresh_cluster_runs_entirely_from_the_registry(bed, mirror_registry_closed):
    tb, cp = bed["testbed"], bed["cp"]
    probe = sh(tb, cp, f"curl -s -m 5 -o /dev/null -w '%{{http_code}}' {default_url().rsplit(':', 1)[0]}:"
               f"{bed['mirror_registry_port']}/v2/ || true")  # fmt: skip
    assert probe.strip() in ("000", ""), f"the mirror's registry still answers the control plane: {probe}"
    result = play(bed, "site.yml", **bed["cluster"])
    ok(result)
    TIMINGS["site.yml from the registry"] = result.seconds
    print(f"\nsite.yml (1 control plane + 1 worker) from the registry: {result.seconds:.1f} s")
    nodes = json.loads(sh(tb, cp, f"{KUBECTL} get nodes -o json"))["items"]
    ready = {
        n["metadata"]["name"]: any(c["type"] == "Ready" and c["status"] == "True" for c in n["status"]["conditions"])
        for n in nodes
    }
    assert ready == {cp: True, bed["worker"]: True}, ready

    def pods_running():
        pods = json.loads(sh(tb, cp, f"{KUBECTL} get pods -A -o json"))["items"]
        return pods and all(p["status"].get("phase") == "Running" for p in pods)

    poll(pods_running, 300, "every pod of the cluster Running", interval=3)
    pods = json.loads(sh(tb, cp, f"{KUBECTL} get pods -A -o json"))["items"]
    images = {c["image"] for p in pods for c in p["spec"]["containers"] + p["spec"].get("initContainers", [])}
    assert images and all(i.startswith(bed["address"] + "/") for i in images), images
    for node in (cp, bed["worker"]):
        held = json.loads(sh(tb, node, "crictl images -o json"))["images"]
        tags = [t for i in held for t in i.get("repoTags") or []]
        assert tags and all(t.startswith(bed["address"] + "/") for t in tags), (node, tags)
    timings = json.dumps({k: round(v, 1) for k, v in TIMINGS.items()})
    print(f"timings (s): {timings}")
    (WORK / "timings.json").write_text(timings + "\n")
