# -*- coding: utf-8 -*-
# Copyright: anvil.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The Kubernetes releases of the versions manifest (logic in module_utils/kubernetes_releases)."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

# This file provides several filters, so each one is documented in its own sidecar file,
# plugins/filter/<filter name>.yml: ansible-doc reads a sidecar only when the Python file has
# no DOCUMENTATION of its own.

from ansible.errors import AnsibleFilterError
from ansible_collections.anvil.cluster.plugins.module_utils.kubernetes_releases import (
    ReleaseError,
    kubernetes_release,
    kubernetes_versions,
)


def _kubernetes_release(versions, version=None):
    try:
        return kubernetes_release(dict(versions or {}), version or None)
    except ReleaseError as exc:
        raise AnsibleFilterError("kubernetes_release: %s" % exc) from exc


def _kubernetes_versions(versions):
    try:
        return kubernetes_versions(dict(versions or {}))
    except ReleaseError as exc:
        raise AnsibleFilterError("kubernetes_versions: %s" % exc) from exc


class FilterModule(object):
    def filters(self):
        return {
            "kubernetes_release": _kubernetes_release,
            "kubernetes_versions": _kubernetes_versions,
        }
