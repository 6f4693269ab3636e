# -*- coding: utf-8 -*-
# Copyright: anvil.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Filters that judge preflight facts on the controller (logic in module_utils/preflight_checks)."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

# This file provides several filters, so each one is documented in its own sidecar file,
# plugins/filter/<filter name>.yml: ansible-doc reads a sidecar only when the Python file has
# no DOCUMENTATION of its own.

from ansible_collections.anvil.cluster.plugins.module_utils.preflight_checks import evaluate, format_problems


def preflight_evaluate(hosts, cluster=None, skip=None):
    return evaluate(hosts, cluster or {}, skip or [])


def preflight_format(problems):
    return format_problems(problems or [])


class FilterModule(object):
    def filters(self):
        return {"preflight_evaluate": preflight_evaluate, "preflight_format": preflight_format}
