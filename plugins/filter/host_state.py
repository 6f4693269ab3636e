# -*- coding: utf-8 -*-
# Copyright: anvil.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Filters of the host-state pass: want_path (one wanted path for the host_state module) and
host_state_plan / host_state_restarts (what the host_state role changes; logic in module_utils/host_state)."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

# This file provides several filters, so each one is documented in its own sidecar file,
# plugins/filter/<filter name>.yml: ansible-doc reads a sidecar only when the Python file has
# no DOCUMENTATION of its own.

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
