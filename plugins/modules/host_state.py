#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: anvil.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: host_state
short_description: Read a host's files, packages, services, kernel parameters and modules in one pass, against their wanted state (read-only)
version_added: 0.1.0
description:
  - Reads the type, mode, owner, group and (for files with O(paths[].sha256)) the SHA-256 digest of every
    listed path and returns those that differ from the wanted state.
  - The collection's roles run it once per role and host (the host-state pass, role C(anvil.cluster.host_state))
    and change only what it reports as different, so that a re-run on a host where nothing differs costs
    one round trip instead of one per file, package, service or parameter.
  - In the same round trip it can report which packages are not installed (O(packages)), the state of
    systemd units (O(services)), which kernel parameters differ (O(sysctls)), which kernel modules are
    present (O(kernel_modules)) and the text of small files (O(read)), so that a role's package,
    service, sysctl and modprobe tasks run only where something differs.
  - Never changes the host; runs the same in check mode.
author:
  - anvil.cluster maintainers (@anvil-cluster)
options:
  paths:
    description: The paths and their wanted state.
    type: list
    elements: dict
    default: []
    suboptions:
      path:
        description: Absolute path.
        type: path
        required: true
      state:
        description: What the path must be.
        type: str
        choices: [file, directory]
        default: file
      mode:
        description: Wanted permission bits as an octal string, for example C('0755'). Not compared when unset.
        type: str
      owner:
        description: Wanted owner name. Not compared when unset.
        type: str
      group:
        description: Wanted group name. Not compared when unset.
        type: str
      sha256:
        description: Wanted SHA-256 digest of a file's content (64 hex digits). Not compared when unset.
        type: str
  packages:
    description:
      - Package names that must be installed. Read from the dpkg database on Debian-family hosts and
        with C(rpm -q) elsewhere; a C(:arch) or C(=version) suffix is ignored.
    type: list
    elements: str
    default: []
  services:
    description: systemd unit names whose load, active and unit-file states are returned.
    type: list
    elements: str
    default: []
  sysctls:
    description: Kernel parameters and their wanted live values (whitespace is normalised before comparing).
    type: dict
    default: {}
  kernel_modules:
    description:
      - Kernel modules (or kernel feature names such as C(netfilter_nat)) whose state is returned, in the
        vocabulary the preflight checks use too.
    type: list
    elements: str
    default: []
  read:
    description: Absolute paths of small text files whose content is returned (at most 1 MiB each).
    type: list
    elements: path
    default: []
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
  - anvil.cluster.host_probe
"""

EXAMPLES = r"""
- name: Verify the installed binaries in one pass
  anvil.cluster.host_state:
    paths:
      - path: /usr/local/bin/kubelet
        sha256: 5f1c0e5b0a7d3c1e9f1c1b3d2a0e9f8c7b6a5d4c3b2a1f0e9d8c7b6a5f4e3d2c
        mode: "0755"
        owner: root
        group: root
  register: binaries

- name: Download only what is missing or different
  ansible.builtin.get_url:
    url: "http://mirror.example:8080/files/kubernetes/{{ item | basename }}"
    dest: "{{ item }}"
    mode: "0755"
  loop: "{{ binaries.mismatched }}"

- name: Read packages, services and kernel settings in the same pass
  anvil.cluster.host_state:
    packages: [containerd, runc]
    services: [containerd]
    sysctls:
      net.ipv4.ip_forward: 1
    kernel_modules: [overlay, br_netfilter]
    read: [/proc/swaps]
  register: host

- name: Install only when something is missing
  ansible.builtin.package:
    name: "{{ host.packages_missing }}"
  when: host.packages_missing | length > 0
"""

RETURN = r"""
mismatched:
  description: The paths that differ from their wanted state, in the order given.
  returned: always
  type: list
  elements: str
  sample: [/usr/local/bin/kubelet]
reasons:
  description: Why each mismatched path differs.
  returned: always
  type: dict
  sample: {"/usr/local/bin/kubelet": ["sha256 differs", "mode 0644, wanted 0755"]}
packages_missing:
  description: The names from O(packages) that are not installed, in the order given.
  returned: always
  type: list
  elements: str
  sample: [haproxy]
services:
  description: >-
    For each unit of O(services): C(load) (C(loaded), C(not-found), ...), C(active) (C(active),
    C(inactive), C(failed), ...) and C(unit_file) (C(enabled), C(disabled), C(static), ...).
  returned: always
  type: dict
  sample: {"containerd": {"load": "loaded", "active": "active", "unit_file": "enabled"}}
sysctls_differing:
  description: The parameters of O(sysctls) whose live value differs, with that value (null when unreadable).
  returned: always
  type: dict
  sample: {"net.ipv4.ip_forward": "0"}
kernel_modules:
  description: >-
    For each module of O(kernel_modules): C(active) (loaded or in use), C(builtin) (built into the kernel),
    C(module) (a module this kernel can load), C(missing), or C(unknown) (the host exposes neither a kernel
    configuration nor module lists).
  returned: always
  type: dict
  sample: {"overlay": "builtin", "br_netfilter": "active", "vxlan": "module"}
modules_loadable:
  description: Whether the kernel can load modules (it has C(/proc/modules)).
  returned: always
  type: bool
contents:
  description: The text of each file of O(read); null for a file that does not exist or cannot be read.
  returned: always
  type: dict
  sample: {"/proc/swaps": "Filename\tType\tSize\tUsed\tPriority\n"}
"""

import os

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.anvil.cluster.plugins.module_utils.host_probe import (
    SERVICE_PROPERTIES,
    differing_sysctls,
    kernel_module_states,
    missing_packages,
    parse_dpkg_status,
    parse_systemctl_show,
)
from ansible_collections.anvil.cluster.plugins.module_utils.host_state import check_paths, validate

DPKG_STATUS = "/var/lib/dpkg/status"
READ_LIMIT = 1 << 20


def read_text(path):
    try:
        with open(path, "rb") as handle:
            return handle.read(READ_LIMIT).decode("utf-8", "replace")
    except OSError:
        return None


def installed_packages(module, names):
    """{name: version} of the installed packages among names (all installed ones with dpkg)."""
    if os.path.exists(DPKG_STATUS):
        return parse_dpkg_status(read_text(DPKG_STATUS) or "")
    rpm = module.get_bin_path("rpm")
    if not rpm:
        module.fail_json(msg="Cannot tell which packages are installed: this host has neither dpkg nor rpm.")
    bases = [str(n).split("=", 1)[0].split(":", 1)[0] for n in names]
    _rc, out, _err = module.run_command([rpm, "-q", "--queryformat", "%{NAME} %{VERSION}\n", *bases])
    found = {}
    for line in out.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[0] in bases:
            found[parts[0]] = parts[1]
    return found


def service_states(module, units):
    systemctl = module.get_bin_path("systemctl")
    if not systemctl:
        return dict((u, {"load": "not-found", "active": "inactive", "unit_file": ""}) for u in units)
    rc, out, err = module.run_command([systemctl, "show", "--property=" + ",".join(SERVICE_PROPERTIES), "--", *units])
    if rc != 0:
        module.fail_json(msg="systemctl show failed (rc %d): %s" % (rc, err.strip()))
    return parse_systemctl_show(out, units)


def main():
    module = AnsibleModule(
        argument_spec=dict(
            paths=dict(
                type="list",
                elements="dict",
                default=[],
                options=dict(
                    path=dict(type="path", required=True),
                    state=dict(type="str", choices=["file", "directory"], default="file"),
                    mode=dict(type="str"),
                    owner=dict(type="str"),
                    group=dict(type="str"),
                    sha256=dict(type="str"),
                ),
            ),
            packages=dict(type="list", elements="str", default=[]),
            services=dict(type="list", elements="str", default=[]),
            sysctls=dict(type="dict", default={}),
            kernel_modules=dict(type="list", elements="str", default=[]),
            read=dict(type="list", elements="path", default=[]),
        ),
        supports_check_mode=True,
    )
    items = module.params["paths"]
    errors = validate(items)
    if errors:
        module.fail_json(msg="Fix the paths option: " + "; ".join(errors))
    bad = [p for p in module.params["read"] if not p.startswith("/")]
    if bad:
        module.fail_json(msg="Fix the read option: paths must be absolute, got %s" % ", ".join(bad))
    result = check_paths(items)
    wanted = module.params["packages"]
    result["packages_missing"] = missing_packages(wanted, installed_packages(module, wanted)) if wanted else []
    units = module.params["services"]
    result["services"] = service_states(module, units) if units else {}
    result["sysctls_differing"] = differing_sysctls(module.params["sysctls"], read_text)
    names = module.params["kernel_modules"]
    result["kernel_modules"] = kernel_module_states(names) if names else {}
    result["modules_loadable"] = os.path.exists("/proc/modules")
    result["contents"] = dict((p, read_text(p)) for p in module.params["read"])
    module.exit_json(changed=False, **result)


if __name__ == "__main__":
    main()
