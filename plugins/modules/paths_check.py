#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: anvil.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: paths_check
short_description: Compare many files and directories with their wanted state in one pass (read-only)
version_added: 0.1.0
description:
  - Reads the type, mode, owner, group and (for files with O(paths[].sha256)) the SHA-256 digest of every
    listed path and returns those that differ from the wanted state.
  - Roles use it to run their ordinary M(ansible.builtin.file) or M(ansible.builtin.get_url) tasks only for
    the paths that need them, so that a re-run on a host where nothing differs costs one round trip
    instead of one per path.
  - Never changes the host; runs the same in check mode.
author:
  - anvil.cluster maintainers (@anvil-cluster)
options:
  paths:
    description: The paths and their wanted state.
    type: list
    elements: dict
    required: true
    suboptions:
      path:
        description: Absolute path.
        type: path
        required: true
      state:
        description: What the path must be.
        type: str
        choices: [file, directory]
        default: file
      mode:
        description: Wanted permission bits as an octal string, for example C('0755'). Not compared when unset.
        type: str
      owner:
        description: Wanted owner name. Not compared when unset.
        type: str
      group:
        description: Wanted group name. Not compared when unset.
        type: str
      sha256:
        description: Wanted SHA-256 digest of a file's content (64 hex digits). Not compared when unset.
        type: str
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
attributes:
  check_mode:
    support: full
    details: Read-only; runs the same in check mode.
  diff_mode:
    support: none
  platform:
    platforms: posix
"""

EXAMPLES = r"""
- name: Verify the installed binaries in one pass
  anvil.cluster.paths_check:
    paths:
      - path: /usr/local/bin/kubelet
        sha256: 5f1c0e5b0a7d3c1e9f1c1b3d2a0e9f8c7b6a5d4c3b2a1f0e9d8c7b6a5f4e3d2c
        mode: "0755"
        owner: root
        group: root
  register: binaries

- name: Download only what is missing or different
  ansible.builtin.get_url:
    url: "http://mirror.example:8080/files/kubernetes/{{ item | basename }}"
    dest: "{{ item }}"
    mode: "0755"
  loop: "{{ binaries.mismatched }}"
"""

RETURN = r"""
mismatched:
  description: The paths that differ from their wanted state, in the order given.
  returned: always
  type: list
  elements: str
  sample: [/usr/local/bin/kubelet]
reasons:
  description: Why each mismatched path differs.
  returned: always
  type: dict
  sample: {"/usr/local/bin/kubelet": ["sha256 differs", "mode 0644, wanted 0755"]}
"""

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.anvil.cluster.plugins.module_utils.paths_check import check_paths, validate


def main():
    module = AnsibleModule(
        argument_spec=dict(
            paths=dict(
                type="list",
                elements="dict",
                required=True,
                options=dict(
                    path=dict(type="path", required=True),
                    state=dict(type="str", choices=["file", "directory"], default="file"),
                    mode=dict(type="str"),
                    owner=dict(type="str"),
                    group=dict(type="str"),
                    sha256=dict(type="str"),
                ),
            )
        ),
        supports_check_mode=True,
    )
    items = module.params["paths"]
    errors = validate(items)
    if errors:
        module.fail_json(msg="Fix the paths option: " + "; ".join(errors))
    result = check_paths(items)
    module.exit_json(changed=False, **result)


if __name__ == "__main__":
    main()
