# -*- coding: utf-8 -*-
# Copyright: anvil.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Filters for the node lifecycle playbooks (logic in module_utils/lifecycle)."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

# This file provides several filters, so each one is documented in its own sidecar file,
# plugins/filter/<filter name>.yml: ansible-doc reads a sidecar only when the Python file has
# no DOCUMENTATION of its own.

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
