# -*- coding: utf-8 -*-
# Copyright: anvil.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Filters of the host-state pass: want_path (one wanted path for the host_state module) and
host_state_plan / host_state_restarts (what the host_state role changes; logic in module_utils/host_state)."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
name: want_path
short_description: The wanted state of one path, for the host_state module
version_added: 0.1.0
description:
  - Turns a path into a C({path, state, mode, owner, group[, sha256]}) entry for
    M(anvil.cluster.host_state), so roles can map a list of paths in one expression.
  - With O(checksums), the file's SHA-256 digest is looked up by the path's base name.
  - With O(content), the digest is that of the given text (UTF-8), for files a role writes from a
    template or a string. The role renders it on the controller, compares on the host and writes only
    when it differs.
  - The same file provides C(host_state_plan) (from the module's result, the files and services the
    P(anvil.cluster.host_state#role) role changes) and C(host_state_restarts) (the running services to restart
    or reload after files changed), used by that role.
positional: state, mode
options:
  _input:
    description: Absolute path.
    type: path
    required: true
  state:
    description: C(file) or C(directory).
    type: str
    default: file
  mode:
    description: Wanted permission bits, for example C('0755').
    type: str
  owner:
    description: Wanted owner.
    type: str
    default: root
  group:
    description: Wanted group.
    type: str
    default: root
  checksums:
    description: Base name -> SHA-256 digest (for example the C(sha256) map of a component in the versions manifest).
    type: dict
  content:
    description: The file's wanted content; its SHA-256 digest is compared. Exclusive with O(checksums).
    type: str
"""

EXAMPLES = r"""
- name: Verify binaries against the versions manifest
  anvil.cluster.host_state:
    paths: >-
      {{ ['/usr/local/bin/kubelet', '/usr/local/bin/kubeadm']
         | map('anvil.cluster.want_path', 'file', '0755', checksums=anvil_versions.kubernetes.sha256) }}

- name: Is the rendered unit file already in place?
  anvil.cluster.host_state:
    paths:
      - "{{ '/etc/systemd/system/kubelet.service'
            | anvil.cluster.want_path('file', '0644', content=lookup('template', 'kubelet.service.j2')) }}"
"""

RETURN = r"""
_value:
  description: One entry of the host_state module's O(anvil.cluster.host_state#module:paths) option.
  type: dict
"""

import hashlib
import posixpath

from ansible.errors import AnsibleFilterError
from ansible_collections.anvil.cluster.plugins.module_utils.host_state import plan, restarts


def want_path(path, state="file", mode=None, *, owner="root", group="root", checksums=None, content=None):
    entry = {"path": str(path), "state": state, "owner": owner, "group": group}
    if mode is not None:
        entry["mode"] = str(mode)
    if content is not None:
        if checksums is not None:
            raise AnsibleFilterError("want_path: give either checksums or content for %s, not both" % path)
        entry["sha256"] = hashlib.sha256(str(content).encode("utf-8")).hexdigest()
    if checksums is not None:
        name = posixpath.basename(str(path))
        if name not in checksums:
            raise AnsibleFilterError(
                "want_path: no checksum for %r; the versions manifest lists %s" % (name, ", ".join(sorted(checksums)))
            )
        entry["sha256"] = checksums[name]
    return entry


def host_state_plan(result, files, services):
    return plan(result, list(files), list(services))


class FilterModule(object):
    def filters(self):
        return {"want_path": want_path, "host_state_plan": host_state_plan, "host_state_restarts": restarts}
