# -*- coding: utf-8 -*-
# Copyright: anvil.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Filters for restore.yml (logic in module_utils/etcd_backup)."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

# This file provides several filters, so each one is documented in its own sidecar file,
# plugins/filter/<filter name>.yml: ansible-doc reads a sidecar only when the Python file has
# no DOCUMENTATION of its own.

from ansible.errors import AnsibleFilterError
from ansible_collections.anvil.cluster.plugins.module_utils.etcd_backup import (
    parse_snapshot_name,
    restore_members,
    snapshot_problems,
)


def etcd_snapshot_name(name):
    return parse_snapshot_name(name)


def etcd_restore_members(manifests):
    try:
        return restore_members(dict(manifests or {}))
    except ValueError as exc:
        raise AnsibleFilterError("etcd_restore_members: %s" % exc) from exc


def etcd_snapshot_problems(meta, name, cluster, sha256, ca_sha256s):
    return snapshot_problems(name, meta, cluster, sha256, dict(ca_sha256s or {}))


class FilterModule(object):
    def filters(self):
        return {
            "etcd_snapshot_name": etcd_snapshot_name,
            "etcd_restore_members": etcd_restore_members,
            "etcd_snapshot_problems": etcd_snapshot_problems,
        }
