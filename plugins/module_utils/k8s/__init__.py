# -*- coding: utf-8 -*-
# Copyright: anvil.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The collection's one Kubernetes layer.

- ``client``: KubeClient, the only code that sends requests to an API server (retries, request
  counting, connection pool sizing, bounded concurrency) and ApiError, its one error type.
- ``resources``: REST paths of the built-in kinds and discovery of the others.
- ``waiter``: the one polling loop (objects ready, objects gone).
- ``module``: KubeModule, the AnsibleModule wrapper every Kubernetes module uses (connection options
  from kubernetes.core, check and diff mode, one path from any error to fail_json).
"""
