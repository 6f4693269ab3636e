# -*- coding: utf-8 -*-
# Copyright: anvil.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Filters for playbooks/certificates.yml (logic in module_utils/certificates)."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

# This file provides several filters, so each one is documented in its own sidecar file,
# plugins/filter/<filter name>.yml: ansible-doc reads a sidecar only when the Python file has
# no DOCUMENTATION of its own.

from ansible.errors import AnsibleFilterError
from ansible_collections.anvil.cluster.plugins.module_utils.certificates import (
    CertificateError,
    host_report,
    restarts,
    stale_containers,
)


def certificates_report(
    kubeadm_output,
    host,
    threshold_days=30,
    *,
    kubelet_pem=None,
    kubelet_config=None,
    force=False,
    reload=True,
    now=None,
):
    try:
        return host_report(
            str(host),
            threshold_days,
            kubeadm_output=kubeadm_output or None,
            kubelet_pem=kubelet_pem or None,
            kubelet_config=kubelet_config,
            force=bool(force),
            reload=bool(reload),
            now=now,
        )
    except CertificateError as exc:
        raise AnsibleFilterError("certificates_report: %s: %s" % (host, exc)) from None


def certificates_restarts(renewed, reload=True, stale=None):
    try:
        return restarts(list(renewed or []), bool(reload), list(stale or []))
    except CertificateError as exc:
        raise AnsibleFilterError("certificates_restarts: %s" % exc) from None


def certificates_stale_containers(crictl_ps, since):
    try:
        return stale_containers(crictl_ps, since)
    except (CertificateError, TypeError, ValueError) as exc:
        raise AnsibleFilterError("certificates_stale_containers: %s" % exc) from None


class FilterModule(object):
    def filters(self):
        return {
            "certificates_report": certificates_report,
            "certificates_restarts": certificates_restarts,
            "certificates_stale_containers": certificates_stale_containers,
        }
