# -*- coding: utf-8 -*-
# Copyright: anvil.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Filters that judge preflight facts on the controller (logic in module_utils/preflight_checks)."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
name: preflight_evaluate
short_description: Judge gathered preflight facts and return every problem
version_added: 0.1.0
description:
  - Runs every preflight check not named in O(skip) over the facts of all hosts and returns a
    dictionary with C(problems), C(warnings), C(checks) (names run) and C(skipped).
  - Also provides C(preflight_format), which turns problems into one line each.
positional: cluster, skip
options:
  _input:
    description: Inventory host name to a dictionary with C(facts) (from M(anvil.cluster.preflight_facts)),
      C(unreachable), C(error) and C(node_ip).
    type: dict
    required: true
  cluster:
    description: Cluster settings (names, CIDRs, CNI, groups, versions, thresholds).
    type: dict
  skip:
    description: Names of checks to skip.
    type: list
    elements: str
"""

EXAMPLES = r"""
- name: Judge the hosts
  ansible.builtin.set_fact:
    report: "{{ per_host | anvil.cluster.preflight_evaluate(cluster_settings, ['time_sync']) }}"
"""

RETURN = r"""
_value:
  description: The report (problems, warnings, checks, skipped).
  type: dict
"""

from ansible_collections.anvil.cluster.plugins.module_utils.preflight_checks import evaluate, format_problems


def preflight_evaluate(hosts, cluster=None, skip=None):
    return evaluate(hosts, cluster or {}, skip or [])


def preflight_format(problems):
    return format_problems(problems or [])


class FilterModule(object):
    def filters(self):
        return {"preflight_evaluate": preflight_evaluate, "preflight_format": preflight_format}
