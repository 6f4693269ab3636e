#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: anvil.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: app_release
short_description: Versioned application releases with history, diff and rollback
description:
  - Deploys an application made of several Kubernetes objects as one release, and records every deploy
    as a revision stored in the cluster (one Secret per revision in the release namespace, type
    C(anvil.cluster/release.v1), compressed payload).
  - Objects are applied with server-side apply under the field manager C(anvil.cluster.app_release).
    Objects dropped between revisions are deleted unless annotated C(anvil.cluster/resource-policy=keep).
    Objects owned by another release are never touched.
  - With O(wait), the module waits until Deployments, StatefulSets and DaemonSets are rolled out, Jobs are
    complete and PersistentVolumeClaims are bound. With O(atomic), a revision that fails or times out is
    rolled back to the last deployed revision and the task fails with the reason.
  - The same input applied twice reports no change and writes no revision. Check mode runs a server-side
    dry-run of every object and writes nothing.
  - A pending revision is a lock; a second run against the same release fails until the first one ends or
    its lock expires (twice O(timeout) plus two minutes), or O(force_unlock) is set.
version_added: 0.1.0
author:
  - anvil.cluster contributors (@anvil-cluster)
extends_documentation_fragment:
  - kubernetes.core.k8s_auth_options
  - ansible.builtin.action_common_attributes
  - anvil.cluster.k8s
options:
  name:
    description:
      - Release name. A DNS-1123 label of at most 53 characters.
    type: str
    required: true
  namespace:
    description:
      - Namespace of the release. Records are stored here, and namespaced objects without a namespace are
        placed here.
    type: str
    required: true
  state:
    description:
      - V(present) installs or upgrades the release to the given objects.
      - V(absent) deletes the release's objects (except those annotated to keep) and its history.
      - V(rolled_back) returns the release to an earlier revision, as a new revision.
    type: str
    choices: [present, absent, rolled_back]
    default: present
  definitions:
    description:
      - The release's objects. Each element is a manifest (a mapping), or a string of YAML that may hold
        several documents. C(kind=List) documents are expanded.
      - Mutually exclusive with O(src) and O(chart).
    type: list
    elements: raw
  src:
    description:
      - A YAML file, or a directory whose C(*.yml), C(*.yaml) and C(*.json) files (recursively, in name order)
        hold the release's manifests.
      - Relative paths are looked up on the controller (like the M(ansible.builtin.copy) module's C(src)); a
        path not found there is read on the host that runs the module.
    type: path
  chart:
    description:
      - Path of a local Helm chart (a directory or a packaged C(.tgz)) rendered with C(helm template) and
        O(values). Helm only renders; the release is managed by this module, not stored by Helm.
    type: path
  values:
    description:
      - Values for O(chart). Also stored in the revision record for reference.
    type: dict
    default: {}
  helm_binary:
    description:
      - The helm executable used to render O(chart). A bare name is looked up in E(PATH).
    type: str
    default: helm
  wait:
    description:
      - Wait until the workloads of the release are ready (see description) before recording success.
    type: bool
    default: true
  timeout:
    description:
      - Seconds to wait for the release to become ready (and, when rolling back, for the rollback).
    type: int
    default: 300
  atomic:
    description:
      - When a new revision fails to apply or to become ready, return to the last deployed revision (or, for
        a first install, delete what was created) and fail with the reason.
    type: bool
    default: true
  history_max:
    description:
      - Revisions kept in the history. Older ones are deleted, except the last deployed one. V(0) keeps all.
    type: int
    default: 10
  revision:
    description:
      - For O(state=rolled_back), the revision to return to. Default is the previous successfully
        deployed revision; when the deployed revision is itself a rollback, the default is its target, so
        repeating the task changes nothing.
    type: int
  description:
    description:
      - A note stored with the new revision (default describes the operation).
    type: str
  allowed_namespaces:
    description:
      - Namespaces other than O(namespace) in which the release may create namespaced objects. V(*) allows
        any. Objects elsewhere make the task fail before anything is applied.
    type: list
    elements: str
    default: []
  adopt:
    description:
      - Take over existing objects that no release manages. By default such objects make the task fail
        before anything is applied. Objects of another release are never adopted.
    type: bool
    default: false
  force_conflicts:
    description:
      - Take ownership of fields that another field manager (for example C(kubectl edit)) set, instead of
        failing on server-side apply conflicts.
    type: bool
    default: false
  force_unlock:
    description:
      - Treat pending revisions (locks of other runs) as stale even if they have not expired, mark them
        failed and proceed. Only when you know the run that holds the lock is gone.
    type: bool
    default: false
  create_namespace:
    description:
      - Create O(namespace) if it does not exist. The namespace is not part of the release and is not
        deleted with it.
    type: bool
    default: false
  concurrency:
    description:
      - API requests in flight while reading and dry-running the release's objects.
    type: int
    default: 8
  keep_history:
    description:
      - With O(state=absent), keep the revision records and mark the release uninstalled, instead of
        deleting the history.
    type: bool
    default: false
notes:
  - Custom resources whose CustomResourceDefinition is part of the same release cannot be validated before
    the CRD exists; install CRDs as a separate release first.
  - Secret values never appear in diffs or results; they are shown as a short hash so changes stay visible.
requirements:
  - helm (only for O(chart))
seealso:
  - module: kubernetes.core.k8s
  - module: kubernetes.core.helm
"""

EXAMPLES = r"""
- name: Install or upgrade the shop application from a directory of manifests
  anvil.cluster.app_release:
    name: shop
    namespace: shop
    src: manifests/shop/
    timeout: 600
    description: "shop {{ shop_version }}"

- name: Deploy from inline definitions, without waiting
  anvil.cluster.app_release:
    name: settings
    namespace: shop
    wait: false
    definitions:
      - apiVersion: v1
        kind: ConfigMap
        metadata:
          name: shop-settings
        data:
          mode: production

- name: Render a local chart with values
  anvil.cluster.app_release:
    name: cache
    namespace: shop
    chart: charts/redis
    values:
      replicas: 3
    helm_binary: /opt/helm/helm

- name: Return to revision 3
  anvil.cluster.app_release:
    name: shop
    namespace: shop
    state: rolled_back
    revision: 3

- name: Uninstall, keeping the history
  anvil.cluster.app_release:
    name: shop
    namespace: shop
    state: absent
    keep_history: true
"""

RETURN = r"""
revision:
  description: The release's current revision after the task (the deployed one, or the failed one).
  returned: when the release has a revision
  type: int
  sample: 4
status:
  description: Status of that revision (deployed, failed, uninstalled, ...), or V(absent) when no history is left.
  returned: always
  type: str
  sample: deployed
created:
  description: Objects created (or that would be, in check mode).
  returned: always
  type: list
  elements: dict
  sample: [{"apiVersion": "v1", "kind": "ConfigMap", "namespace": "shop", "name": "shop-settings"}]
updated:
  description: Objects changed by the apply.
  returned: always
  type: list
  elements: dict
pruned:
  description: Objects of the previous revision that were deleted (dropped by this revision, or uninstalled).
  returned: always
  type: list
  elements: dict
unchanged:
  description: Objects already as desired.
  returned: always
  type: list
  elements: dict
kept:
  description: Objects that would have been pruned but carry C(anvil.cluster/resource-policy=keep).
  returned: always
  type: list
  elements: dict
digest:
  description: Digest of the rendered objects of the current revision.
  returned: when the release has a revision
  type: str
rolled_back_to:
  description: Revision whose objects were restored (explicit rollback or atomic rollback after a failure).
  returned: when a rollback happened
  type: int
failed_revision:
  description: The revision that failed (the task fails too).
  returned: on failure of a new revision
  type: int
history:
  description: The release's revisions after the task, oldest first.
  returned: always
  type: list
  elements: dict
  sample: [{"revision": 1, "status": "superseded", "description": "Install complete", "updated": "2026-01-01T10:00:00Z"}]
api_requests:
  description:
    - Requests this task sent to the API server (retries included).
    - A run with the deployed revision's manifests whose objects are still what that revision left (their
      fingerprints are in its record) reads the record and each kind once, with no dry run, whatever the
      number of objects. Once any object was changed by someone else (even a field the release does not
      own), runs dry-run every object until the next revision records them again.
  returned: when the release was read
  type: int
  sample: 6
diff:
  description: Per-object before/after YAML (Secret values redacted).
  returned: in diff mode
  type: list
  elements: dict
"""

import subprocess
import traceback

from ansible.module_utils.basic import missing_required_lib
from ansible_collections.anvil.cluster.plugins.module_utils import release_store as store
from ansible_collections.anvil.cluster.plugins.module_utils.k8s.module import KubeModule, ModuleFailure
from ansible_collections.anvil.cluster.plugins.module_utils.release import YAML_IMPORT_ERROR, Release, safe_params


def argument_spec():
    return dict(
        name=dict(type="str", required=True),
        namespace=dict(type="str", required=True),
        state=dict(type="str", choices=["present", "absent", "rolled_back"], default="present"),
        definitions=dict(type="list", elements="raw"),
        src=dict(type="path"),
        chart=dict(type="path"),
        values=dict(type="dict", default={}),
        helm_binary=dict(type="str", default="helm"),
        wait=dict(type="bool", default=True),
        timeout=dict(type="int", default=300),
        atomic=dict(type="bool", default=True),
        history_max=dict(type="int", default=10),
        revision=dict(type="int"),
        description=dict(type="str"),
        allowed_namespaces=dict(type="list", elements="str", default=[]),
        adopt=dict(type="bool", default=False),
        force_conflicts=dict(type="bool", default=False),
        force_unlock=dict(type="bool", default=False),
        create_namespace=dict(type="bool", default=False),
        keep_history=dict(type="bool", default=False),
        concurrency=dict(type="int", default=8),
    )


def validate(params):
    problem = store.validate_name(params["name"])
    if problem:
        raise ModuleFailure(problem)
    if params["timeout"] < 1:
        raise ModuleFailure("timeout must be at least 1 second")
    if params["concurrency"] < 1:
        raise ModuleFailure("concurrency must be at least 1")
    if params["revision"] is not None and params["state"] != "rolled_back":
        raise ModuleFailure("revision is only used with state=rolled_back")


def main():
    module = KubeModule(
        argument_spec(),
        mutually_exclusive=[("definitions", "src", "chart")],
        required_if=[("state", "present", ("definitions", "src", "chart"), True)],
    )
    if YAML_IMPORT_ERROR:
        module.fail_json(msg=missing_required_lib("PyYAML"), exception=YAML_IMPORT_ERROR)
    holder = {}

    def run():
        validate(module.params)
        release = holder["release"] = Release(module, module.client(concurrency=module.params["concurrency"]))
        handler = {"present": release.present, "absent": release.absent, "rolled_back": release.rolled_back}
        try:
            return handler[module.params["state"]]()
        except store.ReleaseError as exc:
            raise ModuleFailure("release %s/%s: %s" % (module.params["namespace"], module.params["name"], exc)) from exc
        except (OSError, subprocess.SubprocessError) as exc:
            raise ModuleFailure(str(exc), exception=traceback.format_exc()) from exc

    def partial():
        # A failed run still says where the release stands (revision, status, history, what it did).
        release = holder.get("release")
        return dict(release.finish()) if release is not None else {}

    # Secret values in definitions never echo back through the invocation.
    module.run(run, always=lambda: {"invocation": safe_params(module.params)}, partial=partial)


if __name__ == "__main__":
    main()
