# -*- coding: utf-8 -*-
# Copyright: anvil.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type


class ModuleDocFragment:
    # What every Kubernetes module of the collection shares: the client layer (plugins/module_utils/k8s)
    # and the behaviour that comes with it.
    DOCUMENTATION = r"""
options: {}
requirements:
  - kubernetes >= 24.2.0 (Python client, on the host that runs the module)
  - the kubernetes.core collection (connection options and kubeconfig handling)
notes:
  - Connection options, their C(K8S_AUTH_*) environment variables and C(module_defaults) of the
    C(anvil.cluster.k8s) action group work as in kubernetes.core.
  - Requests that the API server throttles (HTTP 429), answers with a transient server error (5xx) or
    never receives (connection refused) are retried with exponential backoff, honouring C(Retry-After);
    a request that may have been applied (a POST whose connection broke) is not repeated.
attributes:
  check_mode:
    support: full
  diff_mode:
    support: full
  platform:
    support: full
    platforms: kubernetes
"""
