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
  - kubernetes >= 24.2.0
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
diff:
  description: Per-object before/after YAML (Secret values redacted).
  returned: in diff mode
  type: list
  elements: dict
"""

import os
import socket
import subprocess
import tempfile
import time
import traceback
from concurrent.futures import ThreadPoolExecutor

from ansible.module_utils.basic import AnsibleModule, missing_required_lib
from ansible_collections.anvil.cluster.plugins.module_utils import release_plan as plan
from ansible_collections.anvil.cluster.plugins.module_utils import release_store as store
from ansible_collections.anvil.cluster.plugins.module_utils.k8s_connection import (
    connection_argspec,
    dynamic_client,
    require_kubernetes,
)

YAML_IMPORT_ERROR = None
try:
    import yaml
except ImportError:
    YAML_IMPORT_ERROR = traceback.format_exc()

try:
    from kubernetes.dynamic.exceptions import (
        ConflictError,
        DynamicApiError,
        ForbiddenError,
        NotFoundError,
        ResourceNotFoundError,
    )
except ImportError:  # reported by require_kubernetes()

    class DynamicApiError(Exception):
        """Stand-ins so that the module loads (and reports the missing library) without the client."""

    class ConflictError(DynamicApiError):
        pass

    class ForbiddenError(DynamicApiError):
        pass

    class NotFoundError(DynamicApiError):
        pass

    class ResourceNotFoundError(Exception):
        pass


SECRET_RESOURCE = ("v1", "Secret")
POLL_SECONDS = 1.0


class Failure(Exception):
    """Ends the run with fail_json(msg, **details)."""

    def __init__(self, msg, **details):
        super().__init__(msg)
        self.msg = msg
        self.details = details


def api_message(exc):
    if isinstance(exc, DynamicApiError):
        try:
            return exc.summary()
        except Exception:  # pylint: disable=broad-except
            return "%s %s" % (exc.status, exc.reason)
    return str(exc)


def safe_params(params):
    """Module arguments to echo back as ``invocation``: Secret manifests in definitions redacted.

    Ansible would otherwise return the raw definitions, Secret values included, in every result.
    """
    shown = dict(params)
    items = []
    for item in params.get("definitions") or []:
        if isinstance(item, str):
            try:
                items.extend(
                    plan.redact(d) if isinstance(d, dict) else d for d in plan.load_documents(item, "definitions")
                )
            except plan.PlanError:
                items.append(item)
        else:
            items.append(plan.redact(item) if isinstance(item, dict) else item)
    if params.get("definitions") is not None:
        shown["definitions"] = items
    return {"module_args": shown}


def dump_yaml(obj):
    return yaml.safe_dump(obj, default_flow_style=False, sort_keys=True)


def load_yaml_text(text, origin):
    try:
        return plan.load_documents(text, origin)
    except plan.PlanError as exc:
        raise Failure(str(exc)) from exc


class Release:
    """One run against one release: reads records and live objects, applies, waits, records."""

    def __init__(self, module, client):
        self.module = module
        self.client = client
        self.params = module.params
        self.name = self.params["name"]
        self.namespace = self.params["namespace"]
        self.check = module.check_mode
        self._resources = {}
        self.records = []
        self.diffs = []
        self.result = {
            "changed": False,
            "created": [],
            "updated": [],
            "pruned": [],
            "unchanged": [],
            "kept": [],
        }

    # -- API helpers -------------------------------------------------------------------------------

    def resource(self, api_version, kind):
        key = (api_version, kind)
        if key not in self._resources:
            try:
                self._resources[key] = self.client.resources.get(api_version=api_version, kind=kind)
            except ResourceNotFoundError:
                self._resources[key] = None
        return self._resources[key]

    def is_namespaced(self, api_version, kind):
        res = self.resource(api_version, kind)
        return None if res is None else bool(res.namespaced)

    def res_of(self, obj):
        res = self.resource(obj["apiVersion"], obj["kind"])
        if res is None:
            raise Failure("the API server does not serve %s in %s" % (obj["kind"], obj["apiVersion"]))
        return res

    def get_live(self, obj):
        meta = obj["metadata"]
        try:
            return self.client.get(self.res_of(obj), name=meta["name"], namespace=meta.get("namespace")).to_dict()
        except NotFoundError:
            return None

    def apply(self, obj, dry_run=False):
        meta = obj["metadata"]
        kwargs = {
            "body": obj,
            "name": meta["name"],
            "namespace": meta.get("namespace"),
            "field_manager": plan.FIELD_MANAGER,
            "force_conflicts": self.params["force_conflicts"],
        }
        if dry_run:
            kwargs["dry_run"] = "All"
        return self.client.server_side_apply(self.res_of(obj), **kwargs).to_dict()

    def delete(self, obj):
        meta = obj["metadata"]
        try:
            self.client.delete(
                self.res_of(obj),
                name=meta["name"],
                namespace=meta.get("namespace"),
                body={"propagationPolicy": "Background"},
            )
        except NotFoundError:
            pass

    # -- records -----------------------------------------------------------------------------------

    def secrets(self):
        return self.resource(*SECRET_RESOURCE)

    def load_records(self):
        items = self.client.get(self.secrets(), namespace=self.namespace, label_selector=store.selector(self.name))
        records = []
        for item in items.to_dict().get("items", []):
            if item.get("type") != store.SECRET_TYPE:
                continue
            try:
                records.append(store.from_secret(item))
            except store.ReleaseError as exc:
                self.module.warn("ignoring unreadable release record %s: %s" % (item["metadata"]["name"], exc))
        self.records = store.sort_history(records)
        return self.records

    def _replace_record(self, record):
        self.records = store.sort_history([r for r in self.records if r["revision"] != record["revision"]] + [record])

    def create_record(self, record):
        try:
            created = self.client.create(self.secrets(), body=store.to_secret(record), namespace=self.namespace)
        except ConflictError as exc:
            raise Failure(
                "release %s/%s: revision %d was created by another run at the same time; this run did not change "
                "anything. Retry when the other run has finished." % (self.namespace, self.name, record["revision"])
            ) from exc
        record = dict(record, _resource_version=created.metadata.resourceVersion)
        self._replace_record(record)
        return record

    def update_record(self, record, status, **changes):
        updated = store.with_status(record, status, **changes)
        body = store.to_secret(updated, resource_version=record.get("_resource_version"))
        try:
            result = self.client.replace(self.secrets(), body=body, namespace=self.namespace)
        except ConflictError as exc:
            raise Failure(
                "release record %s changed under this run (another run used force_unlock?); the release may "
                "need attention: check its history" % body["metadata"]["name"]
            ) from exc
        updated["_resource_version"] = result.metadata.resourceVersion
        self._replace_record(updated)
        return updated

    def delete_record(self, record):
        try:
            self.client.delete(
                self.secrets(), name=store.secret_name(self.name, record["revision"]), namespace=self.namespace
            )
        except NotFoundError:
            pass
        self.records = [r for r in self.records if r["revision"] != record["revision"]]

    def prune_history(self):
        for record in store.prune_history(self.records, self.params["history_max"]):
            self.delete_record(record)

    def lock_fields(self):
        return {
            "lock_owner": {"host": socket.gethostname(), "pid": os.getpid()},
            "lock_expires": store.lock_expiry(self.params["timeout"]),
        }

    def recover_stale(self, stale):
        for record in stale:
            self.module.warn(
                "revision %d was left %s by a run that did not finish; marking it failed"
                % (record["revision"], record["status"])
            )
            if not self.check:
                self.update_record(
                    record, store.FAILED, error="interrupted: its run ended without recording an outcome"
                )
                self.result["changed"] = True

    # -- input -------------------------------------------------------------------------------------

    def documents(self):
        """Manifests from definitions, src or chart, and a description of the source."""
        params = self.params
        if params["chart"]:
            return self.render_chart()
        if params["src"]:
            try:
                return plan.read_manifests(params["src"]), {"type": "src", "path": params["src"]}
            except plan.PlanError as exc:
                raise Failure(str(exc)) from exc
        docs = []
        for index, item in enumerate(params["definitions"] or []):
            if isinstance(item, str):
                docs.extend(load_yaml_text(item, "definitions[%d]" % index))
            else:
                docs.append(item)
        return docs, {"type": "definitions"}

    def render_chart(self):
        chart = self.params["chart"]
        if not os.path.exists(chart):
            raise Failure("chart %s does not exist (chart takes the path of a local chart directory or .tgz)" % chart)
        helm = (
            self.module.get_bin_path(self.params["helm_binary"])
            if "/" not in self.params["helm_binary"]
            else self.params["helm_binary"]
        )
        if not helm or not os.access(helm, os.X_OK):
            raise Failure(
                "helm (%s) is not executable or not on PATH; set helm_binary to the helm executable"
                % self.params["helm_binary"]
            )
        source = {"type": "chart", "path": chart}
        chart_yaml = os.path.join(chart, "Chart.yaml")
        if os.path.isfile(chart_yaml):
            with open(chart_yaml) as handle:
                meta = yaml.safe_load(handle) or {}
            source.update(
                {"chart": meta.get("name"), "version": str(meta.get("version")), "app_version": meta.get("appVersion")}
            )
        fd, values_file = tempfile.mkstemp(prefix="anvil-release-values-", suffix=".json")
        try:
            with os.fdopen(fd, "w") as handle:
                # JSON is YAML: helm reads it as a values file.
                handle.write(self.module.jsonify(self.params["values"] or {}))
            cmd = [
                helm,
                "template",
                self.name,
                chart,
                "--namespace",
                self.namespace,
                "--include-crds",
                "--skip-tests",
                "--values",
                values_file,
            ]
            rc, out, err = self.module.run_command(cmd)
        finally:
            os.unlink(values_file)
        if rc != 0:
            raise Failure("helm template failed (rc=%d): %s" % (rc, err.strip() or out.strip()), cmd=cmd)
        return load_yaml_text(out, "helm template output"), source

    # -- planning ----------------------------------------------------------------------------------

    def namespace_exists(self):
        try:
            self.client.get(self.resource("v1", "Namespace"), name=self.namespace)
            return True
        except NotFoundError:
            return False
        except ForbiddenError:
            # Users confined to their namespace (a RoleBinding, no cluster-wide read) cannot read the
            # Namespace object; if it is really missing, the dry-run of every object says so.
            return True

    def prune_base(self):
        """Objects this release may have put in the cluster and not yet removed.

        The last deployed revision's objects plus those of any newer (failed or interrupted) revision;
        without a deployed revision, those of every revision since the last uninstall.
        """
        deployed = store.last_deployed(self.records)
        if deployed:
            newer = [r for r in self.records if r["revision"] >= deployed["revision"]]
        else:
            uninstalled = [r["revision"] for r in self.records if r["status"] == store.UNINSTALLED]
            floor = max(uninstalled) if uninstalled else 0
            newer = [r for r in self.records if r["revision"] > floor]
        merged = {}
        for record in newer:
            for obj in record.get("objects", []):
                merged[plan.identity(obj)] = obj
        return list(merged.values())

    def prefetch(self, objects):
        """Live objects of this release, one label-selected LIST per kind and namespace (instead of a GET
        per object), as {identity: live}. Objects not found here are read one by one: they may exist
        without this release's label (unmanaged, or another release's)."""
        groups = {}
        for obj in objects:
            groups.setdefault((obj["apiVersion"], obj["kind"], obj["metadata"].get("namespace")), []).append(obj)
        live = {}
        selector = "%s=%s" % (plan.RELEASE_LABEL, self.name)
        for (api_version, kind, namespace), members in groups.items():
            if len(members) < 2:
                continue  # one GET costs the same
            try:
                answer = self.client.get(self.resource(api_version, kind), namespace=namespace, label_selector=selector)
            except DynamicApiError:
                continue  # e.g. may get but not list: per-object GETs will tell
            for item in answer.to_dict().get("items", []):
                item.setdefault("apiVersion", api_version)
                item.setdefault("kind", kind)
                live[plan.identity(item)] = item
        return live

    def examine(self, obj, known, namespace_missing):
        """(step, problem) for one desired object: live state, ownership, server-side dry-run."""
        in_new_namespace = namespace_missing and obj["metadata"].get("namespace") == self.namespace
        if in_new_namespace:
            # Nothing to read or dry-run against: the namespace itself is created by this run.
            return ("create", obj, None, obj), None
        try:
            key = plan.identity(obj)
            live = known[key] if key in known else self.get_live(obj)
            if live is not None:
                problem = plan.ownership_problem(live, self.name, self.namespace, adopt=self.params["adopt"])
                if problem:
                    return None, problem
            dry = self.apply(obj, dry_run=True)
        except DynamicApiError as exc:
            hint = ""
            if exc.status == 409:
                hint = " (another field manager changed these fields since; set force_conflicts=true to take them back)"
            return None, "%s: %s%s" % (plan.ref_text(obj), api_message(exc), hint)
        if live is None:
            return ("create", obj, None, dry), None
        if plan.is_changed(live, dry):
            return ("update", obj, live, dry), None
        return ("unchanged", obj, live, dry), None

    def plan(self, objects, namespace_missing=False):
        """Classify desired objects and the prune set against the cluster. Fails on any problem."""
        known = {} if namespace_missing else self.prefetch(objects)
        # Reads and dry-runs are independent: run them concurrently (order of results is kept).
        with ThreadPoolExecutor(max_workers=self.params["concurrency"]) as pool:
            outcomes = list(pool.map(lambda obj: self.examine(obj, known, namespace_missing), objects))
        steps = [step for step, _problem in outcomes if step]
        problems = [problem for _step, problem in outcomes if problem]
        prunes, kept = [], []
        for obj in plan.prune_set(self.prune_base(), objects):
            if self.resource(obj["apiVersion"], obj["kind"]) is None:
                continue
            live = self.get_live(obj)
            if live is None or plan.owner_of(live) != (self.name, self.namespace):
                continue
            if plan.keep(live):
                kept.append(obj)
                continue
            prunes.append((obj, live))
        kept.extend(
            o for o in self.prune_base() if plan.keep(o) and plan.identity(o) not in {plan.identity(x) for x in objects}
        )
        if problems:
            raise Failure(
                "release %s/%s: nothing was applied because of %d problem(s): %s"
                % (self.namespace, self.name, len(problems), "; ".join(problems)),
                problems=problems,
            )
        return steps, prunes, kept

    def report_plan(self, steps, prunes, kept):
        for action, desired, live, dry in steps:
            key = {"create": "created", "update": "updated", "unchanged": "unchanged"}[action]
            self.result[key].append(plan.ref(desired))
            if action != "unchanged" and self.module._diff:
                self.diffs.append(plan.diff_entry(live, dry, dump_yaml))
        for obj, live in prunes:
            self.result["pruned"].append(plan.ref(obj))
            if self.module._diff:
                self.diffs.append(plan.diff_entry(live, None, dump_yaml))
        seen = set()
        for obj in kept:
            if plan.identity(obj) not in seen:
                seen.add(plan.identity(obj))
                self.result["kept"].append(plan.ref(obj))

    # -- applying and waiting ----------------------------------------------------------------------

    def execute(self, steps, prunes):
        """Apply and prune; returns the objects applied. Raises Failure on the first API error."""
        applied = []
        for action, desired, _live, _dry in steps:
            if action == "unchanged":
                applied.append(desired)
                continue
            try:
                self.apply(desired)
            except DynamicApiError as exc:
                raise Failure("applying %s failed: %s" % (plan.ref_text(desired), api_message(exc))) from exc
            applied.append(desired)
        for obj, _live in prunes:
            try:
                self.delete(obj)
            except DynamicApiError as exc:
                raise Failure("deleting %s failed: %s" % (plan.ref_text(obj), api_message(exc))) from exc
        return applied

    def wait_ready(self, objects, deadline):
        pending = [o for o in objects if o["kind"] in plan.WAITED_KINDS]
        last = {}
        while pending:
            still = []
            for obj in pending:
                live = self.get_live(obj)
                if live is None:
                    state, message = "waiting", "%s does not exist" % plan.ref_text(obj)
                else:
                    state, message = plan.readiness(live)
                if state == "failed":
                    raise Failure(message)
                if state == "waiting":
                    still.append(obj)
                    last[plan.identity(obj)] = message
            pending = still
            if not pending:
                return
            if time.monotonic() >= deadline:
                raise Failure(
                    "timed out after %ds waiting for: %s"
                    % (self.params["timeout"], "; ".join(last[plan.identity(o)] for o in pending))
                )
            time.sleep(POLL_SECONDS)

    def wait_gone(self, objects, deadline):
        pending = list(objects)
        while pending:
            pending = [o for o in pending if self.get_live(o) is not None]
            if not pending:
                return
            if time.monotonic() >= deadline:
                raise Failure("timed out waiting for deletion of: %s" % ", ".join(plan.ref_text(o) for o in pending))
            time.sleep(POLL_SECONDS)

    # -- operations --------------------------------------------------------------------------------

    def deploy(self, objects, pending_status, *, description, extra, steps, prunes, allow_atomic=True):
        """Write a pending record, apply, wait, and record the outcome (with atomic rollback)."""
        previous = store.last_deployed(self.records)
        revision = store.next_revision(self.records)
        record = store.new_record(
            self.name,
            self.namespace,
            revision,
            pending_status,
            objects,
            description=description,
            values=self.params["values"] or {},
            digest=store.digest_objects(plan.semantic_view(objects)),
            **dict(extra, **self.lock_fields()),
        )
        if previous:
            record["first_deployed"] = previous.get("first_deployed", record["first_deployed"])
        record = self.create_record(record)
        self.result["changed"] = True
        deadline = time.monotonic() + self.params["timeout"]
        try:
            applied = self.execute(steps, prunes)
            if self.params["wait"]:
                self.wait_ready(applied, deadline)
        except Failure as failure:
            record = self.update_record(record, store.FAILED, error=failure.msg, lock_owner=None, lock_expires=None)
            self.prune_history()
            details = {"failed_revision": revision}
            if allow_atomic and self.params["atomic"]:
                details.update(self.atomic_rollback(previous, revision, steps))
            raise Failure(
                "revision %d of release %s/%s failed: %s%s"
                % (revision, self.namespace, self.name, failure.msg, details.get("rollback_note", "")),
                **details,
            ) from failure
        if previous:
            self.update_record(previous, store.SUPERSEDED)
        record = self.update_record(record, store.DEPLOYED, lock_owner=None, lock_expires=None)
        self.prune_history()
        return record

    def atomic_rollback(self, previous, failed_revision, steps):
        if previous is None:
            # First install: remove what this run created, as if it never happened.
            created = [desired for action, desired, _l, _d in steps if action == "create"]
            for obj in plan.uninstall_sorted(created):
                try:
                    self.delete(obj)
                except DynamicApiError as exc:
                    self.module.warn("cleanup of %s failed: %s" % (plan.ref_text(obj), api_message(exc)))
            self.result["pruned"] = [plan.ref(o) for o in created]
            return {"rollback_note": "; atomic: deleted the %d object(s) it had created" % len(created)}
        try:
            self.load_records()
            target_objects = previous["objects"]
            rb_steps, rb_prunes, _kept = self.plan(target_objects)
            self.deploy(
                target_objects,
                store.PENDING_ROLLBACK,
                description="Rollback to %d after revision %d failed" % (previous["revision"], failed_revision),
                extra={"source": previous.get("source", {}), "rollback_of": previous["revision"]},
                steps=rb_steps,
                prunes=rb_prunes,
                allow_atomic=False,
            )
        except Failure as rb_failure:
            return {
                "rollback_failed": rb_failure.msg,
                "rollback_note": "; atomic rollback to revision %d ALSO failed: %s"
                % (previous["revision"], rb_failure.msg),
            }
        self.result["rolled_back_to"] = previous["revision"]
        return {
            "rolled_back_to": previous["revision"],
            "rollback_note": "; rolled back to revision %d (now revision %d)"
            % (previous["revision"], store.last_deployed(self.records)["revision"]),
        }

    def finish(self, record=None):
        record = record or store.latest(self.records)
        if record:
            self.result.update(revision=record["revision"], status=record["status"], digest=record.get("digest"))
        else:
            self.result["status"] = "absent"
        self.result["history"] = [store.summary(r) for r in self.records]
        if self.module._diff:
            self.result["diff"] = self.diffs
        return self.result

    def present(self):
        documents, source = self.documents()
        try:
            objects = plan.render(
                documents, self.name, self.namespace, self.is_namespaced, self.params["allowed_namespaces"]
            )
        except plan.PlanError as exc:
            raise Failure(
                "release %s/%s: nothing was applied because the input has %d problem(s): %s"
                % (self.namespace, self.name, len(exc.problems), "; ".join(exc.problems)),
                problems=exc.problems,
            ) from exc
        # Fail on an oversized release now, before anything is applied.
        store.encode_payload(
            store.new_record(self.name, self.namespace, 0, store.PENDING_INSTALL, objects, values=self.params["values"])
        )
        namespace_missing = False
        if not self.namespace_exists():
            if not self.params["create_namespace"]:
                raise Failure("namespace %s does not exist; create it or set create_namespace=true" % self.namespace)
            namespace_missing = True
        self.load_records()
        stale = store.check_lock(self.records, force_unlock=self.params["force_unlock"])
        steps, prunes, kept = self.plan(objects, namespace_missing=namespace_missing)
        self.report_plan(steps, prunes, kept)
        deployed = store.last_deployed(self.records)
        objects_changed = any(action != "unchanged" for action, _d, _l, _x in steps) or bool(prunes)
        digest_changed = deployed is None or deployed.get("digest") != store.digest_objects(plan.semantic_view(objects))
        if not objects_changed and not digest_changed:
            self.recover_stale(stale)
            return self.finish(deployed)
        self.result["changed"] = True
        if self.check:
            return self.finish(deployed)
        if namespace_missing:
            self.client.create(
                self.resource("v1", "Namespace"),
                body={"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": self.namespace}},
            )
        self.recover_stale(stale)
        if deployed is None:
            status, default_description = store.PENDING_INSTALL, "Install complete"
        else:
            status, default_description = store.PENDING_UPGRADE, "Upgrade complete"
        record = self.deploy(
            objects,
            status,
            description=self.params["description"] or default_description,
            extra={"source": source},
            steps=steps,
            prunes=prunes,
        )
        return self.finish(record)

    def rolled_back(self):
        self.load_records()
        stale = store.check_lock(self.records, force_unlock=self.params["force_unlock"])
        by_revision = {r["revision"]: r for r in self.records}
        current = store.last_deployed(self.records)
        wanted = self.params["revision"]
        if wanted is None and current and current.get("rollback_of") in by_revision:
            target = by_revision[current["rollback_of"]]
        else:
            try:
                target = store.rollback_target(self.records, wanted)
            except store.ReleaseError as exc:
                raise Failure("release %s/%s: %s" % (self.namespace, self.name, exc)) from exc
        objects = target["objects"]
        steps, prunes, kept = self.plan(objects)
        self.report_plan(steps, prunes, kept)
        objects_changed = any(action != "unchanged" for action, _d, _l, _x in steps) or bool(prunes)
        self.result["rolled_back_to"] = target["revision"]
        if current and current.get("digest") == target.get("digest") and not objects_changed:
            self.recover_stale(stale)
            return self.finish(current)
        self.result["changed"] = True
        if self.check:
            return self.finish(current)
        self.recover_stale(stale)
        description = self.params["description"] or "Rollback to %d" % target["revision"]
        extra = {"source": target.get("source", {}), "rollback_of": target["revision"]}
        self.params["values"] = target.get("values", {})
        record = self.deploy(
            objects, store.PENDING_ROLLBACK, description=description, extra=extra, steps=steps, prunes=prunes
        )
        return self.finish(record)

    def absent(self):
        self.load_records()
        if not self.records:
            return self.finish()
        stale = store.check_lock(self.records, force_unlock=self.params["force_unlock"])
        doomed, kept = {}, []
        seen = set()
        for record in reversed(self.records):
            for obj in record.get("objects", []):
                key = plan.identity(obj)
                if key in seen or self.resource(obj["apiVersion"], obj["kind"]) is None:
                    continue
                seen.add(key)
                live = self.get_live(obj)
                if live is None or plan.owner_of(live) != (self.name, self.namespace):
                    continue
                if plan.keep(live):
                    kept.append(obj)
                else:
                    doomed[key] = (obj, live)
        doomed = [doomed[plan.identity(o)] for o in plan.uninstall_sorted([pair[0] for pair in doomed.values()])]
        self.report_plan([], doomed, kept)
        latest = store.latest(self.records)
        if not doomed and self.params["keep_history"] and latest["status"] == store.UNINSTALLED and not stale:
            return self.finish()
        self.result["changed"] = True
        if self.check:
            return self.finish()
        self.recover_stale(stale)
        for obj, _live in doomed:
            try:
                self.delete(obj)
            except DynamicApiError as exc:
                raise Failure("deleting %s failed: %s" % (plan.ref_text(obj), api_message(exc))) from exc
        if self.params["wait"]:
            self.wait_gone([o for o, _l in doomed], time.monotonic() + self.params["timeout"])
        if self.params["keep_history"]:
            for record in list(self.records):
                if record["status"] == store.DEPLOYED:
                    self.update_record(record, store.SUPERSEDED)
            latest = store.latest(self.records)
            self.update_record(
                latest, store.UNINSTALLED, description=self.params["description"] or "Uninstallation complete"
            )
            self.prune_history()
        else:
            for record in list(self.records):
                self.delete_record(record)
        return self.finish()


def main():
    argument_spec = connection_argspec()
    argument_spec.update(
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
    module = AnsibleModule(
        argument_spec=argument_spec,
        mutually_exclusive=[("definitions", "src", "chart")],
        required_if=[("state", "present", ("definitions", "src", "chart"), True)],
        supports_check_mode=True,
    )
    if YAML_IMPORT_ERROR:
        module.fail_json(msg=missing_required_lib("PyYAML"), exception=YAML_IMPORT_ERROR)
    require_kubernetes(module)
    problem = store.validate_name(module.params["name"])
    if problem:
        module.fail_json(msg=problem)
    if module.params["timeout"] < 1:
        module.fail_json(msg="timeout must be at least 1 second")
    if module.params["concurrency"] < 1:
        module.fail_json(msg="concurrency must be at least 1")
    if module.params["revision"] is not None and module.params["state"] != "rolled_back":
        module.fail_json(msg="revision is only used with state=rolled_back")
    release = None
    try:
        client = dynamic_client(module.params)
        release = Release(module, client)
        handler = {"present": release.present, "absent": release.absent, "rolled_back": release.rolled_back}
        result = handler[module.params["state"]]()
    except Failure as failure:
        details = dict(failure.details)
        details.pop("rollback_note", None)
        if release is not None:
            release.finish()
            details = dict(release.result, **details)
        module.fail_json(msg=failure.msg, invocation=safe_params(module.params), **details)
    except store.ReleaseError as exc:
        extra = release.finish() if release is not None else {}
        extra["invocation"] = safe_params(module.params)
        module.fail_json(msg="release %s/%s: %s" % (module.params["namespace"], module.params["name"], exc), **extra)
    except DynamicApiError as exc:
        module.fail_json(
            msg="Kubernetes API error: %s" % api_message(exc), status=exc.status, invocation=safe_params(module.params)
        )
    except (OSError, subprocess.SubprocessError) as exc:
        module.fail_json(msg=str(exc), exception=traceback.format_exc())
    module.exit_json(invocation=safe_params(module.params), **result)


if __name__ == "__main__":
    main()
