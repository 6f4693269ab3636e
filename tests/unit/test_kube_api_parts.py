"""Unit tests of the pure parts of tools/kube_api: binary lookup, PKI, kubeconfigs, command lines,
node manifests and scaling plans, process bookkeeping, and the kwok stages file."""

from __future__ import annotations

import base64
import os
import stat
import subprocess
import sys
import time

import pytest
import yaml
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from tools import kube_api as kapi


@pytest.fixture
def inst(tmp_path):
    return kapi.Instance(name="unit", port_offset=7, state_root=tmp_path)


def _exe(path):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("#!/bin/sh\n")
    path.chmod(0o755)
    return path


# ---------------------------------------------------------------- binaries


def test_find_binary_prefers_manifest_version(tmp_path):
    versions = tmp_path / "versions.yml"
    versions.write_text("anvil_versions:\n  kubernetes:\n    version: v1.35.4\n")
    _exe(tmp_path / "files/kubernetes/v1.35.4/linux-amd64/kube-apiserver")
    _exe(tmp_path / "files/kubernetes/v1.36.0/linux-amd64/kube-apiserver")
    found = kapi.find_binary("kubernetes", "kube-apiserver", cache=tmp_path, versions_file=versions)
    assert found.parent.parent.name == "v1.35.4"


def test_find_binary_falls_back_to_newest_in_cache(tmp_path):
    versions = tmp_path / "absent.yml"
    for v in ("v0.9.0", "v0.10.1", "v0.10.0"):
        _exe(tmp_path / f"files/kwok/{v}/linux-amd64/kwok")
    found = kapi.find_binary("kwok", "kwok", cache=tmp_path, versions_file=versions)
    assert found.parent.parent.name == "v0.10.1"


def test_find_binary_ignores_non_executables(tmp_path):
    path = tmp_path / "files/etcd/v3.6.6/linux-amd64/etcd"
    path.parent.mkdir(parents=True)
    path.write_text("not executable")
    with pytest.raises(kapi.BinariesMissing, match="make artifacts-api"):
        kapi.find_binary("etcd", "etcd", cache=tmp_path, versions_file=tmp_path / "none.yml")


def test_find_binaries_names_every_missing_one(tmp_path):
    _exe(tmp_path / "files/etcd/v3.6.6/linux-amd64/etcd")
    with pytest.raises(kapi.BinariesMissing) as err:
        kapi.find_binaries(cache=tmp_path)
    missing, hint = str(err.value).split(": ", 1)
    assert missing.startswith("missing binaries kube-apiserver, kube-controller-manager, kube-scheduler, kwok in ")
    assert "etcd" not in missing
    assert "make artifacts-api" in hint


def test_version_key_orders_numerically():
    assert sorted(["v1.9.0", "v1.10.0", "v1.35.4"], key=kapi._version_key) == ["v1.9.0", "v1.10.0", "v1.35.4"]


# ---------------------------------------------------------------- PKI and kubeconfigs


def _cert(path):
    return x509.load_pem_x509_certificate(path.read_bytes())


def test_pki_chain_sans_usages_and_modes(inst):
    kapi.generate_pki(inst.pki)
    ca = _cert(inst.pki / "ca.crt")
    api = _cert(inst.pki / "apiserver.crt")
    api.verify_directly_issued_by(ca)
    sans = api.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "kubernetes.default.svc.cluster.local" in sans.get_values_for_type(x509.DNSName)
    assert {str(i) for i in sans.get_values_for_type(x509.IPAddress)} == {"127.0.0.1", "10.96.0.1"}
    eku = api.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert ExtendedKeyUsageOID.SERVER_AUTH in eku

    admin = _cert(inst.pki / "admin.crt")
    admin.verify_directly_issued_by(ca)
    assert [a.value for a in admin.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)] == ["system:masters"]
    kcm = _cert(inst.pki / "kube-controller-manager.crt")
    assert kcm.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "system:kube-controller-manager"

    for key in inst.pki.glob("*.key"):
        assert stat.S_IMODE(key.stat().st_mode) == 0o600, key
    assert stat.S_IMODE(inst.pki.stat().st_mode) == 0o700


def test_fresh_pki_each_time(inst, tmp_path):
    kapi.generate_pki(inst.pki)
    first = (inst.pki / "ca.crt").read_bytes()
    kapi.generate_pki(inst.pki)
    assert (inst.pki / "ca.crt").read_bytes() != first


def test_component_kubeconfigs(inst):
    kapi.generate_pki(inst.pki)
    kapi.write_component_kubeconfigs(inst)
    cfg = yaml.safe_load(inst.admin_kubeconfig.read_text())
    assert cfg["clusters"][0]["cluster"]["server"] == "https://127.0.0.1:16450"
    cert = x509.load_pem_x509_certificate(base64.b64decode(cfg["users"][0]["user"]["client-certificate-data"]))
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "anvil-admin"
    for who in ("kube-controller-manager", "kube-scheduler", "kwok"):
        path = inst.kubeconfig(who)
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(inst.admin_kubeconfig.stat().st_mode) == 0o600


def test_mint_user_groups_and_refusals(inst):
    kapi.generate_pki(inst.pki)
    path = kapi.mint_user(inst, "alice", ["devs", "auditors", "devs"])
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    cfg = yaml.safe_load(path.read_text())
    cert = x509.load_pem_x509_certificate(base64.b64decode(cfg["users"][0]["user"]["client-certificate-data"]))
    cert.verify_directly_issued_by(_cert(inst.pki / "ca.crt"))
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "alice"
    assert sorted(a.value for a in cert.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)) == [
        "auditors",
        "devs",
    ]
    # Different groups -> different file; same groups -> same file.
    assert kapi.mint_user(inst, "alice") != path
    assert kapi.mint_user(inst, "alice", ["auditors", "devs"]) == path
    with pytest.raises(kapi.KubeApiError, match="system:masters"):
        kapi.mint_user(inst, "mallory", ["system:masters"])
    with pytest.raises(kapi.KubeApiError, match="invalid user name"):
        kapi.mint_user(inst, "../etc/passwd")


def test_mint_user_without_instance(inst):
    with pytest.raises(kapi.KubeApiError, match="make kube-api"):
        kapi.mint_user(inst, "bob")


# ---------------------------------------------------------------- command lines


def _flags(argv):
    return dict(a[2:].split("=", 1) for a in argv[1:] if a.startswith("--") and "=" in a)


def test_ports_follow_offset(inst):
    assert inst.all_ports() == {
        "etcd-client": 23797,
        "etcd-peer": 23807,
        "kube-apiserver": 16450,
        "kube-controller-manager": 16264,
        "kube-scheduler": 16266,
        "kwok": 16287,
    }
    assert kapi.DEFAULT.apiserver_port == 16443
    assert kapi.DEFAULT.dir.name == "kube-api"
    assert inst.dir.name == "kube-api-unit"


def test_apiserver_flags(inst):
    f = _flags(kapi.apiserver_args(inst, "/bin/kube-apiserver"))
    assert f["secure-port"] == "16450"
    assert f["bind-address"] == "127.0.0.1"
    assert f["etcd-servers"] == "https://127.0.0.1:23797"
    assert "RBAC" in f["authorization-mode"].split(",")
    assert f["service-account-signing-key-file"].endswith("pki/sa.key")
    assert "disable-admission-plugins" not in f  # ResourceQuota, LimitRanger, PodSecurity stay on


def test_etcd_flags_use_tls_and_private_ports(inst):
    f = _flags(kapi.etcd_args(inst, "/bin/etcd"))
    assert f["listen-client-urls"] == "https://127.0.0.1:23797"
    assert f["client-cert-auth"] == "true"
    assert f["data-dir"].startswith(str(inst.dir))


def test_controller_manager_and_scheduler_flags(inst):
    f = _flags(kapi.controller_manager_args(inst, "/bin/kcm"))
    assert f["controllers"] == "*"
    assert f["use-service-account-credentials"] == "true"
    assert f["service-account-private-key-file"].endswith("sa.key")
    assert f["leader-elect"] == "false"
    s = _flags(kapi.scheduler_args(inst, "/bin/sched"))
    assert s["secure-port"] == "16266"
    cfg = kapi.scheduler_config(inst)
    assert cfg["leaderElection"] == {"leaderElect": False}
    assert cfg["clientConnection"]["kubeconfig"].endswith("kube-scheduler.kubeconfig")


def test_kwok_flags(inst):
    f = _flags(kapi.kwok_args(inst, "/bin/kwok"))
    assert f["manage-nodes-with-annotation-selector"] == "kwok.x-k8s.io/node=fake"
    argv = kapi.kwok_args(inst, "/bin/kwok")
    configs = [a.split("=", 1)[1] for a in argv if a.startswith("--config=")]
    assert [c.rsplit("/", 1)[1] for c in configs] == ["kwok.yaml", "stages.yaml"]
    assert f["server-address"] == "127.0.0.1:16287"


def test_kwok_lease_renewal_fits_the_node_monitor_grace_period():
    (cfg,) = [d for d in yaml.safe_load_all(kapi.KWOK_CONFIG_FILE.read_text()) if d]
    assert cfg["kind"] == "KwokConfiguration"
    lease = cfg["options"]["nodeLeaseDurationSeconds"]
    grace = int(kapi.NODE_MONITOR_GRACE_PERIOD.rstrip("s"))
    # kwok renews every lease/4; several missed renewals must fit in the grace period.
    assert lease / 4 * 4 <= grace


# ---------------------------------------------------------------- nodes


def test_node_manifest_untainted_and_managed():
    node = kapi.node_manifest("kwok-node-4")
    assert node["metadata"]["annotations"]["kwok.x-k8s.io/node"] == "fake"
    assert node["metadata"]["labels"]["topology.kubernetes.io/zone"] == "zone-1"
    assert node["metadata"]["labels"][kapi.NODE_POOL_LABEL] == "default"
    assert "taints" not in node["spec"]
    assert node["status"]["allocatable"]["pods"] == "250"
    tainted = kapi.node_manifest("x", pool="test", taints=[{"key": "k", "effect": "NoSchedule"}])
    assert tainted["spec"]["taints"][0]["key"] == "k"
    assert tainted["metadata"]["labels"][kapi.NODE_POOL_LABEL] == "test"


@pytest.mark.parametrize(
    ("existing", "wanted", "create", "delete"),
    [
        ([], 3, ["kwok-node-0", "kwok-node-1", "kwok-node-2"], []),
        (["kwok-node-0", "kwok-node-1", "kwok-node-2"], 3, [], []),
        (["kwok-node-0", "kwok-node-2"], 3, ["kwok-node-1"], []),
        (["kwok-node-0", "kwok-node-1", "kwok-node-10", "kwok-node-2"], 2, [], ["kwok-node-2", "kwok-node-10"]),
        (["kwok-node-0", "other-node"], 1, [], []),
    ],
)
def test_plan_node_scaling(existing, wanted, create, delete):
    assert kapi.plan_node_scaling(existing, wanted) == (create, delete)


def test_node_ready():
    assert kapi.node_ready({"status": {"conditions": [{"type": "Ready", "status": "True"}]}})
    assert not kapi.node_ready({"status": {"conditions": [{"type": "Ready", "status": "Unknown"}]}})
    assert not kapi.node_ready({"status": {}})


# ---------------------------------------------------------------- processes


def test_start_and_stop_process_records_identity(inst):
    inst.dir.mkdir(parents=True)
    entry = kapi.start_process(inst, "sleeper", [sys.executable, "-c", "import time; time.sleep(60)"])
    assert kapi.process_alive(entry["pid"], entry["start_time"])
    # A recycled pid (different start time) is never treated as ours.
    assert not kapi.process_alive(entry["pid"], entry["start_time"] + 1)
    t0 = time.monotonic()
    kapi.stop_process(entry)
    assert time.monotonic() - t0 < 10
    assert not kapi.process_alive(entry["pid"], entry["start_time"])
    assert (inst.logs / "sleeper.log").exists()


def test_stop_process_kills_what_ignores_sigterm(inst):
    inst.dir.mkdir(parents=True)
    code = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); print('up', flush=True); time.sleep(60)"
    entry = kapi.start_process(inst, "stubborn", [sys.executable, "-c", code])
    kapi.wait_for("child ready", lambda: "up" in (inst.logs / "stubborn.log").read_text(), 10)
    kapi.stop_process(entry, timeout=0.5)
    assert not kapi.process_alive(entry["pid"], entry["start_time"])


def test_wait_for_reports_dead_process():
    with pytest.raises(kapi.KubeApiError, match="etcd exited"):
        kapi.wait_for("x", lambda: False, 5, alive=lambda: "etcd")
    with pytest.raises(kapi.KubeApiError, match="timed out"):
        kapi.wait_for("x", lambda: False, 0.2)


def test_teardown_removes_state_dir(inst):
    inst.dir.mkdir(parents=True)
    entry = kapi.start_process(inst, "etcd", [sys.executable, "-c", "import time; time.sleep(60)"])
    kapi.save_state(inst, {"processes": {"etcd": entry}})
    assert kapi.teardown(inst) == ["etcd"]
    assert not inst.dir.exists()
    assert not kapi.process_alive(entry["pid"], entry["start_time"])
    assert kapi.teardown(inst) == []


def test_is_healthy_false_without_all_processes(inst):
    inst.dir.mkdir(parents=True)
    assert not kapi.is_healthy(inst)
    kapi.save_state(inst, {"processes": {"etcd": {"pid": os.getpid(), "start_time": None}}})
    assert not kapi.is_healthy(inst)


def test_cli_env_prints_export(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANVIL_KUBE_API_")}
    env["ANVIL_STATE"] = str(tmp_path)
    out = subprocess.run(
        [sys.executable, "-m", "tools.kube_api", "env"],
        cwd=kapi.REPO_ROOT,
        capture_output=True,
        text=True,
        env=env,
        check=True,
    )
    assert out.stdout.strip() == f"export KUBECONFIG={tmp_path}/kube-api/admin.kubeconfig"


# ---------------------------------------------------------------- kwok stages


def _stages():
    return {d["metadata"]["name"]: d for d in yaml.safe_load_all(kapi.KWOK_STAGES_FILE.read_text())}


def test_stages_cover_the_lifecycle():
    stages = _stages()
    assert set(stages) == {
        "node-initialize",
        "node-heartbeat",
        "pod-ready",
        "pod-running-unready",
        "pod-complete",
        "pod-delete",
    }
    for s in stages.values():
        assert s["apiVersion"] == "kwok.x-k8s.io/v1alpha1"
        assert s["kind"] == "Stage"
    assert stages["pod-delete"]["spec"]["next"] == {"finalizers": {"empty": True}, "delete": True}


def test_ready_and_unready_stages_are_mutually_exclusive():
    stages = _stages()

    def never_ready_expr(name):
        exprs = stages[name]["spec"]["selector"]["matchExpressions"]
        return next(e for e in exprs if "never-ready" in e["key"])

    ready, unready = never_ready_expr("pod-ready"), never_ready_expr("pod-running-unready")
    assert ready["key"] == unready["key"]
    assert "anvil.test/ready" in ready["key"]
    assert (ready["operator"], ready["values"]) == ("NotIn", ["true"])
    assert (unready["operator"], unready["values"]) == ("In", ["true"])
    template = yaml.safe_load(
        stages["pod-running-unready"]["spec"]["next"]["statusTemplate"].replace("{{", "#").replace("}}", "")
    )
    assert template["phase"] == "Running"


def test_job_pods_complete():
    stage = _stages()["pod-complete"]
    keys = {e["key"]: e for e in stage["spec"]["selector"]["matchExpressions"]}
    assert keys[".metadata.ownerReferences[].kind"]["values"] == ["Job"]
    assert "phase: Succeeded" in stage["spec"]["next"]["statusTemplate"]


def test_teardown_stops_orphans_the_state_lost(inst):
    inst.dir.mkdir(parents=True)
    marker = inst.dir / "etcd"
    entry = kapi.start_process(
        inst, "lost", [sys.executable, "-c", "import time, sys; time.sleep(60)", f"--data-dir={marker}"]
    )
    other = kapi.Instance(name="unit-other", state_root=inst.state_root)
    assert kapi.orphan_pids(other) == []
    assert entry["pid"] in kapi.orphan_pids(inst)
    stopped = kapi.teardown(inst)  # no state file
    assert stopped == [f"orphan pid {entry['pid']}"]
    assert not kapi.process_alive(entry["pid"], entry["start_time"])


def test_port_in_use_sees_listeners_and_outgoing_connections():
    import socket

    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    port = server.getsockname()[1]
    client = socket.create_connection(("127.0.0.1", port))
    try:
        assert kapi.port_in_use(port)
        # The client's local (ephemeral) port is taken too, although nothing listens on it.
        assert kapi.port_in_use(client.getsockname()[1])
    finally:
        client.close()
        server.close()
    low, high = kapi.ephemeral_port_range()
    assert low < high
    # Every port of the default and benchmark instances stays below the outgoing range.
    assert max(kapi.Instance(port_offset=8899).all_ports().values()) < 32768
