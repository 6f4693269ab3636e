"""node_ips: the one rule for a host's node IP (anvil_node_ip, ansible_host, facts, inventory name)."""

from __future__ import annotations

from ansible_collections.anvil.cluster.plugins.filter.node_ips import node_ips


def test_node_ips_prefers_anvil_node_ip_then_ansible_host_then_facts_then_name():
    hostvars = {
        "cp1": {"ansible_host": "198.18.0.11"},
        "cp2": {"ansible_host": "198.18.0.12", "anvil_node_ip": "10.0.0.2"},
        "w1": {"ansible_default_ipv4": {"address": "10.0.0.3"}},
        "w2": {},
    }
    assert node_ips(hostvars, ["cp1", "cp2", "w1", "w2", "gone"]) == {
        "cp1": "198.18.0.11",
        "cp2": "10.0.0.2",
        "w1": "10.0.0.3",
        "w2": "w2",
        "gone": "gone",
    }


def test_node_ips_keeps_the_order_asked():
    assert list(node_ips({}, ["b", "a"])) == ["b", "a"]
