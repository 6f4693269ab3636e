# -*- coding: utf-8 -*-
# Copyright: anvil.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The app_release executor: one run against one release.

Reads the release records and the live objects, plans (with server-side dry runs), applies and
prunes, waits (k8s.waiter), records the outcome and rolls back atomically. Planning decisions are
the pure functions of release_plan; the record format is release_store; every request goes through
the collection's KubeClient. The module (plugins/modules/app_release.py) keeps only its options.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import socket
import tempfile
import time
import traceback

from ansible_collections.anvil.cluster.plugins.module_utils import release_plan as plan
from ansible_collections.anvil.cluster.plugins.module_utils import release_store as store
from ansible_collections.anvil.cluster.plugins.module_utils.k8s.client import ApiError
from ansible_collections.anvil.cluster.plugins.module_utils.k8s.module import ModuleFailure
from ansible_collections.anvil.cluster.plugins.module_utils.k8s.waiter import wait_until

YAML_IMPORT_ERROR = None
try:
    import yaml
except ImportError:
    YAML_IMPORT_ERROR = traceback.format_exc()


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
        raise ModuleFailure(str(exc)) from exc


class Release:
    """One run against one release: reads records and live objects, applies, waits, records."""

    def __init__(self, module, client):
        self.module = module
        self.client = client
        self.params = module.params
        self.name = self.params["name"]
        self.namespace = self.params["namespace"]
        self.check = module.check_mode
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
        return self.client.resource(api_version, kind)

    def is_namespaced(self, api_version, kind):
        res = self.resource(api_version, kind)
        return None if res is None else bool(res.namespaced)

    def res_of(self, obj):
        res = self.resource(obj["apiVersion"], obj["kind"])
        if res is None:
            raise ModuleFailure("the API server does not serve %s in %s" % (obj["kind"], obj["apiVersion"]))
        return res

    def get_live(self, obj):
        meta = obj["metadata"]
        res = self.res_of(obj)
        return self.client.get(res.api_version, res.kind, meta["name"], meta.get("namespace"))

    def apply(self, obj, dry_run=False):
        self.res_of(obj)
        return self.client.apply(obj, plan.FIELD_MANAGER, dry_run=dry_run, force=self.params["force_conflicts"])

    def delete(self, obj):
        self.res_of(obj)
        self.client.delete(obj)

    # -- records -----------------------------------------------------------------------------------

    def load_records(self):
        items = self.client.list("v1", "Secret", namespace=self.namespace, label_selector=store.selector(self.name))
        records = []
        for item in items:
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
            created = self.client.create(store.to_secret(record))
        except ApiError as exc:
            if exc.status != 409:
                raise
            raise ModuleFailure(
                "release %s/%s: revision %d was created by another run at the same time; this run did not change "
                "anything. Retry when the other run has finished." % (self.namespace, self.name, record["revision"])
            ) from exc
        record = dict(record, _resource_version=created["metadata"]["resourceVersion"])
        self._replace_record(record)
        return record

    def update_record(self, record, status, **changes):
        updated = store.with_status(record, status, **changes)
        body = store.to_secret(updated, resource_version=record.get("_resource_version"))
        try:
            result = self.client.replace(body)
        except ApiError as exc:
            if exc.status != 409:
                raise
            raise ModuleFailure(
                "release record %s changed under this run (another run used force_unlock?); the release may "
                "need attention: check its history" % body["metadata"]["name"]
            ) from exc
        updated["_resource_version"] = result["metadata"]["resourceVersion"]
        self._replace_record(updated)
        return updated

    def delete_record(self, record):
        name = store.secret_name(self.name, record["revision"])
        self.client.delete(
            {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name, "namespace": self.namespace}},
            propagation=None,
        )
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
                raise ModuleFailure(str(exc)) from exc
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
            raise ModuleFailure(
                "chart %s does not exist (chart takes the path of a local chart directory or .tgz)" % chart
            )
        helm = (
            self.module.get_bin_path(self.params["helm_binary"])
            if "/" not in self.params["helm_binary"]
            else self.params["helm_binary"]
        )
        if not helm or not os.access(helm, os.X_OK):
            raise ModuleFailure(
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
            raise ModuleFailure("helm template failed (rc=%d): %s" % (rc, err.strip() or out.strip()), cmd=cmd)
        return load_yaml_text(out, "helm template output"), source

    # -- planning ----------------------------------------------------------------------------------

    def namespace_exists(self):
        try:
            return self.client.get("v1", "Namespace", self.namespace) is not None
        except ApiError as exc:
            if exc.status != 403:
                raise
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

    def prefetch(self, objects, min_group=2):
        """Live objects of this release, one label-selected LIST per kind and namespace (instead of a GET
        per object) where at least min_group objects share them, as {identity: live}. Objects not found
        here are read one by one: they may exist without this release's label (unmanaged, or another
        release's)."""
        groups = {}
        for obj in objects:
            groups.setdefault((obj["apiVersion"], obj["kind"], obj["metadata"].get("namespace")), []).append(obj)
        live = {}
        selector = "%s=%s" % (plan.RELEASE_LABEL, self.name)
        for (api_version, kind, namespace), members in groups.items():
            if len(members) < min_group or self.resource(api_version, kind) is None:
                continue  # one GET costs the same; an unserved kind is reported by examine()
            try:
                answer = self.client.list(api_version, kind, namespace=namespace, label_selector=selector)
            except ApiError:
                continue  # e.g. may get but not list: per-object GETs will tell
            for item in answer:
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
        except ApiError as exc:
            hint = ""
            if exc.status == 409:
                hint = " (another field manager changed these fields since; set force_conflicts=true to take them back)"
            return None, "%s: %s%s" % (plan.ref_text(obj), exc, hint)
        if live is None:
            return ("create", obj, None, dry), None
        if plan.is_changed(live, dry):
            return ("update", obj, live, dry), None
        return ("unchanged", obj, live, dry), None

    def untouched_since(self, deployed, objects):
        """(steps, live objects read): every step "unchanged" when each live object is still what the deployed
        revision left (its fingerprint in the record) -- one label-selected LIST per kind and namespace and no
        dry run; steps None when any object may differ (or the record has no fingerprints), and the
        objects read serve the full plan."""
        observed = deployed.get("observed") or {}
        if any(plan.identity(obj) not in observed for obj in objects):
            return None, None
        known = self.prefetch(objects, min_group=1)
        steps = []
        for obj in objects:
            live = known.get(plan.identity(obj))
            if live is None or plan.fingerprint(live) != observed[plan.identity(obj)]:
                return None, known
            steps.append(("unchanged", obj, live, live))
        return steps, known

    def plan(self, objects, namespace_missing=False, known=None):
        """Classify desired objects and the prune set against the cluster. Fails on any problem."""
        if known is None:
            known = {} if namespace_missing else self.prefetch(objects)
        # Reads and dry-runs are independent: run them concurrently (order of results is kept).
        outcomes = []
        for _obj, outcome, error in self.client.map(lambda obj: self.examine(obj, known, namespace_missing), objects):
            if error is not None:
                raise error
            outcomes.append(outcome)
        steps = [step for step, _problem in outcomes if step]
        problems = [problem for _step, problem in outcomes if problem]
        if problems:
            raise ModuleFailure(
                "release %s/%s: nothing was applied because of %d problem(s): %s"
                % (self.namespace, self.name, len(problems), "; ".join(problems)),
                problems=problems,
            )
        prunes, kept = self.plan_prunes(objects)
        return steps, prunes, kept

    def plan_prunes(self, objects):
        """(prunes, kept): what the earlier revisions had and these objects drop, read from the cluster."""
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
        return prunes, kept

    def report_plan(self, steps, prunes, kept):
        for action, desired, live, dry in steps:
            key = {"create": "created", "update": "updated", "unchanged": "unchanged"}[action]
            self.result[key].append(plan.ref(desired))
            if action != "unchanged" and self.module.want_diff:
                self.diffs.append(plan.diff_entry(live, dry, dump_yaml))
        for obj, live in prunes:
            self.result["pruned"].append(plan.ref(obj))
            if self.module.want_diff:
                self.diffs.append(plan.diff_entry(live, None, dump_yaml))
        seen = set()
        for obj in kept:
            if plan.identity(obj) not in seen:
                seen.add(plan.identity(obj))
                self.result["kept"].append(plan.ref(obj))

    # -- applying and waiting ----------------------------------------------------------------------

    def execute(self, steps, prunes):
        """Apply and prune; returns the objects applied and {identity: fingerprint} of what they are now.
        Raises ModuleFailure on the first API error."""
        applied, observed = [], {}
        for action, desired, live, _dry in steps:
            if action == "unchanged":
                applied.append(desired)
                observed[plan.identity(desired)] = plan.fingerprint(live)
                continue
            try:
                answer = self.apply(desired)
            except ApiError as exc:
                raise ModuleFailure("applying %s failed: %s" % (plan.ref_text(desired), exc)) from exc
            applied.append(desired)
            observed[plan.identity(desired)] = plan.fingerprint(answer)
        self.delete_all(obj for obj, _live in prunes)
        return applied, observed

    def delete_all(self, objects):
        """Delete in the given order; raises ModuleFailure on the first API error."""
        for obj in objects:
            try:
                self.delete(obj)
            except ApiError as exc:
                raise ModuleFailure("deleting %s failed: %s" % (plan.ref_text(obj), exc)) from exc

    def wait_ready(self, objects, deadline):
        last = {}

        def not_ready(pending):
            still = []
            for obj in pending:
                live = self.get_live(obj)
                if live is None:
                    state, message = "waiting", "%s does not exist" % plan.ref_text(obj)
                else:
                    state, message = plan.readiness(live)
                if state == "failed":
                    raise ModuleFailure(message)
                if state == "waiting":
                    still.append(obj)
                    last[plan.identity(obj)] = message
            return still

        pending = wait_until([o for o in objects if o["kind"] in plan.WAITED_KINDS], not_ready, deadline)
        if pending:
            raise ModuleFailure(
                "timed out after %ds waiting for: %s"
                % (self.params["timeout"], "; ".join(last[plan.identity(o)] for o in pending))
            )

    def wait_gone(self, objects, deadline):
        pending = wait_until(objects, lambda items: [o for o in items if self.get_live(o) is not None], deadline)
        if pending:
            raise ModuleFailure("timed out waiting for deletion of: %s" % ", ".join(plan.ref_text(o) for o in pending))

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
            applied, observed = self.execute(steps, prunes)
            if self.params["wait"]:
                self.wait_ready(applied, deadline)
        except ModuleFailure as failure:
            record = self.update_record(record, store.FAILED, error=failure.msg, lock_owner=None, lock_expires=None)
            self.prune_history()
            details = {"failed_revision": revision}
            if allow_atomic and self.params["atomic"]:
                details.update(self.atomic_rollback(previous, revision, steps))
            note = details.pop("rollback_note", "")
            raise ModuleFailure(
                "revision %d of release %s/%s failed: %s%s" % (revision, self.namespace, self.name, failure.msg, note),
                **details,
            ) from failure
        if previous:
            self.update_record(previous, store.SUPERSEDED)
        record = self.update_record(record, store.DEPLOYED, observed=observed, lock_owner=None, lock_expires=None)
        self.prune_history()
        return record

    def atomic_rollback(self, previous, failed_revision, steps):
        if previous is None:
            # First install: remove what this run created, as if it never happened.
            created = [desired for action, desired, _l, _d in steps if action == "create"]
            for obj in plan.uninstall_sorted(created):
                try:
                    self.delete(obj)
                except ApiError as exc:
                    self.module.warn("cleanup of %s failed: %s" % (plan.ref_text(obj), exc))
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
        except ModuleFailure as rb_failure:
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
        self.result["api_requests"] = self.client.total
        if self.module.want_diff:
            self.result["diff"] = self.diffs
        return self.result

    def present(self):
        documents, source = self.documents()
        try:
            objects = plan.render(
                documents, self.name, self.namespace, self.is_namespaced, self.params["allowed_namespaces"]
            )
        except plan.PlanError as exc:
            raise ModuleFailure(
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
                raise ModuleFailure(
                    "namespace %s does not exist; create it or set create_namespace=true" % self.namespace
                )
            namespace_missing = True
        self.load_records()
        stale = store.check_lock(self.records, force_unlock=self.params["force_unlock"])
        deployed = store.last_deployed(self.records)
        digest_changed = deployed is None or deployed.get("digest") != store.digest_objects(plan.semantic_view(objects))
        steps = known = None
        if not digest_changed and not namespace_missing:
            # The manifests are the deployed revision's: if the live objects are too, nothing needs a dry run.
            steps, known = self.untouched_since(deployed, objects)
        if steps is None:
            steps, prunes, kept = self.plan(objects, namespace_missing=namespace_missing, known=known)
        else:
            prunes, kept = self.plan_prunes(objects)
        self.report_plan(steps, prunes, kept)
        objects_changed = any(action != "unchanged" for action, _d, _l, _x in steps) or bool(prunes)
        if not objects_changed and not digest_changed:
            self.recover_stale(stale)
            return self.finish(deployed)
        self.result["changed"] = True
        if self.check:
            return self.finish(deployed)
        if namespace_missing:
            self.client.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": self.namespace}})
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
                raise ModuleFailure("release %s/%s: %s" % (self.namespace, self.name, exc)) from exc
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
        self.delete_all(obj for obj, _live in doomed)
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
