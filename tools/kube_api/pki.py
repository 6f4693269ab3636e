"""A fresh PKI per start and the kubeconfigs made from it.

The `cryptography` package; ECDSA P-256 keys are generated in milliseconds, RSA would cost seconds. Keys
and kubeconfigs are written 0600.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import ipaddress
import os
import re
from pathlib import Path
from typing import Iterable

import yaml

from tools.kube_api.components import service_ip
from tools.kube_api.errors import KubeApiError
from tools.kube_api.instance import Instance


def _write_private(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.chmod(path, 0o600)


def _new_key():
    from cryptography.hazmat.primitives.asymmetric import ec

    return ec.generate_private_key(ec.SECP256R1())


def _key_pem(key) -> bytes:
    from cryptography.hazmat.primitives import serialization

    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _cert_pem(cert) -> bytes:
    from cryptography.hazmat.primitives import serialization

    return cert.public_bytes(serialization.Encoding.PEM)


def _name(cn: str, orgs: Iterable[str] = ()):
    from cryptography import x509
    from cryptography.x509.oid import NameOID

    attrs = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, o) for o in orgs]
    attrs.append(x509.NameAttribute(NameOID.COMMON_NAME, cn))
    return x509.Name(attrs)


def _certificate(subject, issuer, public_key, days: int, ca: bool):
    """A certificate builder with what every certificate here has: validity (from 5 minutes ago), basic
    constraints and key usage (signing certificates only for a CA)."""
    from cryptography import x509

    now = dt.datetime.now(dt.timezone.utc)
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=ca,
                crl_sign=ca,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
    )


def make_ca(cn: str = "anvil-local-api-ca", days: int = 365):
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes

    key = _new_key()
    cert = (
        _certificate(_name(cn), _name(cn), key.public_key(), days, ca=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return key, cert


def issue_cert(
    ca_key,
    ca_cert,
    cn: str,
    *,
    orgs: Iterable[str] = (),
    dns: Iterable[str] = (),
    ips: Iterable[str] = (),
    server: bool = False,
    client: bool = True,
    days: int = 365,
):
    """Issue a leaf certificate signed by the CA; returns (key, cert)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.x509.oid import ExtendedKeyUsageOID

    key = _new_key()
    usages = []
    if server:
        usages.append(ExtendedKeyUsageOID.SERVER_AUTH)
    if client:
        usages.append(ExtendedKeyUsageOID.CLIENT_AUTH)
    builder = (
        _certificate(_name(cn, orgs), ca_cert.subject, key.public_key(), days, ca=False)
        .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
    )
    sans = [x509.DNSName(d) for d in dns] + [x509.IPAddress(ipaddress.ip_address(i)) for i in ips]
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    return key, builder.sign(ca_key, hashes.SHA256())


# Client identities of the components: (file stem, CN, groups). system:masters is used for the admin
# and for kwok (which patches the status of every node and pod); kcm and scheduler get their bootstrap
# RBAC roles by their well-known user names.
CLIENT_IDENTITIES = [
    ("admin", "anvil-admin", ["system:masters"]),
    ("kube-controller-manager", "system:kube-controller-manager", []),
    ("kube-scheduler", "system:kube-scheduler", []),
    ("kwok", "anvil-kwok", ["system:masters"]),
    ("apiserver-etcd-client", "kube-apiserver-etcd-client", []),
]


def generate_pki(pki: Path) -> None:
    """Write a fresh CA, serving certs (apiserver, etcd), client certs and the service-account key."""
    pki.mkdir(parents=True, exist_ok=True)
    os.chmod(pki, 0o700)
    ca_key, ca_cert = make_ca()
    _write_private(pki / "ca.key", _key_pem(ca_key))
    (pki / "ca.crt").write_bytes(_cert_pem(ca_cert))

    apiserver_dns = [
        "localhost",
        "kubernetes",
        "kubernetes.default",
        "kubernetes.default.svc",
        "kubernetes.default.svc.cluster.local",
    ]
    key, cert = issue_cert(
        ca_key,
        ca_cert,
        "kube-apiserver",
        dns=apiserver_dns,
        ips=["127.0.0.1", service_ip()],
        server=True,
        client=False,
    )
    _write_private(pki / "apiserver.key", _key_pem(key))
    (pki / "apiserver.crt").write_bytes(_cert_pem(cert))

    key, cert = issue_cert(ca_key, ca_cert, "etcd", dns=["localhost"], ips=["127.0.0.1"], server=True, client=True)
    _write_private(pki / "etcd.key", _key_pem(key))
    (pki / "etcd.crt").write_bytes(_cert_pem(cert))

    for stem, cn, groups in CLIENT_IDENTITIES:
        key, cert = issue_cert(ca_key, ca_cert, cn, orgs=groups)
        _write_private(pki / f"{stem}.key", _key_pem(key))
        (pki / f"{stem}.crt").write_bytes(_cert_pem(cert))

    from cryptography.hazmat.primitives import serialization

    sa_key = _new_key()
    _write_private(pki / "sa.key", _key_pem(sa_key))
    (pki / "sa.pub").write_bytes(
        sa_key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )


def kubeconfig_dict(
    server: str, ca_pem: bytes, cert_pem: bytes, key_pem: bytes, *, user: str, cluster: str = "anvil-local"
) -> dict:
    import base64

    def b64(data: bytes) -> str:
        return base64.b64encode(data).decode()

    context = f"{user}@{cluster}"
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": cluster, "cluster": {"server": server, "certificate-authority-data": b64(ca_pem)}}],
        "users": [{"name": user, "user": {"client-certificate-data": b64(cert_pem), "client-key-data": b64(key_pem)}}],
        "contexts": [{"name": context, "context": {"cluster": cluster, "user": user, "namespace": "default"}}],
        "current-context": context,
        "preferences": {},
    }


def write_kubeconfig(path: Path, config: dict) -> Path:
    _write_private(path, yaml.safe_dump(config, sort_keys=False).encode())
    return path


def write_component_kubeconfigs(inst: Instance) -> None:
    ca_pem = (inst.pki / "ca.crt").read_bytes()
    for stem, cn, _groups in CLIENT_IDENTITIES:
        if stem == "apiserver-etcd-client":
            continue
        config = kubeconfig_dict(
            inst.server,
            ca_pem,
            (inst.pki / f"{stem}.crt").read_bytes(),
            (inst.pki / f"{stem}.key").read_bytes(),
            user=cn,
        )
        target = inst.admin_kubeconfig if stem == "admin" else inst.kubeconfig(stem)
        write_kubeconfig(target, config)


def user_kubeconfig_name(name: str, groups: Iterable[str] = ()) -> str:
    groups = sorted(set(groups))
    if not groups:
        return f"user-{name}"
    digest = hashlib.sha256("\0".join(groups).encode()).hexdigest()[:8]
    return f"user-{name}-{digest}"


def mint_user(inst: Instance, name: str, groups: Iterable[str] = ()) -> Path:
    """A client-certificate kubeconfig for user `name` in `groups`; RBAC grants it nothing by itself."""
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._@:-]*", name):
        raise KubeApiError(f"invalid user name {name!r}: use letters, digits and . _ @ : -")
    groups = sorted(set(groups))
    if "system:masters" in groups:
        raise KubeApiError("refusing to mint a limited user in system:masters; use the admin kubeconfig")
    if not (inst.pki / "ca.key").exists():
        raise KubeApiError(f"no local API instance in {inst.dir}: run `make kube-api` first")
    ca_key = serialization.load_pem_private_key((inst.pki / "ca.key").read_bytes(), password=None)
    ca_cert = x509.load_pem_x509_certificate((inst.pki / "ca.crt").read_bytes())
    key, cert = issue_cert(ca_key, ca_cert, name, orgs=groups)
    config = kubeconfig_dict(inst.server, _cert_pem(ca_cert), _cert_pem(cert), _key_pem(key), user=name)
    return write_kubeconfig(inst.kubeconfig(user_kubeconfig_name(name, groups)), config)
