# -*- coding: utf-8 -*-
# Copyright: anvil.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Every image the versions manifest lists (logic in module_utils/registry_images)."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
name: manifest_images
short_description: Every image of the versions manifest, once
version_added: 0.2.0
description:
  - Lists the images of every component of the versions manifest (C(anvil_versions), from C(vars/versions.yml))
    that is, those under a component's C(images) list and its C(image), each once, sorted by name and tag.
  - Used by the playbook C(anvil.cluster.registry_import) to fill a registry with every image a cluster needs.
options:
  _input:
    description: The versions manifest, C(anvil_versions).
    type: dict
    required: true
"""

EXAMPLES = r"""
- name: Copy every image of the manifest
  anvil.cluster.registry_import:
    images: "{{ anvil_versions | anvil.cluster.manifest_images }}"
    source: docker://198.18.0.1:5000/anvil/{name}:{tag}
    repository: registry.dc1:5443/anvil
    ca_file: ~/.anvil/registry/ca.crt
    username: importer
    password: "{{ vault_importer_password }}"
"""

RETURN = r"""
_value:
  description: The images, each C({name, tag}).
  type: list
  elements: dict
"""

from ansible_collections.anvil.cluster.plugins.module_utils.registry_images import manifest_images


class FilterModule(object):
    def filters(self):
        return {"manifest_images": manifest_images}
