# -*- coding: utf-8 -*-
# Copyright: anvil.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Controller side of anvil.cluster.app_release: find `src` (and a relative `chart`) on the controller.

`src` is looked up like the copy module's `src` (role files/, playbook dir, ...). With a local
connection the module gets the absolute path; with a remote connection the manifests are read here and
sent as `definitions`, so the host that runs the module does not need the files. A path not found on
the controller is passed on unchanged and read on the host that runs the module.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import copy

from ansible.errors import AnsibleError
from ansible.module_utils.common.text.converters import to_text
from ansible.plugins.action import ActionBase
from ansible_collections.anvil.cluster.plugins.module_utils.release_plan import PlanError, read_manifests


class ActionModule(ActionBase):
    TRANSFERS_FILES = False

    def _controller_path(self, path):
        try:
            return self._find_needle("files", path)
        except AnsibleError:
            return None

    def run(self, tmp=None, task_vars=None):
        result = super().run(tmp, task_vars or {})
        args = copy.deepcopy(self._task.args)
        remote = self._connection.transport != "local"
        src = args.get("src")
        if src:
            found = self._controller_path(src)
            if found and remote:
                try:
                    args["definitions"] = read_manifests(found)
                except PlanError as exc:
                    result.update(failed=True, msg=to_text(exc))
                    return result
                del args["src"]
            elif found:
                args["src"] = found
        chart = args.get("chart")
        if chart and not remote:
            args["chart"] = self._controller_path(chart) or chart
        result.update(
            self._execute_module(module_name=self._task.resolved_action, module_args=args, task_vars=task_vars)
        )
        return result
