"""The common kubeconfig read without the kubernetes package (plugins/module_utils/k8s/kubeconfig.py), and the
TLS context the client builds from it. Anything the reader does not know goes to kubernetes.core (None)."""

import base64
import datetime
import os
import ssl

import pytest
import yaml
from ansible_collections.anvil.cluster.plugins.module_utils.k8s import client as client_mod
from ansible_collections.anvil.cluster.plugins.module_utils.k8s.kubeconfig import direct_settings
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID


def b64(text):
    return base64.b64encode(text.encode()).decode()


def kubeconfig(user, cluster=None, context_extra=None):
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "current-context": "admin@k",
        "clusters": [
            {
                "name": "k",
                "cluster": cluster or {"server": "https://10.0.0.1:6443", "certificate-authority-data": b64("CA")},
            }
        ],
        "users": [{"name": "admin", "user": user}, {"name": "other", "user": {"token": "other-token"}}],
        "contexts": [
            {"name": "admin@k", "context": dict({"cluster": "k", "user": "admin"}, **(context_extra or {}))},
            {"name": "other@k", "context": {"cluster": "k", "user": "other", "namespace": "x"}},
        ],
    }


def test_token_and_ca_data():
    settings = direct_settings({"kubeconfig": kubeconfig({"token": "t0ken"})}, yaml.safe_load)
    assert settings == {"host": "https://10.0.0.1:6443", "verify": True, "ca_data": "CA", "token": "t0ken"}


def test_the_context_option_picks_another_user():
    settings = direct_settings({"kubeconfig": kubeconfig({"token": "t"}), "context": "other@k"}, yaml.safe_load)
    assert settings["token"] == "other-token"


def test_client_certificate_files_are_relative_to_the_kubeconfig(tmp_path):
    config = kubeconfig(
        {"client-certificate": "pki/admin.crt", "client-key": "/abs/admin.key"},
        {"server": "https://api.example:6443/", "certificate-authority": "pki/ca.crt"},
    )
    path = tmp_path / "admin.conf"
    path.write_text(yaml.safe_dump(config))
    settings = direct_settings({"kubeconfig": str(path)}, yaml.safe_load)
    assert settings == {
        "host": "https://api.example:6443",
        "verify": True,
        "ca_file": str(tmp_path / "pki" / "ca.crt"),
        "cert_file": str(tmp_path / "pki" / "admin.crt"),
        "key_file": "/abs/admin.key",
    }


def test_insecure_skip_tls_verify():
    config = kubeconfig({"token": "t"}, {"server": "https://h:6443", "insecure-skip-tls-verify": True})
    assert direct_settings({"kubeconfig": config}, yaml.safe_load)["verify"] is False


@pytest.mark.parametrize(
    "params",
    [
        {"kubeconfig": kubeconfig({"exec": {"command": "aws"}})},  # exec plugin
        {"kubeconfig": kubeconfig({"auth-provider": {"name": "oidc"}})},
        {"kubeconfig": kubeconfig({"tokenFile": "/var/run/token"})},
        {"kubeconfig": kubeconfig({"token": "t", "as": "someone"})},  # impersonation
        {"kubeconfig": kubeconfig({"client-certificate-data": b64("C")})},  # a certificate without its key
        {"kubeconfig": kubeconfig({})},  # no credentials
        {"kubeconfig": kubeconfig({"token": "t"}, {"server": "http://h:8080"})},  # plain HTTP
        {"kubeconfig": kubeconfig({"token": "t"}, {"server": "https://h", "proxy-url": "http://p:3128"})},
        {"kubeconfig": kubeconfig({"token": "t"}, {"server": "https://h", "tls-server-name": "api"})},
        {"kubeconfig": kubeconfig({"token": "t"}, context_extra={"extensions": []})},
        {"kubeconfig": kubeconfig({"token": "t"}), "context": "missing"},
        {"kubeconfig": kubeconfig({"token": "t"}), "validate_certs": False},  # another connection option
        {"kubeconfig": kubeconfig({"token": "t"}), "impersonate_user": "x"},
        {"host": "https://h:6443", "api_key": "k"},  # no kubeconfig: kubernetes.core's defaults apply
        {"kubeconfig": "/etc/a.conf:/etc/b.conf"},  # several files to merge
        {"kubeconfig": "/does/not/exist"},  # kubernetes.core names the problem
        {"kubeconfig": kubeconfig({"client-certificate-data": "not base64!", "client-key-data": b64("K")})},
    ],
)
def test_anything_else_goes_to_kubernetes_core(params):
    assert direct_settings(params, yaml.safe_load) is None


def _self_signed():
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "kubernetes-admin")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    cert_pem = cert.public_bytes(serialization.Encoding.PEM).decode()
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    return cert_pem, key_pem


def test_tls_context_loads_a_client_certificate_given_as_data_and_keeps_no_file(tmp_path, monkeypatch):
    cert_pem, key_pem = _self_signed()
    monkeypatch.setattr(client_mod.tempfile, "tempdir", str(tmp_path))
    settings = {"host": "https://h", "verify": True, "ca_data": cert_pem, "cert_data": cert_pem, "key_data": key_pem}
    context = client_mod._ssl_context(settings)
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname
    assert os.listdir(tmp_path) == []  # the key was on disk only while it was loaded
    assert context.cert_store_stats()["x509"] == 1  # the CA given, not the system bundle


def test_tls_context_without_verification():
    context = client_mod._ssl_context({"host": "https://h", "verify": False})
    assert context.verify_mode == ssl.CERT_NONE and not context.check_hostname
