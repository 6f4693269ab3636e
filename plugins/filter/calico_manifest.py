# -*- coding: utf-8 -*-
# Copyright: anvil.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Calico's upstream manifest adapted to a cluster (the logic is in module_utils/calico_manifest.py)."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
name: calico_manifest
short_description: Calico's own manifest, adapted to this cluster
version_added: 0.2.0
description:
  - Takes Calico's C(manifests/calico-vxlan.yaml) (which the artifact builder copies out of the Calico Go module
    it builds) and returns it with this cluster's choices applied, as multi-document YAML text.
  - Sets the mirror's images, the IPv4 pool (CIDR, block size, VXLAN C(Always) or C(CrossSubnet), no IP-in-IP),
    the VXLAN port and VNI, the MTU, felix's iptables backend, node address detection and Typha.
  - "calico-node's processes run one per container (felix, monitor-addresses, allocate-tunnel-addrs,
    cni-token-monitor, status-reporter) after C(calico-node -startup -complete-startup) (which also marks the
    node's network available) as init containers: the images carry no process supervisor. The eBPF bootstrap
    init container is dropped (no eBPF dataplane)."
positional: typha_docs, settings
options:
  _input:
    description: The text of C(calico-vxlan.yaml), or its objects as a list.
    type: raw
    required: true
  typha_docs:
    description: The text (or objects) of C(calico-typha.yaml); its Typha PodDisruptionBudget, Service and
      Deployment are added when Typha runs.
    type: raw
    required: true
  settings:
    description: The cluster's choices.
    type: dict
    required: true
    suboptions:
      image_repository:
        description: Registry and path of the images (empty keeps upstream's).
        type: str
      image_tag:
        description: Tag of the images.
        type: str
      pod_cidr:
        description: IPv4 pool.
        type: str
        required: true
      block_size:
        description: Prefix length of the per-node address blocks.
        type: int
        required: true
      vxlan_mode:
        description: C(Always) or C(CrossSubnet) (encapsulate only between subnets).
        type: str
        required: true
      vxlan_port:
        description: VXLAN UDP port.
        type: int
        required: true
      vxlan_vni:
        description: VXLAN network identifier.
        type: int
        required: true
      mtu:
        description: MTU of pod interfaces and the VXLAN device.
        type: int
        required: true
      iptables_backend:
        description: felix's iptables backend, C(NFT), C(Legacy) or C(Auto).
        type: str
        required: true
      typha_replicas:
        description: Typha replicas (0 = no Typha).
        type: int
        required: true
      ip_autodetection_method:
        description: How calico-node finds the node address (default C(kubernetes-internal-ip)).
        type: str
      resources:
        description: Resources of the felix container.
        type: dict
      api_endpoint:
        description: C(host:port) calico-node, the CNI plugin and kube-controllers reach the API server at
          (the ConfigMap C(kubernetes-services-endpoint) upstream's manifest reads); unset uses the Service.
        type: str
"""

EXAMPLES = r"""
- name: The cluster's Calico manifest as YAML
  ansible.builtin.set_fact:
    calico_yaml: "{{ upstream.content | anvil.cluster.calico_manifest(typha.content, settings) }}"
"""

RETURN = r"""
_value:
  description: The adapted objects as YAML documents, in upstream's order, Typha's objects last.
  type: str
"""

import json

import yaml
from ansible.errors import AnsibleFilterError
from ansible_collections.anvil.cluster.plugins.module_utils.calico_manifest import (
    CalicoManifestError,
    adapt,
)


def _documents(value, what):
    """Objects from YAML text (parsed here with libyaml: Ansible's own YAML filters are slow on
    Calico's 330 kB manifest) or from a list already parsed."""
    if isinstance(value, (list, tuple)):
        return [d for d in json.loads(json.dumps(list(value))) if d]
    try:
        return [d for d in yaml.load_all(str(value), Loader=_Loader) if d]
    except yaml.YAMLError as exc:
        raise AnsibleFilterError("%s is not YAML: %s" % (what, exc)) from exc


def calico_manifest(docs, typha_docs, settings):
    try:
        # Plain Python values (Ansible hands over its own str/int subclasses, which libyaml cannot represent).
        settings = json.loads(json.dumps(dict(settings)))
        objects = adapt(
            _documents(docs, "the Calico manifest"), _documents(typha_docs, "the Typha manifest"), dict(settings)
        )
    except CalicoManifestError as exc:
        raise AnsibleFilterError(str(exc)) from exc
    return "".join(
        "---\n" + yaml.dump(o, Dumper=_Dumper, default_flow_style=False, sort_keys=True, width=1000) for o in objects
    )


_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_Dumper = getattr(yaml, "CSafeDumper", yaml.SafeDumper)


class FilterModule(object):
    def filters(self):
        return {"calico_manifest": calico_manifest}
