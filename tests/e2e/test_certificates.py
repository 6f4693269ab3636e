"""playbooks/certificates.yml on the testbed cluster: report, check mode, renewal, API availability, re-run.

How the certificates are made to expire soon: the module fixture renews every kubeadm certificate on the
control plane with `kubeadm certs renew all --config <a copy of our kubeadm configuration with
certificateValidityPeriod: 2h>`. A year cannot be waited for, and the
machines share the host's clock (no faking time for kubeadm or the API server); certificates forged by
the test would differ from kubeadm's (SANs, key usages, kubeconfig embedding). Renewed this way they are
kubeadm's own, signed by the cluster's CAs, in use by the running components, and only their lifetime
differs: 2 hours, far below any threshold (days_left about 0.08) yet long enough that a test failing half
way leaves a working cluster that the next run of the playbook renews. It also exercises the same
`kubeadm certs renew --config` path the playbook takes. The fixture does not restart the static pods
itself: the playbook's restarts are then the first in ten minutes, as on a real cluster, not pushed back by
the kubelet's restart back-off (which grows with each restart of a container within ten minutes).

While the playbook renews, a thread asks the API server for /readyz every second from a worker through
its node-local load balancer (127.0.0.1:8443, as the kubelet does). etcd and the API server take their
renewed certificates without a restart (docs/certificates.md#what-a-renewal-restarts): the test asserts
that not one probe fails on this single control plane, that their containers are the same before and after
while the controller manager's and the scheduler's are new, and that the run saw the renewed certificates
on the wire. The restart path (certificates_reload: false) runs on three control planes in
tests/e2e/test_ha_cluster_core.py. Runs on the cluster test_cluster_core.py deploys (site.yml is re-run
first; a no-op then).
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import ssl
import time
from pathlib import Path

import pytest
import yaml

from tests.helpers.ansible import REPO_ROOT, ensure_collection_link, kube_play, run_playbook
from tests.helpers.probe import Prober, longest_gap
from tests.helpers.testbed import sh
from tests.helpers.wait import wait_until

ensure_collection_link()
from ansible_collections.anvil.cluster.plugins.module_utils import certificates as certs

SITE = REPO_ROOT / "playbooks" / "site.yml"
PLAYBOOK = REPO_ROOT / "playbooks" / "certificates.yml"
WORK = REPO_ROOT / "build" / "e2e-cluster-core"
KUBECONFIG = WORK / "admin.conf"
SITE_VARS = {"anvil_kubeconfig_dest": str(KUBECONFIG), "anvil_cluster_name": "e2e"}
CONFIG = "/etc/kubernetes/anvil/kubeadm-config.yaml"
SHORT_CONFIG = "/root/kubeadm-config-2h.yaml"
KUBECTL = "kubectl --kubeconfig /etc/kubernetes/admin.conf"
CRICTL = "/usr/local/bin/crictl"
LOCAL_KUBECTL = f"{KUBECTL} --server https://127.0.0.1:6443 --request-timeout=5s"
# The custom stats (set_stats) the playbook publishes, in the JSON callback's output.
STATS_ENV = {"ANSIBLE_SHOW_CUSTOM_STATS": "true"}


def expiry(testbed, cp: str) -> dict[str, dict]:
    """kubeadm's certificates on the control plane, read on the node: {name: report entry}."""
    out = sh(testbed, cp, f"kubeadm certs check-expiration -o json --config {CONFIG}")
    return {e["name"]: e for e in certs.kubeadm_entries(out, 30)}


def leaves(entries: dict[str, dict]) -> dict[str, dict]:
    return {n: e for n, e in entries.items() if e["kind"] == "certificate"}


def run_certificates(testbed, check: bool = False):
    started = time.monotonic()
    result = run_playbook(PLAYBOOK, inventory=testbed.inventory, extra_vars=SITE_VARS, check=check, env=STATS_ENV)
    seconds = time.monotonic() - started
    assert result.rc == 0, result.stdout[-5000:] + result.stderr[-2000:]
    print(f"\ncertificates.yml{' --check' if check else ''}: {seconds:.1f} s, changed={result.changed()}")
    return result, seconds


def slowest(result, count: int = 8) -> list[tuple[str, float]]:
    took = [
        (t["task"]["name"].split(" : ")[-1], utc(t["task"]["duration"]["end"]) - utc(t["task"]["duration"]["start"]))
        for t in result.tasks
        if "end" in t["task"]["duration"]
    ]
    return sorted(took, key=lambda item: -item[1])[:count]


def changed_tasks(result) -> set[str]:
    return {t["task"]["name"].split(" : ")[-1] for t in result.tasks for r in t["hosts"].values() if r.get("changed")}


def reports(result) -> dict[str, dict]:
    return result.data["global_custom_stats"]["anvil_certificates"]


def utc(stamp: str) -> float:
    return dt.datetime.fromisoformat(stamp.rstrip("Z")).replace(tzinfo=dt.timezone.utc).timestamp()


@pytest.fixture(scope="module")
def cluster(testbed, mirror):
    inv = yaml.safe_load(Path(testbed.inventory).read_text())
    groups = inv["all"]["children"]["k8s_cluster"]["children"]
    cp = next(iter(groups["control_plane"]["hosts"]))
    workers = sorted(groups["workers"]["hosts"])
    assert len(workers) >= 2, f"needs 2 workers: {workers}"
    deploy = run_playbook(SITE, inventory=testbed.inventory, extra_vars=SITE_VARS)
    assert deploy.rc == 0, deploy.stdout[-3000:]
    sh(testbed, cp, f"grep -q '^certificateValidityPeriod: 8760h$' {CONFIG}")
    # Short-lived certificates: kubeadm's own renewal, with a copy of our configuration asking for 2 hours.
    sh(
        testbed,
        cp,
        f"sed 's/^certificateValidityPeriod: .*/certificateValidityPeriod: 2h/' {CONFIG} > {SHORT_CONFIG}"
        f" && chmod 600 {SHORT_CONFIG} && kubeadm certs renew all --config {SHORT_CONFIG} && rm -f {SHORT_CONFIG}",
    )
    short = expiry(testbed, cp)
    assert all(e["days_left"] < 0.1 for e in leaves(short).values()), short
    return {"cp": cp, "workers": workers, "testbed": testbed, "short": short}


def test_check_mode_reports_them_below_threshold_and_changes_nothing(cluster):
    testbed, cp = cluster["testbed"], cluster["cp"]
    copy = KUBECONFIG.read_bytes()
    result, _ = run_certificates(testbed, check=True)
    # The one change check mode announces: the controller's kubeconfig, stale since the fixture renewed admin.conf.
    assert changed_tasks(result) <= {"Write the admin kubeconfig on the controller (0600)"}, changed_tasks(result)
    assert KUBECONFIG.read_bytes() == copy
    report = reports(result)[cp]
    entries = {e["name"]: e for e in report["certificates"]}
    for name in leaves(cluster["short"]):
        assert entries[name]["below_threshold"] and entries[name]["days_left"] < 1, entries[name]
    assert sorted(report["renew"]) == sorted(leaves(cluster["short"]))
    assert report["restart"] == ["kube-controller-manager", "kube-scheduler"]
    assert report["verify"] == ["etcd-server", "etcd-peer", "apiserver"]
    assert report["problems"] == []
    # The CAs keep their ten years; every node's kubelet rotates its own client certificate.
    assert all(not e["below_threshold"] for e in entries.values() if e["kind"] == "ca")
    for host in [cp, *cluster["workers"]]:
        kubelet = next(e for e in reports(result)[host]["certificates"] if e["kind"] == "kubelet")
        assert kubelet["rotation"] is True and kubelet["days_left"] > 300, kubelet
        assert kubelet["subject"] == f"system:node:{host}"
    below = result.data["global_custom_stats"]["anvil_certificates_below_threshold"]
    assert sorted(below[cp]) == sorted(leaves(cluster["short"])) and below[cluster["workers"][0]] == []
    # Nothing changed on the node.
    after = expiry(testbed, cp)
    assert {n: e["expires"] for n, e in after.items()} == {n: e["expires"] for n, e in cluster["short"].items()}


def containers(testbed, cp: str) -> dict[str, str]:
    """{static pod container name: id} of the running control-plane containers on the node."""
    out = sh(testbed, cp, f"{CRICTL} ps --state running -o json")
    return {
        c["metadata"]["name"]: c["id"]
        for c in json.loads(out)["containers"]
        if c["metadata"]["name"] in certs.COMPONENTS
    }


def test_renewal_gives_a_year_and_the_api_keeps_answering(cluster):
    testbed, cp, worker = cluster["testbed"], cluster["cp"], cluster["workers"][0]
    before = containers(testbed, cp)
    assert set(before) == set(certs.COMPONENTS), before
    prober = Prober(testbed, worker)
    prober.start()
    wait_until(lambda: len(prober.probes) >= 3 and all(ok for _, ok, _ in prober.probes), 30, "probes answering")
    try:
        result, seconds = run_certificates(testbed)
        ended = time.time()
        wait_until(lambda: any(at > ended and ok for at, ok, _ in prober.probes), 60, "a probe after the run")
    finally:
        prober.stop()
    probes = prober.probes
    failed = [p for p in probes if not p[1]]
    gap = longest_gap(probes)
    print(f"probes: {len(probes)}, failed: {len(failed)}, longest gap: {gap:.1f} s, renewal run {seconds:.1f} s")
    print("slowest steps:", ", ".join(f"{name} {took:.1f} s" for name, took in slowest(result)))
    # Renewed on the node: a year from our configuration (control_plane_certificate_validity 8760h).
    renewed = expiry(testbed, cp)
    for name, entry in leaves(renewed).items():
        assert entry["days_left"] > 360, (name, entry)
    # ... reported so, after the renewal.
    report = reports(result)[cp]
    assert report["below_threshold"] == [] and report["renew"] == []
    # Every static pod runs a new container since the renewal; the API works on the node ...
    assert sh(testbed, cp, f"{LOCAL_KUBECTL} get --raw /readyz").strip() == "ok"
    assert "Ready" in sh(testbed, cp, f"{KUBECTL} get node {cp} --no-headers")
    # The API server presents its renewed serving certificate.
    ip = yaml.safe_load(Path(testbed.inventory).read_text())["all"]["children"]["k8s_cluster"]["children"][
        "control_plane"
    ]["hosts"][cp]["ansible_host"]
    serving = certs.pem_validity(ssl.get_server_certificate((ip, 6443)))
    assert (serving["not_after"] - dt.datetime.now(dt.timezone.utc)).days >= 360, serving
    # ... and with the admin kubeconfig written again on the controller (0600, a renewed client certificate).
    assert oct(KUBECONFIG.stat().st_mode & 0o777) == "0o600"
    user = yaml.safe_load(KUBECONFIG.read_text())["users"][0]["user"]
    client = certs.pem_validity(base64.b64decode(user["client-certificate-data"]).decode())
    assert (client["not_after"] - dt.datetime.now(dt.timezone.utc)).days >= 360, client
    nodes = run_playbook(kube_play({"name": "nodes", "kubernetes.core.k8s_info": {"kind": "Node"}}, KUBECONFIG))
    assert nodes.rc == 0 and len(nodes.result("nodes")["resources"]) == 1 + len(cluster["workers"]), nodes.stdout[
        -2000:
    ]
    # etcd and the API server took the renewed certificates without a restart, as checked on the wire by the
    # run (client and peer port, API server); the controller manager and the scheduler were restarted.
    step = "Check that etcd and the API server present the renewed certificates"
    presented = next(t for t in result.tasks if step in t["task"]["name"])["hosts"][cp]
    assert {r["item"]: r["stdout"] for r in presented["results"]} == dict.fromkeys(
        ("etcd-server", "etcd-peer", "apiserver"), "presented"
    )
    after = containers(testbed, cp)
    assert {n: after[n] == before[n] for n in certs.COMPONENTS} == {
        "etcd": True,
        "kube-apiserver": True,
        "kube-controller-manager": False,
        "kube-scheduler": False,
    }, (before, after)
    # The API kept answering: no probe failed, on this single control plane.
    assert failed == [], f"{len(failed)} of {len(probes)} probes failed, longest gap {gap:.1f} s: {failed}"


def test_a_rerun_changes_nothing(cluster):
    testbed, cp = cluster["testbed"], cluster["cp"]
    before = expiry(testbed, cp)
    result, _ = run_certificates(testbed)
    assert result.changed() == 0, changed_tasks(result)
    assert reports(result)[cp]["renew"] == []
    assert {n: e["expires"] for n, e in expiry(testbed, cp).items()} == {n: e["expires"] for n, e in before.items()}


def test_the_timer_renews_unattended(cluster):
    testbed, cp = cluster["testbed"], cluster["cp"]
    unit = "anvil-cert-renew"
    result = run_playbook(PLAYBOOK, inventory=testbed.inventory, extra_vars={**SITE_VARS, "certificates_timer": True})
    assert result.rc == 0 and result.changed(cp) > 0, result.stdout[-3000:]
    assert sh(testbed, cp, f"systemctl is-enabled {unit}.timer; systemctl is-active {unit}.timer").split() == [
        "enabled",
        "active",
    ]
    again = run_playbook(PLAYBOOK, inventory=testbed.inventory, extra_vars={**SITE_VARS, "certificates_timer": True})
    assert again.rc == 0 and again.changed() == 0, again.stats
    # Nothing due: the service only reports.
    sh(testbed, cp, f"systemctl start {unit}.service")
    assert "none below 30 d" in sh(testbed, cp, f"journalctl -u {unit}.service -o cat --no-pager | tail -n 3")
    # Short-lived again: the service renews and restarts on its own.
    sh(
        testbed,
        cp,
        f"sed 's/^certificateValidityPeriod: .*/certificateValidityPeriod: 2h/' {CONFIG} > {SHORT_CONFIG}"
        f" && chmod 600 {SHORT_CONFIG} && kubeadm certs renew all --config {SHORT_CONFIG} && rm -f {SHORT_CONFIG}",
    )
    assert all(e["days_left"] < 0.1 for e in leaves(expiry(testbed, cp)).values())
    started = time.monotonic()
    proc = testbed.exec(cp, f"systemctl start {unit}.service", timeout=1500)
    log = sh(testbed, cp, f"journalctl -u {unit}.service -o cat --no-pager | tail -n 30")
    print(f"\ntimer service renewal: {time.monotonic() - started:.1f} s")
    assert proc.returncode == 0, log
    assert "renewed apiserver" in log and "kube-apiserver presents the renewed apiserver certificate" in log, log
    assert "etcd presents the renewed etcd-peer certificate" in log and "restarted kube-scheduler" in log, log
    assert "restarted kube-apiserver" not in log and "restarted etcd" not in log, log
    for name, entry in leaves(expiry(testbed, cp)).items():
        assert entry["days_left"] > 360, (name, entry)
    assert sh(testbed, cp, f"{LOCAL_KUBECTL} get --raw /readyz").strip() == "ok"
    # Turned off: stopped and disabled; and the next run writes the controller's admin kubeconfig again
    # (the service renewed admin.conf on the node).
    off = run_playbook(PLAYBOOK, inventory=testbed.inventory, extra_vars=SITE_VARS)
    assert off.rc == 0, off.stdout[-3000:]
    state = testbed.exec(cp, f"systemctl is-enabled {unit}.timer; systemctl is-active {unit}.timer").stdout.split()
    assert state == ["disabled", "inactive"], state
    assert changed_tasks(off) == {
        "Write the admin kubeconfig on the controller (0600)",
        "Stop and disable a timer installed earlier",
    }
    user = yaml.safe_load(KUBECONFIG.read_text())["users"][0]["user"]
    client = certs.pem_validity(base64.b64decode(user["client-certificate-data"]).decode())
    assert certs.iso(client["not_after"]) == expiry(testbed, cp)["admin.conf"]["expires"]
