"""kubeadm certificate report: parsing kubeadm's JSON and PEM, thresholds, renew and restart decisions."""

import copy
import datetime as dt
import json

import pytest
from ansible.errors import AnsibleFilterError
from ansible_collections.anvil.cluster.plugins.filter.certificates import (
    certificates_report,
    certificates_restarts,
    certificates_stale_containers,
)
from ansible_collections.anvil.cluster.plugins.module_utils import certificates as certs
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat
from cryptography.x509.oid import NameOID

# What `kubeadm certs check-expiration -o json --config /etc/kubernetes/anvil/kubeadm-config.yaml` printed on a
# testbed control plane (kubeadm v1.35.4), entry for entry (residualTime is in seconds).
CA_OF = {"apiserver-etcd-client": "etcd-ca", "etcd-healthcheck-client": "etcd-ca", "etcd-peer": "etcd-ca"}
CA_OF.update({"etcd-server": "etcd-ca", "front-proxy-client": "front-proxy-ca"})
NOW = "2026-12-01T18:00:00Z"
LEAVES = [
    "admin.conf",
    "apiserver",
    "apiserver-etcd-client",
    "apiserver-kubelet-client",
    "controller-manager.conf",
    "etcd-healthcheck-client",
    "etcd-peer",
    "etcd-server",
    "front-proxy-client",
    "scheduler.conf",
    "super-admin.conf",
]
KUBEADM = {
    "kind": "CertificateExpirationInfo",
    "apiVersion": "output.kubeadm.k8s.io/v1alpha3",
    "certificates": [
        {
            "name": name,
            "expirationDate": "2027-12-01T17:53:28Z",
            "residualTime": 31535963,
            "externallyManaged": False,
            "caName": CA_OF.get(name, "ca"),
            "missing": False,
        }
        for name in LEAVES
    ],
    "certificateAuthorities": [
        {
            "name": name,
            "expirationDate": "2036-11-28T17:53:28Z",
            "residualTime": 315359963,
            "externallyManaged": False,
            "missing": False,
        }
        for name in ("ca", "etcd-ca", "front-proxy-ca")
    ],
}
KUBELET_CONFIG = "apiVersion: kubelet.config.k8s.io/v1beta1\nkind: KubeletConfiguration\nrotateCertificates: true\n"


def pem(not_before, not_after, cn="system:node:cp1", with_key=False):
    """A self-signed certificate (cryptography picks UTCTime before 2050, GeneralizedTime after)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name(
        [x509.NameAttribute(NameOID.ORGANIZATION_NAME, "system:nodes"), x509.NameAttribute(NameOID.COMMON_NAME, cn)]
    )
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .sign(key, hashes.SHA256())
    )
    text = cert.public_bytes(Encoding.PEM).decode()
    if with_key:  # the kubelet's rotated file holds its key first, then the certificate
        text = key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption()).decode() + text
    return text


def utc(*args):
    return dt.datetime(*args, tzinfo=dt.timezone.utc)


def expiring(data, names, when):
    data = copy.deepcopy(data)
    for item in data["certificates"] + data["certificateAuthorities"]:
        if item["name"] in names:
            item["expirationDate"] = when
    return data


# --- parsing ---------------------------------------------------------------------------------------------


def test_kubeadm_json_lists_every_leaf_certificate_and_ca():
    entries = certs.kubeadm_entries(KUBEADM, 30, now=NOW)
    leaves = [e for e in entries if e["kind"] == "certificate"]
    assert [e["name"] for e in leaves] == LEAVES
    assert [e["name"] for e in entries if e["kind"] == "ca"] == ["ca", "etcd-ca", "front-proxy-ca"]
    apiserver = next(e for e in leaves if e["name"] == "apiserver")
    assert apiserver["expires"] == "2027-12-01T17:53:28Z"
    assert apiserver["days_left"] == pytest.approx(364.99, abs=0.01)
    assert apiserver["below_threshold"] is False
    assert apiserver["renewable"] is True and apiserver["authority"] == "ca"
    assert all(not e["renewable"] for e in entries if e["kind"] == "ca")


def test_text_with_kubeadm_lines_before_the_json_is_read():
    text = "[check-expiration] Reading configuration from the cluster...\n\n" + json.dumps(KUBEADM)
    assert len(certs.kubeadm_entries(text, 30, now=NOW)) == 14


@pytest.mark.parametrize(
    ("output", "message"),
    [
        ("error: could not read certificates", "gave no JSON"),
        ("{not json", "unreadable JSON"),
        ({"kind": "Pod"}, "not a kubeadm CertificateExpirationInfo"),
    ],
)
def test_other_output_is_refused(output, message):
    with pytest.raises(certs.CertificateError, match=message):
        certs.parse_check_expiration(output)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2027-12-01T17:53:28Z", utc(2027, 12, 1, 17, 53, 28)),
        ("2027-12-01T17:53:28.123Z", utc(2027, 12, 1, 17, 53, 28)),
        ("2027-12-01T19:53:28+02:00", utc(2027, 12, 1, 17, 53, 28)),
        ("2027-12-01T12:53:28-0500", utc(2027, 12, 1, 17, 53, 28)),
    ],
)
def test_times(value, expected):
    assert certs.parse_time(value) == expected


def test_pem_validity_reads_utctime_and_generalizedtime_and_the_common_name():
    v = certs.pem_validity(pem(utc(2026, 12, 1, 17, 48, 28), utc(2027, 12, 1, 17, 53, 28)))
    assert (v["not_before"], v["not_after"], v["subject"]) == (
        utc(2026, 12, 1, 17, 48, 28),
        utc(2027, 12, 1, 17, 53, 28),
        "system:node:cp1",
    )
    assert certs.pem_validity(pem(utc(2026, 1, 1), utc(2051, 6, 1)))["not_after"] == utc(2051, 6, 1)


def test_pem_der_is_the_certificates_own_bytes():
    text = pem(utc(2026, 1, 1), utc(2027, 1, 1), with_key=True)
    assert certs.pem_der(text) == x509.load_pem_x509_certificate(text.encode()).public_bytes(Encoding.DER)
    with pytest.raises(certs.CertificateError, match="no PEM certificate"):
        certs.pem_der("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n")


def test_pem_validity_skips_the_key_block_of_the_kubelets_file():
    assert certs.pem_validity(pem(utc(2026, 1, 1), utc(2027, 1, 1), with_key=True))["not_after"] == utc(2027, 1, 1)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "no PEM certificate"),
        ("-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----", "not base64"),
        ("-----BEGIN CERTIFICATE-----\nMAMCAQE=\n-----END CERTIFICATE-----", "truncated|not an X.509"),
    ],
)
def test_pem_validity_refuses_what_is_not_a_certificate(text, message):
    with pytest.raises(certs.CertificateError, match=message):
        certs.pem_validity(text)


@pytest.mark.parametrize(
    ("config", "on"),
    [
        (KUBELET_CONFIG, True),
        ("rotateCertificates: false\n", False),
        ("rotateCertificates: 'true'\n", True),
        ("kind: KubeletConfiguration\n", False),
        ({"rotateCertificates": True}, True),
        ({}, False),
        (None, False),
    ],
)
def test_rotation(config, on):
    assert certs.rotation_enabled(config) is on


# --- thresholds and decisions ----------------------------------------------------------------------------


def test_nothing_due_on_a_fresh_cluster():
    report = certs.host_report(
        "cp1", 30, KUBEADM, kubelet_pem=pem(utc(2026, 12, 1), utc(2027, 12, 1)), kubelet_config=KUBELET_CONFIG, now=NOW
    )
    assert report["below_threshold"] == [] and report["renew"] == [] and report["restart"] == []
    assert report["problems"] == []
    assert report["kubelet_rotation"] is True
    assert report["certificates"][-1]["name"] == "kubelet-client"
    assert report["certificates"][-1]["subject"] == "system:node:cp1"
    assert report["summary"].startswith("cp1: 15 checked; soonest ")
    assert "none below 30 d" in report["summary"] and "kubelet rotation on" in report["summary"]


def test_short_lived_certificates_are_renewed_and_their_pods_restarted():
    data = expiring(KUBEADM, LEAVES, "2026-12-01T20:00:00Z")  # two hours from NOW
    report = certs.host_report("cp1", 30, data, now=NOW)
    assert report["renew"] == LEAVES
    assert all(
        e["days_left"] == pytest.approx(0.08, abs=0.01) for e in report["certificates"] if e["kind"] == "certificate"
    )
    # etcd and the API server read theirs again by themselves: checked on the wire, not restarted.
    assert report["restart"] == ["kube-controller-manager", "kube-scheduler"]
    assert report["verify"] == ["etcd-server", "etcd-peer", "apiserver"]
    assert report["problems"] == []
    conservative = certs.host_report("cp1", 30, data, reload=False, now=NOW)
    assert conservative["restart"] == list(certs.COMPONENTS) and conservative["verify"] == []
    assert "below 30 d: admin.conf (0.08 d)" in report["summary"]


def test_the_threshold_is_a_strict_bound():
    data = expiring(KUBEADM, ["apiserver"], "2026-12-31T18:00:00Z")  # exactly 30 days
    assert certs.host_report("cp1", 30, data, now=NOW)["renew"] == []
    assert certs.host_report("cp1", 30.5, data, now=NOW)["renew"] == ["apiserver"]


def test_force_renews_everything_renewable_and_nothing_else():
    data = copy.deepcopy(KUBEADM)
    data["certificates"][1]["externallyManaged"] = True  # apiserver
    report = certs.host_report("cp1", 30, data, force=True, now=NOW)
    assert report["renew"] == [n for n in LEAVES if n != "apiserver"]
    assert report["below_threshold"] == []


def test_expired_certificates_have_negative_days_left():
    data = expiring(KUBEADM, ["scheduler.conf"], "2026-11-30T18:00:00Z")
    entry = next(
        e for e in certs.host_report("cp1", 30, data, now=NOW)["certificates"] if e["name"] == "scheduler.conf"
    )
    assert entry["days_left"] == -1.0 and entry["below_threshold"]


def test_a_ca_below_the_threshold_is_a_problem_not_a_renewal():
    report = certs.host_report("cp1", 30, expiring(KUBEADM, ["etcd-ca"], "2026-12-20T18:00:00Z"), now=NOW)
    assert report["renew"] == [] and report["below_threshold"] == ["etcd-ca"]
    assert len(report["problems"]) == 1 and "kubeadm cannot renew a CA" in report["problems"][0]


def test_missing_and_externally_managed_certificates_are_problems():
    data = copy.deepcopy(KUBEADM)
    data["certificates"][0].update(missing=True, expirationDate="")
    data["certificates"][2].update(externallyManaged=True, expirationDate="2026-12-02T00:00:00Z")
    report = certs.host_report("cp1", 30, data, now=NOW)
    assert report["below_threshold"] == ["admin.conf", "apiserver-etcd-client"]
    assert report["renew"] == []
    assert ["missing" in p for p in report["problems"]] == [True, False]
    assert "externally managed" in report["problems"][1]
    assert report["certificates"][0]["expires"] is None


@pytest.mark.parametrize(("rotation", "hint"), [(True, "rotation is on but has not happened"), (False, "turn it on")])
def test_a_kubelet_certificate_below_the_threshold_is_a_problem(rotation, hint):
    config = "rotateCertificates: %s\n" % str(rotation).lower()
    report = certs.host_report(
        "w1", 30, None, kubelet_pem=pem(utc(2026, 1, 1), utc(2026, 12, 5)), kubelet_config=config, now=NOW
    )
    assert report["below_threshold"] == ["kubelet-client"] and report["renew"] == []
    assert hint in report["problems"][0]
    assert ("kubelet rotation " + ("on" if rotation else "OFF")) in report["summary"]


def test_a_worker_reports_only_its_kubelet():
    report = certs.host_report(
        "w1", 30, "", kubelet_pem=pem(utc(2026, 1, 1), utc(2027, 1, 1)), kubelet_config=KUBELET_CONFIG, now=NOW
    )
    assert [e["name"] for e in report["certificates"]] == ["kubelet-client"]


@pytest.mark.parametrize("threshold", ["soon", -1, None])
def test_a_bad_threshold_is_refused(threshold):
    with pytest.raises(certs.CertificateError, match="threshold"):
        certs.host_report("cp1", threshold, KUBEADM)


@pytest.mark.parametrize(
    ("renewed", "reload", "stale", "restarted"),
    [
        ([], True, [], []),
        (["admin.conf", "super-admin.conf", "etcd-healthcheck-client"], False, [], []),
        (["scheduler.conf", "apiserver"], True, [], ["kube-scheduler"]),
        (["scheduler.conf", "apiserver"], False, [], ["kube-apiserver", "kube-scheduler"]),
        (["scheduler.conf", "apiserver"], True, ["apiserver"], ["kube-apiserver", "kube-scheduler"]),
        (["front-proxy-client", "etcd-peer"], True, [], []),
        (["front-proxy-client", "etcd-peer"], True, ["etcd-peer"], ["etcd"]),
        (["front-proxy-client", "etcd-peer"], False, [], ["etcd", "kube-apiserver"]),
        (["controller-manager.conf"], True, [], ["kube-controller-manager"]),
        (["something-new"], True, [], list(certs.COMPONENTS)),
    ],
)
def test_restarts(renewed, reload, stale, restarted):
    assert certs.restarts(renewed, reload, stale) == restarted
    assert certificates_restarts(renewed, reload=reload, stale=stale) == restarted


def test_every_certificate_kubeadm_renews_has_its_readers():
    assert set(certs.READERS) == set(LEAVES)
    assert all(certs.READERS[name][0] in certs.COMPONENTS for name in certs.SERVED)


def test_only_served_certificates_can_be_stale():
    with pytest.raises(certs.CertificateError, match="not a certificate a server presents"):
        certs.restarts(["apiserver-etcd-client"], True, ["apiserver-etcd-client"])
    with pytest.raises(AnsibleFilterError, match="certificates_restarts"):
        certificates_restarts(["scheduler.conf"], stale=["scheduler.conf"])


def test_served_follows_reload():
    assert certs.served(["apiserver", "etcd-peer", "admin.conf"]) == ["etcd-peer", "apiserver"]
    assert certs.served(["apiserver"], reload=False) == []


# --- the filter ------------------------------------------------------------------------------------------


def test_the_filter_takes_kubeadms_text_and_the_kubelets_config_as_data():
    report = certificates_report(
        json.dumps(KUBEADM),
        "cp1",
        30,
        kubelet_pem=pem(utc(2026, 1, 1), utc(2027, 6, 1)),
        kubelet_config={"rotateCertificates": True},
        now=NOW,
    )
    assert report["host"] == "cp1" and report["kubelet_rotation"] is True and len(report["certificates"]) == 15


def test_the_filter_names_the_host_on_bad_input():
    with pytest.raises(
        AnsibleFilterError, match="certificates_report: cp1: kubeadm certs check-expiration gave no JSON"
    ):
        certificates_report("oops", "cp1")


def crictl_ps(*containers):
    return json.dumps(
        {
            "containers": [
                {
                    "id": cid,
                    "state": state,
                    "createdAt": str(int(created * 1e9)),
                    "metadata": {"name": "kube-scheduler"},
                }
                for cid, created, state in containers
            ]
        }
    )


def test_stale_containers_are_those_created_before_the_renewal():
    out = crictl_ps(
        ("old", 1000.5, "CONTAINER_RUNNING"), ("new", 1002, "CONTAINER_RUNNING"), ("gone", 900, "CONTAINER_EXITED")
    )
    assert certs.stale_containers(out, "1001") == ["old"]
    assert certificates_stale_containers(json.loads(out), 1003) == ["old", "new"]
    assert certs.stale_containers('{"containers": []}', 1) == []


def test_stale_containers_refuse_what_is_not_crictl_json():
    with pytest.raises(AnsibleFilterError, match="unreadable JSON"):
        certificates_stale_containers("oops", 1)
