# -*- coding: utf-8 -*-
# Copyright: anvil.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""KubeModule: the AnsibleModule every Kubernetes module of the collection is built on.

- Connection options are kubernetes.core's own (AUTH_ARG_SPEC, with its ``K8S_AUTH_*`` environment
  fallbacks), merged into the module's argument spec, so module_defaults and AWX credentials written
  for kubernetes.core apply unchanged (action group ``anvil.cluster.k8s``).
- Check mode is always supported; ``want_diff`` says whether to return a diff.
- ``client()`` builds the one KubeClient of the run (a missing library or a bad kubeconfig is reported
  with what to install or fix).
- ``run(func)`` is the one path from a result or any error to exit_json / fail_json: a module raises
  ModuleFailure(msg, **details) for problems it can name; an ApiError that escapes is described with
  what to check (reachability, credentials, RBAC).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import copy
import traceback

from ansible.module_utils.basic import AnsibleModule, missing_required_lib
from ansible_collections.anvil.cluster.plugins.module_utils.k8s.client import (
    IMPORT_ERROR as CLIENT_IMPORT_ERROR,
)
from ansible_collections.anvil.cluster.plugins.module_utils.k8s.client import (
    ApiError,
    KubeClient,
    describe,
)

K8S_IMPORT_ERROR = CLIENT_IMPORT_ERROR
try:
    from ansible_collections.kubernetes.core.plugins.module_utils.args_common import AUTH_ARG_SPEC
except ImportError:
    K8S_IMPORT_ERROR = K8S_IMPORT_ERROR or traceback.format_exc()
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


class ModuleFailure(Exception):
    """Ends the run with fail_json(msg=msg, **details)."""

    def __init__(self, msg, **details):
        super(ModuleFailure, self).__init__(msg)
        self.msg = msg
        self.details = details


def connection_argspec():
    """A fresh copy of the kubernetes.core connection options."""
    return copy.deepcopy(AUTH_ARG_SPEC)


class KubeModule(AnsibleModule):
    """AnsibleModule with the connection options, check mode, one client and one failure path."""

    def __init__(self, argument_spec, **kwargs):
        spec = connection_argspec()
        spec.update(argument_spec)
        kwargs.setdefault("supports_check_mode", True)
        super(KubeModule, self).__init__(argument_spec=spec, **kwargs)
        self._client = None

    @property
    def want_diff(self):
        return bool(self._diff)

    def client(self, concurrency=8):
        """The run's KubeClient (built on first use)."""
        if self._client is None:
            if K8S_IMPORT_ERROR:
                self.fail_json(
                    msg=missing_required_lib("kubernetes (Python client) and the kubernetes.core collection"),
                    exception=K8S_IMPORT_ERROR,
                )
            try:
                self._client = KubeClient.from_params(self.params, concurrency=concurrency)
            except Exception as err:  # pylint: disable=broad-except
                raise ModuleFailure(
                    "Cannot build a Kubernetes client from the connection options (kubeconfig, context, host, "
                    "api_key, ...): %s" % err
                ) from err
        return self._client

    def run(self, func, always=None, partial=None):
        """exit_json(**func()) or fail_json with the problem and what to fix.

        ``always()`` adds fields to every result (timings, request counts, a redacted invocation);
        ``partial()`` adds to a failed one what the run had done or found before it failed.
        """
        try:
            result = func()
        except ModuleFailure as failure:
            self._fail(failure.msg, failure.details, always, partial)
        except ApiError as err:
            host = self._client.host if self._client else None
            details = {"status": err.status, "reason": err.reason}
            self._fail("Kubernetes API error: %s" % describe(err, host), details, always, partial)
        fields = dict(result or {})
        fields.update(always() if always else {})
        self.exit_json(**fields)

    def _fail(self, msg, details, always, partial):
        fields = dict(partial() if partial else {})
        fields.update(details)
        fields.update(always() if always else {})
        self.fail_json(msg=msg, **fields)
