# -*- coding: utf-8 -*-
# Copyright: anvil.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The node IP of inventory hosts, from inventory data: the one place that defines its default."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
name: node_ips
short_description: The address each host uses in the cluster
version_added: 0.1.0
description:
  - Maps inventory host names to the address each uses in the cluster (kubelet C(--node-ip), API server
    advertise address, load balancer target), as a dictionary from host name to address.
  - The address is the host's C(anvil_node_ip) when the inventory sets it, else C(ansible_host), else the
    default IPv4 address from gathered facts, else the inventory name.
  - Reads only what C(hostvars) holds for each host (inventory and facts), so a play on one host can list
    every control plane's address without contacting them.
positional: hosts
options:
  _input:
    description: C(hostvars).
    type: dict
    required: true
  hosts:
    description: Inventory host names.
    type: list
    elements: str
    required: true
"""

EXAMPLES = r"""
- name: Every control plane's address
  ansible.builtin.debug:
    msg: "{{ hostvars | anvil.cluster.node_ips(groups['control_plane']) }}"
"""

RETURN = r"""
_value:
  description: Host name to address, in the order of O(hosts).
  type: dict
"""

from collections.abc import Mapping


def _get(hostvars, key, default=None):
    try:
        value = hostvars[key]
    except (KeyError, TypeError):
        return default
    # An undefined value (Ansible's Undefined types) counts as unset.
    if value is None or type(value).__name__.endswith("Undefined"):
        return default
    return value


def node_ip(hostvars, host):
    """Address of one host: anvil_node_ip, ansible_host, facts' default IPv4 address, inventory name."""
    hv = _get(hostvars, host, {})
    for key in ("anvil_node_ip", "ansible_host"):
        value = _get(hv, key)
        if value:
            return str(value)
    facts = _get(hv, "ansible_default_ipv4", {})
    address = facts.get("address") if isinstance(facts, Mapping) else None
    return str(address) if address else str(host)


def node_ips(hostvars, hosts):
    return dict((str(h), node_ip(hostvars, h)) for h in hosts)


class FilterModule(object):
    def filters(self):
        return {"node_ips": node_ips}
