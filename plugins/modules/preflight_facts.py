#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: anvil.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: preflight_facts
short_description: Read-only facts about a host for the cluster preflight checks
version_added: 0.1.0
description:
  - Collects what the preflight checks need to judge a host before anything is changed on it
    (operating system, CPU and memory, swap, kernel features, listening ports and their owners,
    machine id, addresses, clock, reachability of the artifact mirror, existing Kubernetes parts).
  - Never changes the host (no modprobe, no sysctl writes), so it also runs in check mode.
  - The judgement itself is made on the controller by the P(anvil.cluster.preflight_evaluate#filter) filter.
author:
  - anvil.cluster maintainers (@anvil-cluster)
options:
  mirror_url:
    description: Base URL of the artifact mirror (files and apt repository); probed with an HTTP GET.
    type: str
  registry:
    description: Registry mirror as C(host:port); its C(/v2/) endpoint is probed.
    type: str
  registry_scheme:
    description: Scheme used for the registry probe.
    type: str
    choices: [http, https]
    default: http
  registries:
    description:
      - Registries the node pulls from with verified TLS (C(anvil_registries)). Each is probed at C(/v2/) over
        HTTPS against its own CA, without credentials (it must answer, 401 included) and, when a user is given,
        with them (they must be accepted).
      - The CA is written to the module's temporary directory for the probe, nothing else on the host.
    type: list
    elements: dict
    default: []
    suboptions:
      host:
        description: The registry as C(host:port).
        type: str
        required: true
      ca:
        description: PEM text of the CA of the registry's certificate.
        type: str
        required: true
      username:
        description: User to try.
        type: str
      password:
        description: Its password.
        type: str
  validate_certs:
    description: Verify TLS certificates of the mirror and registry.
    type: bool
    default: true
  kubelet_path:
    description: Where an installed kubelet would be, to read its version.
    type: path
    default: /usr/local/bin/kubelet
  timeout:
    description: Seconds to wait for each network probe.
    type: int
    default: 5
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
  - anvil.cluster.host_probe
"""

EXAMPLES = r"""
- name: Gather preflight facts
  anvil.cluster.preflight_facts:
    mirror_url: http://198.18.0.1:8080
    registry: 198.18.0.1:5000
  register: preflight_raw
"""

RETURN = r"""
preflight:
  description: Raw facts about the host.
  returned: always
  type: dict
  contains:
    hostname:
      description: The host's kernel host name.
      type: str
    machine_id:
      description: Content of /etc/machine-id.
      type: str
    os:
      description: Parsed /etc/os-release.
      type: dict
    cpus:
      description: Online CPUs.
      type: int
    memory_mb:
      description: Total memory in MiB.
      type: int
    swap_mb:
      description: Active swap in MiB.
      type: int
    cgroup_version:
      description: 1 or 2.
      type: int
    kernel_features:
      description: Feature name to active, builtin, module, missing or unknown.
      type: dict
    listening_ports:
      description: TCP port (as a string) to the names of the processes listening on it.
      type: dict
    udp_ports:
      description: Bound UDP port (as a string) to the names of the processes holding it (empty for a kernel
        socket such as a VXLAN device's).
      type: dict
    cni_configs:
      description: File names in /etc/cni/net.d (tell which CNI a joined node runs).
      type: list
      elements: str
    ipv4:
      description: IPv4 addresses with interface and prefix length.
      type: list
      elements: dict
    time_epoch:
      description: The host clock (seconds since the epoch) when probed.
      type: float
    mirror:
      description: Result of the mirror probe (ok, url, error).
      type: dict
    registry:
      description: Result of the registry probe (ok, url, error).
      type: dict
    registries:
      description: Result of each probe of O(registries) (host, url, ok, error, auth true/false/null).
      type: list
      elements: dict
    kubelet_version:
      description: Version of an installed kubelet, or null.
      type: str
    joined:
      description: Whether the host already belongs to a cluster (/etc/kubernetes/kubelet.conf exists).
      type: bool
"""

import os
import time

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.urls import open_url
from ansible_collections.anvil.cluster.plugins.module_utils import preflight_facts as pf
from ansible_collections.anvil.cluster.plugins.module_utils.host_probe import feature_states, kernel_probe, read_text


def _probe(url, module):
    result = {"url": url, "ok": False, "error": None}
    try:
        response = open_url(
            url,
            method="GET",
            timeout=module.params["timeout"],
            validate_certs=module.params["validate_certs"],
        )
        result["ok"] = True
        result["status"] = response.getcode()
    except Exception as exc:  # pylint: disable=broad-except
        code = getattr(exc, "code", None)
        if code == 401:  # a registry that wants authentication is reachable
            result["ok"] = True
            result["status"] = code
        else:
            result["error"] = str(exc)
    return result


def _probe_registry(registry, module):
    """Reach a registry over TLS verified against its CA, then try the credentials (never returned)."""
    url = "https://%s/v2/" % registry["host"]
    result = {"host": registry["host"], "url": url, "ok": False, "error": None, "auth": None}
    ca_path = os.path.join(module.tmpdir, "registry-ca-%s.crt" % registry["host"].replace(":", "_").replace("/", "_"))
    with open(ca_path, "w") as handle:
        handle.write(registry["ca"])

    def get(**auth):
        try:
            response = open_url(url, method="GET", timeout=module.params["timeout"], ca_path=ca_path, **auth)
            return response.getcode(), None
        except Exception as exc:  # pylint: disable=broad-except
            code = getattr(exc, "code", None)
            return code, None if code else str(exc)

    code, error = get()
    if code in (200, 401):
        result["ok"] = True
    else:
        result["error"] = error or "HTTP %s" % code
        return result
    if registry.get("username"):
        code, error = get(
            url_username=registry["username"], url_password=registry.get("password") or "", force_basic_auth=True
        )
        result["auth"] = code == 200
        if code != 200:
            result["error"] = error or "HTTP %s with the credentials" % code
    return result


def _read(path):
    return read_text(path, "")


def main():
    module = AnsibleModule(
        argument_spec={
            "mirror_url": {"type": "str"},
            "registry": {"type": "str"},
            "registry_scheme": {"type": "str", "default": "http", "choices": ["http", "https"]},
            "registries": {
                "type": "list",
                "elements": "dict",
                "default": [],
                "options": {
                    "host": {"type": "str", "required": True},
                    "ca": {"type": "str", "required": True},
                    "username": {"type": "str"},
                    "password": {"type": "str", "no_log": True},
                },
            },
            "validate_certs": {"type": "bool", "default": True},
            "kubelet_path": {"type": "path", "default": "/usr/local/bin/kubelet"},
            "timeout": {"type": "int", "default": 5},
        },
        supports_check_mode=True,
    )
    meminfo = pf.parse_meminfo(_read("/proc/meminfo"))
    probe = kernel_probe()
    ip_rc, ip_out, _err = module.run_command(["ip", "-o", "-4", "addr", "show"])
    facts = {
        "hostname": pf.host_identity()["hostname"],
        "machine_id": _read("/etc/machine-id").strip(),
        "os": pf.parse_os_release(_read("/etc/os-release")),
        "cpus": os.sysconf("SC_NPROCESSORS_ONLN"),
        "memory_mb": meminfo.get("MemTotal", 0) // 1024,
        "swap_mb": (meminfo.get("SwapTotal", 0) - meminfo.get("SwapFree", 0)) // 1024
        if meminfo.get("SwapTotal", 0)
        else 0,
        "swap_total_mb": meminfo.get("SwapTotal", 0) // 1024,
        "kernel_release": os.uname()[2],
        "cgroup_version": 2 if os.path.exists("/sys/fs/cgroup/cgroup.controllers") else 1,
        "kernel": probe,
        "kernel_features": feature_states(probe),
        "listening_ports": {str(k): v for k, v in pf.listening_ports().items()},
        "udp_ports": {str(k): v for k, v in pf.listening_ports(protocol="udp").items()},
        "cni_configs": pf.cni_configs(),
        "ipv4": pf.parse_ipv4_addresses(ip_out) if ip_rc == 0 else [],
        "nameservers": pf.parse_resolv_conf(_read("/etc/resolv.conf")),
        "time_epoch": time.time(),
        "mirror": None,
        "registry": None,
        "registries": [_probe_registry(registry, module) for registry in module.params["registries"]],
        "kubelet_version": None,
        "joined": os.path.exists("/etc/kubernetes/kubelet.conf"),
    }
    if module.params["mirror_url"]:
        facts["mirror"] = _probe(module.params["mirror_url"].rstrip("/") + "/", module)
    if module.params["registry"]:
        facts["registry"] = _probe(
            "%s://%s/v2/" % (module.params["registry_scheme"], module.params["registry"]), module
        )
    kubelet = module.params["kubelet_path"]
    if os.path.exists(kubelet):
        rc, out, _err = module.run_command([kubelet, "--version"])
        if rc == 0 and out.split():
            facts["kubelet_version"] = out.split()[-1]
    module.exit_json(changed=False, preflight=facts)


if __name__ == "__main__":
    main()
