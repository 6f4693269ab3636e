# -*- coding: utf-8 -*-
# Copyright: anvil.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Filters for upgrade.yml (logic in module_utils/upgrade)."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

# This file provides several filters, so each one is documented in its own sidecar file,
# plugins/filter/<filter name>.yml: ansible-doc reads a sidecar only when the Python file has
# no DOCUMENTATION of its own.

from ansible_collections.anvil.cluster.plugins.module_utils.upgrade import plan_lines, preflight


def upgrade_preflight(target, held, server_version, nodes):
    return preflight(target, list(held or []), server_version, list(nodes or []))


def upgrade_plan_lines(result):
    return plan_lines(dict(result))


class FilterModule(object):
    def filters(self):
        return {
            "upgrade_preflight": upgrade_preflight,
            "upgrade_plan_lines": upgrade_plan_lines,
        }
