"""The certificate timer's script (roles/certificates/templates/anvil-cert-renew.py.j2) renders to Python
that compiles, and carries its settings as the role gives them (bools and nested maps included)."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import jinja2
from ansible.plugins.filter.core import FilterModule

ROLE = Path(__file__).resolve().parents[2] / "roles" / "certificates"

VARS = {
    "ansible_managed": "managed",
    "inventory_hostname": "cp1",
    "role_path": str(ROLE),
    "certificates_threshold_days": 30,
    "certificates_timer_unit": "anvil-cert-renew",
    "certificates_kubeadm_config": "/etc/kubernetes/anvil/kubeadm-config.yaml",
    "certificates_kubeadm": "/usr/local/bin/kubeadm",
    "certificates_crictl": "/usr/local/bin/crictl",
    "certificates_kubectl": "kubectl --kubeconfig /etc/kubernetes/admin.conf",
    "certificates_kubelet_client_cert": "/var/lib/kubelet/pki/kubelet-client-current.pem",
    "certificates_kubelet_config": "/var/lib/kubelet/config.yaml",
    "certificates_etcd_endpoint": "https://127.0.0.1:2379",
    "certificates_etcd_pki_dir": "/etc/kubernetes/pki/etcd",
    "certificates_restart_timeout": 300,
    "certificates_stop_timeout": 10,
    "certificates_reload": True,
    "certificates_reload_timeout": 90,
    "certificates_served": {
        "apiserver": {"address": "127.0.0.1:6443", "file": "/etc/kubernetes/pki/apiserver.crt", "client": ""}
    },
}


def render() -> str:
    env = jinja2.Environment(undefined=jinja2.StrictUndefined, keep_trailing_newline=True)
    env.filters.update(FilterModule().filters())
    env.globals["lookup"] = lambda _plugin, path: Path(path).read_text()
    return env.from_string((ROLE / "templates" / "anvil-cert-renew.py.j2").read_text()).render(**VARS)


def test_the_script_compiles_and_reads_its_settings():
    source = render()
    tree = ast.parse(source)
    assign = next(
        node for node in tree.body if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", "") == "SETTINGS"
    )
    # Evaluated as the script does (JSON's true would be a NameError in Python).
    namespace = {"json": json}
    exec(compile(ast.Module(body=[assign], type_ignores=[]), "SETTINGS", "exec"), namespace)
    data = namespace["SETTINGS"]
    assert data["reload"] is True and data["reload_timeout"] == 90
    assert data["served"] == VARS["certificates_served"]
    assert data["kubectl"] == ["kubectl", "--kubeconfig", "/etc/kubernetes/admin.conf"]
    compile(source, "anvil-cert-renew.py", "exec")
