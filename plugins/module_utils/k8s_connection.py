# -*- coding: utf-8 -*-
# Copyright: anvil.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Connection glue shared by the collection's Kubernetes modules.

The connection options and their K8S_AUTH_* environment fallbacks are kubernetes.core's own
(AUTH_ARG_SPEC and its client factory), so an AWX "Kubernetes" credential and module_defaults
written for kubernetes.core work unchanged. The modules then talk to the typed and dynamic
clients of the `kubernetes` package directly: they need subresources (eviction), server-side
apply and field selectors that kubernetes.core's service layer does not expose.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import copy
import traceback

K8S_IMPORT_ERROR = None
try:
    import kubernetes  # noqa: F401  pylint: disable=unused-import
    from ansible_collections.kubernetes.core.plugins.module_utils.args_common import AUTH_ARG_SPEC
    from ansible_collections.kubernetes.core.plugins.module_utils.k8s.client import get_api_client
except ImportError:
    K8S_IMPORT_ERROR = traceback.format_exc()
    AUTH_ARG_SPEC = {
        "kubeconfig": {"type": "raw", "no_log": True},
        "context": {},
        "host": {},
        "api_key": {"no_log": True},
        "username": {},
        "password": {"no_log": True},
        "validate_certs": {"type": "bool", "aliases": ["verify_ssl"]},
        "ca_cert": {"type": "path", "aliases": ["ssl_ca_cert"]},
        "client_cert": {"type": "path", "aliases": ["cert_file"]},
        "client_key": {"type": "path", "aliases": ["key_file"]},
        "proxy": {"type": "str"},
        "no_proxy": {"type": "str"},
        "proxy_headers": {"type": "dict"},
        "persist_config": {"type": "bool"},
        "impersonate_user": {},
        "impersonate_groups": {"type": "list", "elements": "str"},
    }


def connection_argspec():
    """A fresh copy of the kubernetes.core connection options, to merge into a module's spec."""
    return copy.deepcopy(AUTH_ARG_SPEC)


def require_kubernetes(module):
    """Fail with an actionable message when the Python client or kubernetes.core is missing."""
    if K8S_IMPORT_ERROR:
        module.fail_json(
            msg="This module needs the 'kubernetes' Python package (pip install kubernetes) and the "
            "kubernetes.core collection on the host that runs it.",
            exception=K8S_IMPORT_ERROR,
        )


def api_client(params):
    """Return a kubernetes.client.ApiClient built from the module's connection parameters.

    Uses kubernetes.core's factory, which applies the K8S_AUTH_* environment fallbacks and
    in-memory kubeconfig dicts exactly as kubernetes.core modules do.
    """
    auth = dict((key, params.get(key)) for key in AUTH_ARG_SPEC if params.get(key) is not None)
    k8s = get_api_client(**auth)
    return k8s.client.client


def dynamic_client(params):
    """Return a kubernetes.dynamic.DynamicClient for the same connection."""
    from kubernetes.dynamic import DynamicClient

    return DynamicClient(api_client(params))
