"""A local Kubernetes API for tests: etcd + kube-apiserver + kube-controller-manager + kube-scheduler
on 127.0.0.1, with kwok simulating the nodes.

CLI (also wrapped by `make kube-api NODES=N`, `make kube-api-down`, `make kube-api-status`)::

    python tools/kube_api.py up --nodes 3     # start, or reuse a healthy running instance
    python tools/kube_api.py down             # stop every process, remove every file it made
    python tools/kube_api.py status           # exit 0 when healthy
    python tools/kube_api.py env              # prints: export KUBECONFIG=...
    python tools/kube_api.py user --name alice --group devs   # mint a limited user's kubeconfig

Design:
- Every run generates a fresh PKI (ECDSA P-256: a CA, serving and client certificates, the
  service-account signing key) with the `cryptography` package, so nothing secret is checked in. Keys
  and kubeconfigs are written 0600.
- etcd speaks TLS with client certificates on non-default ports (23790/23800), the apiserver listens on
  127.0.0.1:16443 with RBAC on, so a real cluster on the host does not clash. The controller-manager
  and scheduler serve their health endpoints on 16257 / 16259, kwok on 16280.
- `up` reuses a healthy instance. When the node count differs, it scales the kwok nodes (creates the
  missing `kwok-node-<i>` or deletes the surplus) instead of restarting, because other test sessions
  may share the instance. A failed start stops what it started and removes the state directory; the
  logs of that attempt are kept in `$ANVIL_STATE/kube-api-failed-logs/` to say why.
- Processes run detached (own session), so the instance outlives the command that started it; pids and
  process start times are recorded so `down` never signals an unrelated process that reused a pid.
- An instance has a name and a port offset: the default one is what tests share; benchmarks start a
  separate one (`--instance bench --port-offset 5000`) so they never disturb it. Keep offsets below
  8900: higher ones put ports in the kernel's range for outgoing connections (32768+).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import fcntl
import hashlib
import ipaddress
import json
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

import yaml

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from tools import anvil_env

KWOK_STAGES_FILE = REPO_ROOT / "tools" / "kwok" / "stages.yaml"
KWOK_CONFIG_FILE = REPO_ROOT / "tools" / "kwok" / "kwok.yaml"
# kcm waits this long for a node's Lease renewal before marking it NotReady (kwok renews every 60 s).
NODE_MONITOR_GRACE_PERIOD = "300s"
ARCH = "linux-amd64"

# component -> (manifest component, binary name)
BINARIES = {
    "etcd": ("etcd", "etcd"),
    "kube-apiserver": ("kubernetes", "kube-apiserver"),
    "kube-controller-manager": ("kubernetes", "kube-controller-manager"),
    "kube-scheduler": ("kubernetes", "kube-scheduler"),
    "kwok": ("kwok", "kwok"),
}
START_ORDER = ["etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok"]

NODE_PREFIX = "kwok-node-"
NODE_POOL_LABEL = "anvil.test/kwok-pool"
KWOK_NODE_ANNOTATION = "kwok.x-k8s.io/node"
SERVICE_CIDR = "10.96.0.0/16"
POD_CIDR = "10.64.0.1/12"  # kwok hands out pod IPs from here: room for far more than 30,000 pods
NODE_CAPACITY = {"cpu": "32", "memory": "256Gi", "pods": "250", "ephemeral-storage": "1Ti"}

BINARIES_MISSING_HINT = (
    "run `make artifacts-api` to build etcd, kube-apiserver, kube-controller-manager, kube-scheduler, kubectl and kwok"
)


class KubeApiError(RuntimeError):
    """The local API could not be started or used; the message says what to do."""


class BinariesMissing(KubeApiError):
    pass


def log(msg: str) -> None:
    print(f"kube-api: {msg}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------------------------------
# Binaries


def _version_key(version: str) -> tuple:
    """Sort key for version directories such as v1.35.4 or 3.6.5 (numbers compare numerically)."""
    return tuple(int(p) if p.isdigit() else p for p in re.split(r"[.\-+]", version.lstrip("v")))


def manifest_version(component: str, versions_file: Path | None = None) -> str | None:
    path = versions_file or anvil_env.VERSIONS_FILE
    try:
        data = yaml.safe_load(Path(path).read_text()) or {}
    except (OSError, yaml.YAMLError):
        return None
    entry = (data.get("anvil_versions") or {}).get(component) or {}
    version = entry.get("version") if isinstance(entry, dict) else None
    return str(version) if version else None


def find_binary(component: str, binary: str, cache: Path | None = None, versions_file: Path | None = None) -> Path:
    """Path of a built binary in the artifact cache.

    Prefers tools.artifacts.binary_path (the builder's own answer); falls back to the manifest version
    and then to the newest version directory found in the cache, so this works while the builder is
    still being written.
    """
    cache = Path(cache or anvil_env.ANVIL_CACHE)
    if cache == anvil_env.ANVIL_CACHE and versions_file is None:
        try:
            from tools import artifacts  # type: ignore[attr-defined]

            path = Path(artifacts.binary_path(component, binary))
            if path.is_file() and os.access(path, os.X_OK):
                return path
        except Exception:
            pass
    version = manifest_version(component, versions_file)
    if version:
        path = cache / "files" / component / version / ARCH / binary
        if path.is_file() and os.access(path, os.X_OK):
            return path
    found = [p for p in (cache / "files" / component).glob(f"*/{ARCH}/{binary}") if os.access(p, os.X_OK)]
    if found:
        return max(found, key=lambda p: _version_key(p.parent.parent.name))
    raise BinariesMissing(
        f"{binary} not found under {cache}/files/{component}/<version>/{ARCH}/: {BINARIES_MISSING_HINT}"
    )


def find_binaries(cache: Path | None = None) -> dict[str, Path]:
    missing, out = [], {}
    for name, (component, binary) in BINARIES.items():
        try:
            out[name] = find_binary(component, binary, cache)
        except BinariesMissing:
            missing.append(binary)
    if missing:
        raise BinariesMissing(
            f"missing binaries {', '.join(missing)} in {cache or anvil_env.ANVIL_CACHE}: {BINARIES_MISSING_HINT}"
        )
    return out


def kubectl_binary(cache: Path | None = None) -> str:
    try:
        return str(find_binary("kubernetes", "kubectl", cache))
    except BinariesMissing:
        on_path = shutil.which("kubectl")
        if on_path:
            return on_path
        raise


# --------------------------------------------------------------------------------------------------
# Instance layout


@dataclass(frozen=True)
class Instance:
    """Where one local API instance keeps its state and which ports it uses."""

    name: str = "default"
    port_offset: int = 0
    state_root: Path = field(default_factory=lambda: anvil_env.ANVIL_STATE)

    @property
    def dir(self) -> Path:
        return self.state_root / ("kube-api" if self.name == "default" else f"kube-api-{self.name}")

    @property
    def failed_logs_dir(self) -> Path:
        return self.state_root / f"{self.dir.name}-failed-logs"

    @property
    def lock_file(self) -> Path:
        return self.state_root / f".{self.dir.name}.lock"

    def port(self, base: int) -> int:
        return base + self.port_offset

    @property
    def apiserver_port(self) -> int:
        return self.port(16443)

    @property
    def etcd_client_port(self) -> int:
        return self.port(23790)

    @property
    def etcd_peer_port(self) -> int:
        return self.port(23800)

    @property
    def kcm_port(self) -> int:
        return self.port(16257)

    @property
    def scheduler_port(self) -> int:
        return self.port(16259)

    @property
    def kwok_port(self) -> int:
        return self.port(16280)

    @property
    def server(self) -> str:
        return f"https://127.0.0.1:{self.apiserver_port}"

    @property
    def pki(self) -> Path:
        return self.dir / "pki"

    @property
    def logs(self) -> Path:
        return self.dir / "logs"

    @property
    def state_file(self) -> Path:
        return self.dir / "instance.json"

    @property
    def admin_kubeconfig(self) -> Path:
        return self.dir / "admin.kubeconfig"

    def kubeconfig(self, who: str) -> Path:
        return self.dir / "kubeconfigs" / f"{who}.kubeconfig"

    def all_ports(self) -> dict[str, int]:
        return {
            "etcd-client": self.etcd_client_port,
            "etcd-peer": self.etcd_peer_port,
            "kube-apiserver": self.apiserver_port,
            "kube-controller-manager": self.kcm_port,
            "kube-scheduler": self.scheduler_port,
            "kwok": self.kwok_port,
        }


DEFAULT = Instance()


# --------------------------------------------------------------------------------------------------
# PKI (the `cryptography` package; ECDSA keys are generated in milliseconds, RSA would cost seconds)


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


def make_ca(cn: str = "anvil-local-api-ca", days: int = 365):
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes

    key = _new_key()
    now = dt.datetime.now(dt.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(cn))
        .issuer_name(_name(cn))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
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
    now = dt.datetime.now(dt.timezone.utc)
    usages = []
    if server:
        usages.append(ExtendedKeyUsageOID.SERVER_AUTH)
    if client:
        usages.append(ExtendedKeyUsageOID.CLIENT_AUTH)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(cn, orgs))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
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


def service_ip(cidr: str = SERVICE_CIDR) -> str:
    """The first address of the service range: the ClusterIP of the `kubernetes` Service."""
    return str(next(ipaddress.ip_network(cidr).hosts()))


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


# --------------------------------------------------------------------------------------------------
# Component command lines (pure: unit-tested)


def etcd_args(inst: Instance, binary: Path | str) -> list[str]:
    pki = inst.pki
    client = f"https://127.0.0.1:{inst.etcd_client_port}"
    peer = f"http://127.0.0.1:{inst.etcd_peer_port}"
    return [
        str(binary),
        "--name=anvil",
        f"--data-dir={inst.dir / 'etcd'}",
        f"--listen-client-urls={client}",
        f"--advertise-client-urls={client}",
        f"--listen-peer-urls={peer}",
        f"--initial-advertise-peer-urls={peer}",
        f"--initial-cluster=anvil={peer}",
        "--initial-cluster-state=new",
        f"--cert-file={pki / 'etcd.crt'}",
        f"--key-file={pki / 'etcd.key'}",
        f"--trusted-ca-file={pki / 'ca.crt'}",
        "--client-cert-auth=true",
        # A test database: durability across power loss is not needed, speed is.
        "--unsafe-no-fsync=true",
        "--quota-backend-bytes=8589934592",
        "--log-level=warn",
    ]


def apiserver_args(inst: Instance, binary: Path | str) -> list[str]:
    pki = inst.pki
    return [
        str(binary),
        "--bind-address=127.0.0.1",
        "--advertise-address=127.0.0.1",
        f"--secure-port={inst.apiserver_port}",
        f"--etcd-servers=https://127.0.0.1:{inst.etcd_client_port}",
        f"--etcd-cafile={pki / 'ca.crt'}",
        f"--etcd-certfile={pki / 'apiserver-etcd-client.crt'}",
        f"--etcd-keyfile={pki / 'apiserver-etcd-client.key'}",
        f"--client-ca-file={pki / 'ca.crt'}",
        f"--tls-cert-file={pki / 'apiserver.crt'}",
        f"--tls-private-key-file={pki / 'apiserver.key'}",
        f"--cert-dir={inst.dir / 'apiserver-certs'}",
        "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
        f"--service-account-key-file={pki / 'sa.pub'}",
        f"--service-account-signing-key-file={pki / 'sa.key'}",
        f"--service-cluster-ip-range={SERVICE_CIDR}",
        "--authorization-mode=Node,RBAC",
        "--allow-privileged=true",
        # The `kubernetes` Endpoints cannot hold a loopback address; nothing here needs them.
        "--endpoint-reconciler-type=none",
        "--profiling=false",
        # Benchmarks create tens of thousands of objects: do not throttle a single-user test server.
        "--max-requests-inflight=1600",
        "--max-mutating-requests-inflight=800",
        "--v=1",
    ]


def controller_manager_args(inst: Instance, binary: Path | str) -> list[str]:
    pki = inst.pki
    kubeconfig = inst.kubeconfig("kube-controller-manager")
    return [
        str(binary),
        f"--kubeconfig={kubeconfig}",
        f"--authentication-kubeconfig={kubeconfig}",
        f"--authorization-kubeconfig={kubeconfig}",
        "--bind-address=127.0.0.1",
        f"--secure-port={inst.kcm_port}",
        f"--cert-dir={inst.dir / 'kcm-certs'}",
        "--leader-elect=false",
        "--controllers=*",
        "--use-service-account-credentials=true",
        f"--service-account-private-key-file={pki / 'sa.key'}",
        f"--root-ca-file={pki / 'ca.crt'}",
        f"--cluster-signing-cert-file={pki / 'ca.crt'}",
        f"--cluster-signing-key-file={pki / 'ca.key'}",
        "--kube-api-qps=500",
        "--kube-api-burst=1000",
        f"--node-monitor-grace-period={NODE_MONITOR_GRACE_PERIOD}",
        "--v=1",
    ]


def scheduler_config(inst: Instance) -> dict:
    return {
        "apiVersion": "kubescheduler.config.k8s.io/v1",
        "kind": "KubeSchedulerConfiguration",
        "clientConnection": {"kubeconfig": str(inst.kubeconfig("kube-scheduler")), "qps": 500, "burst": 1000},
        "leaderElection": {"leaderElect": False},
        # With 1000 nodes the default adaptive value scores ~40% of them per pod; 10% keeps scheduling
        # cheap on a small host. Clusters under 100 nodes are unaffected (at least 100 are scored).
        "percentageOfNodesToScore": 10,
    }


def scheduler_args(inst: Instance, binary: Path | str) -> list[str]:
    kubeconfig = inst.kubeconfig("kube-scheduler")
    return [
        str(binary),
        f"--config={inst.dir / 'kube-scheduler.yaml'}",
        f"--authentication-kubeconfig={kubeconfig}",
        f"--authorization-kubeconfig={kubeconfig}",
        "--bind-address=127.0.0.1",
        f"--secure-port={inst.scheduler_port}",
        f"--cert-dir={inst.dir / 'scheduler-certs'}",
        "--v=1",
    ]


def kwok_args(inst: Instance, binary: Path | str, stages: Path = KWOK_STAGES_FILE) -> list[str]:
    return [
        str(binary),
        f"--kubeconfig={inst.kubeconfig('kwok')}",
        f"--config={KWOK_CONFIG_FILE}",
        f"--config={stages}",
        "--manage-all-nodes=false",
        f"--manage-nodes-with-annotation-selector={KWOK_NODE_ANNOTATION}=fake",
        f"--cidr={POD_CIDR}",
        "--node-ip=10.63.0.1",
        f"--server-address=127.0.0.1:{inst.kwok_port}",
        # kwok logs every lease and pod transition at INFO: megabytes per minute at 1000 nodes.
        "--v=WARN",
    ]


COMMANDS: dict[str, Callable[[Instance, Any], list[str]]] = {
    "etcd": etcd_args,
    "kube-apiserver": apiserver_args,
    "kube-controller-manager": controller_manager_args,
    "kube-scheduler": scheduler_args,
    "kwok": kwok_args,
}


def node_name(index: int) -> str:
    return f"{NODE_PREFIX}{index}"


def node_index(name: str) -> int | None:
    if not name.startswith(NODE_PREFIX):
        return None
    rest = name[len(NODE_PREFIX) :]
    return int(rest) if rest.isdigit() else None


def node_manifest(name: str, pool: str = "default", labels: dict | None = None, taints: list | None = None) -> dict:
    """A Node that kwok manages: Ready once kwok sees it, untainted unless taints are given."""
    index = node_index(name)
    zone = f"zone-{index % 3}" if index is not None else "zone-0"
    all_labels = {
        "kubernetes.io/hostname": name,
        "kubernetes.io/os": "linux",
        "kubernetes.io/arch": "amd64",
        "node.kubernetes.io/instance-type": "kwok",
        "topology.kubernetes.io/zone": zone,
        "type": "kwok",
        NODE_POOL_LABEL: pool,
    }
    all_labels.update(labels or {})
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "labels": all_labels,
            "annotations": {KWOK_NODE_ANNOTATION: "fake", "node.alpha.kubernetes.io/ttl": "0"},
        },
        "spec": {"taints": taints} if taints else {},
        "status": {
            "allocatable": dict(NODE_CAPACITY),
            "capacity": dict(NODE_CAPACITY),
            "nodeInfo": {
                "architecture": "amd64",
                "operatingSystem": "linux",
                "kubeletVersion": "kwok",
                "containerRuntimeVersion": "kwok",
                "kernelVersion": "kwok",
                "osImage": "kwok",
                "kubeProxyVersion": "",
                "bootID": "",
                "machineID": "",
                "systemUUID": "",
            },
        },
    }


def plan_node_scaling(existing: Iterable[str], wanted: int) -> tuple[list[str], list[str]]:
    """(names to create, names to delete) so the pool is exactly kwok-node-0..wanted-1."""
    have = {n for n in existing if node_index(n) is not None}
    want = {node_name(i) for i in range(wanted)}
    create = sorted(want - have, key=node_index)
    delete = sorted(have - want, key=node_index)
    return create, delete


# --------------------------------------------------------------------------------------------------
# Processes


def _proc_start_time(pid: int) -> int | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # Field 22 (starttime); the command name (field 2) may contain spaces, so split after ')'.
    fields = stat.rsplit(")", 1)[1].split()
    return int(fields[19])


def process_alive(pid: int, start_time: int | None) -> bool:
    now = _proc_start_time(pid)
    if now is None or (start_time is not None and now != start_time):
        return False
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def port_in_use(port: int) -> bool:
    """True when a server could not bind 127.0.0.1:port (a listener or an outgoing connection holds it).

    SO_REUSEADDR is set like Go's listeners do, so sockets in TIME_WAIT do not count.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return True
    return False


def ephemeral_port_range() -> tuple[int, int]:
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(low), int(high)
    except (OSError, ValueError):
        return 32768, 60999


def start_process(inst: Instance, name: str, argv: list[str]) -> dict:
    inst.logs.mkdir(parents=True, exist_ok=True)
    logf = open(inst.logs / f"{name}.log", "ab")
    try:
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=logf,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            cwd=inst.dir,
            env={**os.environ, "KUBECONFIG": ""},
        )
    finally:
        logf.close()
    return {"pid": proc.pid, "start_time": _proc_start_time(proc.pid), "argv0": argv[0]}


def stop_process(entry: dict, timeout: float = 15.0) -> None:
    pid, start = entry["pid"], entry.get("start_time")
    if not process_alive(pid, start):
        _reap(pid)
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        _reap(pid)
        if not process_alive(pid, start):
            return
        time.sleep(0.1)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGKILL)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and process_alive(pid, start):
        _reap(pid)
        time.sleep(0.1)


def _reap(pid: int) -> None:
    """Collect our own exited child (when this process started it) so it does not linger as a zombie."""
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)


def log_tail(path: Path, lines: int = 25) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


# --------------------------------------------------------------------------------------------------
# Health checks


def _https_ok(
    url: str, cafile: Path | None = None, cert: tuple[Path, Path] | None = None, timeout: float = 5.0
) -> bool:
    if cafile:
        ctx = ssl.create_default_context(cafile=str(cafile))
    else:
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    if cert:
        ctx.load_cert_chain(str(cert[0]), str(cert[1]))
    try:
        with urllib.request.urlopen(url, context=ctx, timeout=timeout) as resp:
            return resp.status == 200
    except (urllib.error.URLError, OSError, ssl.SSLError):
        return False


def _http_ok(url: str, timeout: float = 2.0) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return resp.status == 200
    except (urllib.error.URLError, OSError):
        return False


def health_checks(inst: Instance) -> dict[str, Callable[[], bool]]:
    pki = inst.pki
    return {
        "etcd": lambda: _https_ok(
            f"https://127.0.0.1:{inst.etcd_client_port}/health",
            pki / "ca.crt",
            (pki / "apiserver-etcd-client.crt", pki / "apiserver-etcd-client.key"),
        ),
        "kube-apiserver": lambda: _https_ok(
            f"{inst.server}/readyz", pki / "ca.crt", (pki / "admin.crt", pki / "admin.key")
        ),
        "kube-controller-manager": lambda: _https_ok(f"https://127.0.0.1:{inst.kcm_port}/healthz"),
        "kube-scheduler": lambda: _https_ok(f"https://127.0.0.1:{inst.scheduler_port}/healthz"),
        "kwok": lambda: _http_ok(f"http://127.0.0.1:{inst.kwok_port}/healthz"),
    }


def wait_for(
    what: str, check: Callable[[], bool], timeout: float, alive: Callable[[], str | None] | None = None
) -> None:
    """Poll `check` until it passes; fail early when `alive` reports a dead process."""
    deadline = time.monotonic() + timeout
    delay = 0.05
    while True:
        if check():
            return
        if alive:
            dead = alive()
            if dead:
                raise KubeApiError(f"{dead} exited while waiting for {what}")
        if time.monotonic() > deadline:
            raise KubeApiError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(delay)
        delay = min(delay * 1.5, 0.5)


# --------------------------------------------------------------------------------------------------
# State


def load_state(inst: Instance) -> dict | None:
    try:
        return json.loads(inst.state_file.read_text())
    except (OSError, ValueError):
        return None


def save_state(inst: Instance, state: dict) -> None:
    tmp = inst.state_file.with_suffix(".tmp")
    tmp.write_text(json.dumps(state, indent=2, sort_keys=True))
    tmp.replace(inst.state_file)


@contextlib.contextmanager
def instance_lock(inst: Instance):
    """Serialise up/down of one instance across processes (parallel pytest sessions, xdist workers)."""
    inst.state_root.mkdir(parents=True, exist_ok=True)
    with open(inst.lock_file, "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def dead_processes(state: dict) -> list[str]:
    return [
        name
        for name, entry in state.get("processes", {}).items()
        if not process_alive(entry["pid"], entry.get("start_time"))
    ]


def is_healthy(inst: Instance, state: dict | None = None, patience: float = 0.0) -> bool:
    """Every process is alive and the apiserver answers /readyz (retried for `patience` seconds, so a
    busy host does not make a shared instance look dead and get restarted under other sessions)."""
    state = state if state is not None else load_state(inst)
    if not state or set(state.get("processes", {})) != set(START_ORDER):
        return False
    if dead_processes(state):
        return False
    check = health_checks(inst)["kube-apiserver"]
    try:
        wait_for("kube-apiserver /readyz", check, patience, alive=lambda: ", ".join(dead_processes(state)) or None)
    except KubeApiError:
        return False
    return True


# --------------------------------------------------------------------------------------------------
# Kubernetes API
#
# Starting the instance talks to the API through a tiny keep-alive HTTPS client instead of the
# kubernetes package: importing that package costs 1-3 s on a busy 2-core host (a large part of a 3-node
# start), and it validates every body through pydantic models, which made creating nodes about 25%
# slower (200 nodes: 3.1 s against 2.4 s). Tests use the real kubernetes client (api_client()).


def api_client(kubeconfig: Path | str):
    """A kubernetes.client.ApiClient for the given kubeconfig."""
    from kubernetes import config

    return config.new_client_from_config(config_file=str(kubeconfig))


class Rest:
    """Minimal JSON-over-HTTPS client with client-certificate auth, one connection per thread."""

    def __init__(self, server: str, ca_file: str, cert_file: str | None = None, key_file: str | None = None):
        import threading
        import urllib.parse

        url = urllib.parse.urlsplit(server)
        self.host, self.port = url.hostname, url.port or 443
        self.ctx = ssl.create_default_context(cafile=ca_file)
        if cert_file:
            self.ctx.load_cert_chain(cert_file, key_file)
        self._local = threading.local()

    @classmethod
    def for_instance(cls, inst: Instance) -> Rest:
        pki = inst.pki
        return cls(inst.server, str(pki / "ca.crt"), str(pki / "admin.crt"), str(pki / "admin.key"))

    @classmethod
    def of(cls, client) -> Rest:
        """Accept a Rest, an Instance or a kubernetes ApiClient (its host and certificate files)."""
        if isinstance(client, Rest):
            return client
        if isinstance(client, Instance):
            return cls.for_instance(client)
        cfg = client.configuration
        return cls(cfg.host, cfg.ssl_ca_cert, cfg.cert_file, cfg.key_file)

    def request(self, method: str, path: str, body: dict | None = None, ok: Iterable[int] = (200, 201)) -> tuple:
        import http.client

        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._local.conn = http.client.HTTPSConnection(self.host, self.port, context=self.ctx, timeout=120)
        headers = {"Accept": "application/json"}
        payload = None
        if body is not None:
            payload = json.dumps(body)
            headers["Content-Type"] = "application/json"
        try:
            conn.request(method, path, payload, headers)
            resp = conn.getresponse()
            data = resp.read()
        except (OSError, http.client.HTTPException):
            self._local.conn = None  # reconnect next time
            conn.close()
            raise
        if resp.status not in set(ok):
            raise KubeApiError(f"{method} {path}: HTTP {resp.status}: {data[:300]!r}")
        return resp.status, (json.loads(data) if data else None)

    def get(self, path: str, ok: Iterable[int] = (200,)):
        return self.request("GET", path, ok=ok)

    def many(self, method: str, requests: list[tuple[str, dict | None]], ok: Iterable[int], workers: int = 16) -> None:
        """Send many requests concurrently over keep-alive connections."""
        with ThreadPoolExecutor(max_workers=workers) as pool_exec:
            list(pool_exec.map(lambda r: self.request(method, r[0], r[1], ok=ok), requests))


def list_pool_nodes(client, pool: str = "default") -> list[dict]:
    """Nodes of a kwok pool as dicts (client: Rest, Instance or kubernetes ApiClient)."""
    _, data = Rest.of(client).get(f"/api/v1/nodes?labelSelector={NODE_POOL_LABEL}%3D{pool}")
    return data["items"]


def node_ready(node: dict) -> bool:
    for cond in node.get("status", {}).get("conditions") or []:
        if cond.get("type") == "Ready":
            return cond.get("status") == "True"
    return False


def create_nodes(
    client, names: list[str], pool: str = "default", labels: dict | None = None, taints: list | None = None
) -> None:
    """Create kwok nodes (an existing node of the same name is left as it is)."""
    bodies = [("/api/v1/nodes", node_manifest(name, pool, labels, taints)) for name in names]
    Rest.of(client).many("POST", bodies, ok=(200, 201, 409))


def delete_nodes(client, names: list[str]) -> None:
    Rest.of(client).many("DELETE", [(f"/api/v1/nodes/{name}", None) for name in names], ok=(200, 202, 404))


def scale_nodes(inst: Instance, client, wanted: int, allow_shrink: bool = True) -> list[str]:
    """Make the default pool exactly kwok-node-0..wanted-1 (or at least that many when not shrinking)."""
    existing = [n["metadata"]["name"] for n in list_pool_nodes(client)]
    create, delete = plan_node_scaling(existing, wanted)
    if create:
        log(f"creating {len(create)} kwok node(s)")
        create_nodes(client, create)
    if delete and allow_shrink:
        log(f"deleting {len(delete)} kwok node(s)")
        delete_nodes(client, delete)
    return sorted({*existing, *create} - (set(delete) if allow_shrink else set()), key=lambda n: node_index(n) or 0)


def wait_nodes_ready(inst: Instance, client, names: list[str], timeout: float) -> None:
    wanted = set(names)

    def ready() -> bool:
        nodes = list_pool_nodes(client)
        return wanted <= {n["metadata"]["name"] for n in nodes if node_ready(n)}

    state = load_state(inst) or {}
    wait_for(
        f"{len(wanted)} Ready kwok node(s)",
        ready,
        timeout,
        alive=lambda: ", ".join(dead_processes(state)) or None,
    )


def wait_default_service_account(client, timeout: float, alive: Callable[[], str | None]) -> None:
    """The namespace `default` has its ServiceAccount: kcm's controllers are working, pods can be created."""
    rest = Rest.of(client)

    def has_sa() -> bool:
        status, _ = rest.get("/api/v1/namespaces/default/serviceaccounts/default", ok=(200, 404))
        return status == 200

    wait_for("the default ServiceAccount (controller-manager)", has_sa, timeout, alive)


# --------------------------------------------------------------------------------------------------
# Lifecycle


def teardown(inst: Instance, state: dict | None = None) -> list[str]:
    """Stop every recorded process (reverse start order) and remove the instance directory."""
    state = state if state is not None else load_state(inst)
    stopped = []
    if state:
        procs = state.get("processes", {})
        for name in reversed(START_ORDER):
            if name in procs:
                stop_process(procs[name])
                stopped.append(name)
    # Processes of this instance that the state file does not know (state lost, killed mid-start).
    for pid in orphan_pids(inst):
        stop_process({"pid": pid, "start_time": _proc_start_time(pid)})
        stopped.append(f"orphan pid {pid}")
    if inst.dir.exists():
        shutil.rmtree(inst.dir, ignore_errors=True)
    return stopped


def orphan_pids(inst: Instance) -> list[int]:
    """Pids of processes whose command line points into this instance's directory."""
    marker = f"{inst.dir}/".encode()
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes()
        except OSError:
            continue
        if marker in cmdline and process_alive(int(proc.name), None):
            found.append(int(proc.name))
    return found


def _keep_failed_logs(inst: Instance) -> Path | None:
    if not inst.logs.exists():
        return None
    shutil.rmtree(inst.failed_logs_dir, ignore_errors=True)
    shutil.copytree(inst.logs, inst.failed_logs_dir)
    return inst.failed_logs_dir


def start_fresh(
    inst: Instance, nodes: int, timeout: float = 120.0, cache: Path | None = None, kwok_stages: Path | None = None
) -> dict:
    binaries = find_binaries(cache)
    busy = {name: port for name, port in inst.all_ports().items() if port_in_use(port)}
    if busy:
        raise KubeApiError(
            f"ports already in use on 127.0.0.1: {busy}; another local API or a real cluster is running "
            f"(stop it with `python tools/kube_api.py down` if it is ours)"
        )
    low, high = ephemeral_port_range()
    ephemeral = sorted(p for p in inst.all_ports().values() if low <= p <= high)
    if ephemeral:
        log(
            f"warning: ports {ephemeral} are in the kernel's range for outgoing connections ({low}-{high}) "
            f"and may be taken at any moment; use a --port-offset that keeps every port below {low}"
        )
    if inst.dir.exists():
        shutil.rmtree(inst.dir)
    inst.dir.mkdir(parents=True)
    os.chmod(inst.dir, 0o700)
    state: dict = {
        "name": inst.name,
        "server": inst.server,
        "kubeconfig": str(inst.admin_kubeconfig),
        "ports": inst.all_ports(),
        "binaries": {k: str(v) for k, v in binaries.items()},
        "processes": {},
        "nodes": nodes,
        "started_at": time.time(),
    }
    t0 = time.monotonic()
    try:
        generate_pki(inst.pki)
        write_component_kubeconfigs(inst)
        (inst.dir / "kube-scheduler.yaml").write_text(yaml.safe_dump(scheduler_config(inst)))
        checks = health_checks(inst)

        def alive() -> str | None:
            return ", ".join(dead_processes(state)) or None

        def launch(name: str) -> None:
            if name == "kwok" and kwok_stages:
                argv = kwok_args(inst, binaries[name], kwok_stages)
            else:
                argv = COMMANDS[name](inst, binaries[name])
            state["processes"][name] = start_process(inst, name, argv)
            save_state(inst, state)

        launch("etcd")
        wait_for("etcd", checks["etcd"], 30, alive)
        launch("kube-apiserver")
        wait_for("kube-apiserver /readyz", checks["kube-apiserver"], timeout, alive)
        for name in ("kube-controller-manager", "kube-scheduler", "kwok"):
            launch(name)
        for name in ("kube-controller-manager", "kube-scheduler", "kwok"):
            wait_for(f"{name} /healthz", checks[name], 60, alive)
        log(f"control plane up in {time.monotonic() - t0:.1f}s")
        client = Rest.for_instance(inst)
        names = scale_nodes(inst, client, nodes)
        log(f"nodes created at {time.monotonic() - t0:.1f}s")
        wait_nodes_ready(inst, client, names, timeout=max(60.0, nodes * 0.2))
        log(f"nodes Ready at {time.monotonic() - t0:.1f}s")
        wait_default_service_account(client, 60, alive)
        state["ready_seconds"] = round(time.monotonic() - t0, 2)
        save_state(inst, state)
        shutil.rmtree(inst.failed_logs_dir, ignore_errors=True)
        log(f"ready in {state['ready_seconds']}s with {len(names)} node(s)")
        return state
    except KubeApiError as e:
        tails = "".join(
            f"\n--- last lines of {name}.log:\n{log_tail(inst.logs / f'{name}.log', 15)}"
            for name in dead_processes(state)
        )
        kept = _keep_failed_logs(inst)
        teardown(inst, state)
        if kept:
            log(f"start failed; logs of this attempt kept in {kept}")
        raise KubeApiError(f"{e}{tails}") from None
    except BaseException:
        kept = _keep_failed_logs(inst)
        teardown(inst, state)
        if kept:
            log(f"start failed; logs of this attempt kept in {kept}")
        raise


def up(
    inst: Instance = DEFAULT,
    nodes: int = 3,
    allow_shrink: bool = True,
    timeout: float = 120.0,
    kwok_stages: Path | None = None,
) -> dict:
    """Start the instance, or reuse a healthy one (scaling its kwok nodes to `nodes`)."""
    if nodes < 0:
        raise KubeApiError("--nodes must be >= 0")
    with instance_lock(inst):
        state = load_state(inst)
        if state and is_healthy(inst, state, patience=45):
            t0 = time.monotonic()
            client = Rest.for_instance(inst)
            names = scale_nodes(inst, client, nodes, allow_shrink=allow_shrink)
            wait_nodes_ready(inst, client, names, timeout=max(60.0, nodes * 0.2))
            state["nodes"] = len(names)
            save_state(inst, state)
            log(f"reusing the running instance ({len(names)} node(s), checked in {time.monotonic() - t0:.1f}s)")
            return state
        if state or inst.dir.exists():
            log("found a stale or unhealthy instance: cleaning it up")
            teardown(inst, state)
        return start_fresh(inst, nodes, timeout=timeout, kwok_stages=kwok_stages)


def down(inst: Instance = DEFAULT) -> list[str]:
    with instance_lock(inst):
        return teardown(inst)


def status(inst: Instance = DEFAULT) -> dict:
    state = load_state(inst)
    if not state:
        return {"running": False, "dir": str(inst.dir)}
    procs = {}
    for name, entry in state.get("processes", {}).items():
        alive = process_alive(entry["pid"], entry.get("start_time"))
        procs[name] = {
            "pid": entry["pid"],
            "alive": alive,
            "rss_mib": round(rss_kib(entry["pid"]) / 1024, 1) if alive else 0,
        }
    healthy = is_healthy(inst, state, patience=5)
    return {
        "running": True,
        "healthy": healthy,
        "server": state.get("server"),
        "kubeconfig": state.get("kubeconfig"),
        "nodes": state.get("nodes"),
        "processes": procs,
        "rss_total_mib": round(sum(p["rss_mib"] for p in procs.values()), 1),
    }


def rss_kib(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def env_line(inst: Instance = DEFAULT) -> str:
    return f"export KUBECONFIG={inst.admin_kubeconfig}"


# --------------------------------------------------------------------------------------------------
# CLI


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="kube_api.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--instance", default=os.environ.get("ANVIL_KUBE_API_INSTANCE", "default"))
    parser.add_argument("--port-offset", type=int, default=int(os.environ.get("ANVIL_KUBE_API_PORT_OFFSET", "0")))
    sub = parser.add_subparsers(dest="cmd", required=True)
    p_up = sub.add_parser("up", help="start (or reuse) the local API")
    p_up.add_argument("--nodes", type=int, default=int(os.environ.get("ANVIL_KUBE_API_NODES", "3")))
    p_up.add_argument("--timeout", type=float, default=120.0)
    sub.add_parser("down", help="stop it and remove its state")
    sub.add_parser("status", help="print health as JSON; exit 1 when not healthy")
    sub.add_parser("env", help="print `export KUBECONFIG=...`")
    sub.add_parser("check-binaries", help="exit 0 when every binary is built")
    p_user = sub.add_parser("user", help="mint a limited user's kubeconfig and print its path")
    p_user.add_argument("--name", required=True)
    p_user.add_argument("--group", action="append", default=[])
    args = parser.parse_args(argv)
    inst = Instance(name=args.instance, port_offset=args.port_offset)

    try:
        if args.cmd == "up":
            up(inst, args.nodes, timeout=args.timeout)
            print(env_line(inst))
        elif args.cmd == "down":
            stopped = down(inst)
            log(f"stopped {', '.join(stopped) if stopped else 'nothing (not running)'}; removed {inst.dir}")
        elif args.cmd == "status":
            st = status(inst)
            print(json.dumps(st, indent=2))
            return 0 if st.get("healthy") else 1
        elif args.cmd == "env":
            print(env_line(inst))
        elif args.cmd == "check-binaries":
            for name, path in find_binaries().items():
                print(f"{name}: {path}")
        elif args.cmd == "user":
            print(mint_user(inst, args.name, args.group))
    except KubeApiError as e:
        log(f"ERROR: {e}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
