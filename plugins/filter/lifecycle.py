# -*- coding: utf-8 -*-
# Copyright: anvil.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Filters for the node lifecycle playbooks (logic in module_utils/lifecycle)."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
name: lifecycle_removal_plan
short_description: Decide whether control planes may leave without losing etcd quorum
version_added: 0.1.0
description:
  - Returns C(ok), C(problems) (why a removal is refused), C(warnings) and C(steps) (etcd members to
    remove, in order) for removing the control planes in O(removing).
  - Also provides C(lifecycle_etcd_members) (normalise an etcd member list), C(lifecycle_etcd_health) (members with
    their health from /health probe results), C(lifecycle_classify)
    (new hosts versus hosts already in the cluster), C(lifecycle_control_planes) (control-plane node
    names from Node objects) and C(lifecycle_reset_plan) (what a reset removes from a host).
positional: members, removing
options:
  _input:
    description: Names of the cluster's control-plane nodes.
    type: list
    elements: str
    required: true
  members:
    description: etcd members (C(name), C(id), C(healthy), C(is_learner)).
    type: list
    elements: dict
    required: true
  removing:
    description: Control-plane node names to remove, in order.
    type: list
    elements: str
    required: true
"""

EXAMPLES = r"""
- name: Decide
  ansible.builtin.set_fact:
    plan: "{{ ['cp1', 'cp2', 'cp3'] | anvil.cluster.lifecycle_removal_plan(members, ['cp1']) }}"
"""

RETURN = r"""
_value:
  description: The plan (ok, problems, warnings, steps).
  type: dict
"""

from ansible_collections.anvil.cluster.plugins.module_utils.lifecycle import (
    classify_hosts,
    control_plane_nodes,
    members_with_health,
    parse_etcd_members,
    plan_control_plane_removal,
    reset_plan,
)


def lifecycle_removal_plan(control_planes, members, removing):
    return plan_control_plane_removal(list(control_planes or []), list(members or []), list(removing or []))


def lifecycle_etcd_members(member_list):
    return parse_etcd_members(member_list)


def lifecycle_etcd_health(probe_results):
    return members_with_health(list(probe_results or []))


def lifecycle_classify(requested, node_names, cluster_nodes):
    return classify_hosts(list(requested or []), dict(node_names or {}), list(cluster_nodes or []))


def lifecycle_control_planes(cluster_nodes):
    return control_plane_nodes(list(cluster_nodes or []))


def lifecycle_reset_plan(observed):
    return reset_plan(dict(observed or {}))


class FilterModule(object):
    def filters(self):
        return {
            "lifecycle_removal_plan": lifecycle_removal_plan,
            "lifecycle_etcd_members": lifecycle_etcd_members,
            "lifecycle_etcd_health": lifecycle_etcd_health,
            "lifecycle_classify": lifecycle_classify,
            "lifecycle_control_planes": lifecycle_control_planes,
            "lifecycle_reset_plan": lifecycle_reset_plan,
        }
