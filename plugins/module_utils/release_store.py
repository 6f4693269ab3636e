# -*- coding: utf-8 -*-
# Copyright: anvil.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Release records of anvil.cluster.app_release: encoding, lock rules and history policy.

Pure logic, no Kubernetes calls and no AnsibleModule: the module reads and writes the Secrets.

One record per revision, stored as a Secret in the release namespace:

- name ``anvil.release.v1.<release>.v<revision>`` (so creating the record of revision N+1 is an
  atomic compare-and-swap: two concurrent runs cannot both create it, the API server answers 409);
- type ``anvil.cluster/release.v1``;
- labels ``owner=anvil.cluster``, ``name``, ``version`` (the revision) and ``status``, so history is
  listed with one label-selected LIST without decoding payloads;
- ``data.release``: the JSON payload, gzip-compressed (Kubernetes base64-encodes ``data`` values, so
  the stored form is gzip+base64 JSON). The payload holds the rendered objects, values, status,
  description, timestamps and the lock owner.

A record's content (objects, values, source) never changes after creation; only its status moves on
(pending-* -> deployed -> superseded, or pending-* -> failed).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import base64
import copy
import gzip
import hashlib
import json
import re
from datetime import datetime, timedelta, timezone

SECRET_TYPE = "anvil.cluster/release.v1"
OWNER = "anvil.cluster"
PAYLOAD_KEY = "release"
# Secrets are limited to 1 MiB by the API server (etcd's request limit is 1.5 MiB); stay well under.
MAX_PAYLOAD_BYTES = 768 * 1024

PENDING_INSTALL = "pending-install"
PENDING_UPGRADE = "pending-upgrade"
PENDING_ROLLBACK = "pending-rollback"
DEPLOYED = "deployed"
SUPERSEDED = "superseded"
FAILED = "failed"
UNINSTALLED = "uninstalled"
PENDING_STATUSES = (PENDING_INSTALL, PENDING_UPGRADE, PENDING_ROLLBACK)
STATUSES = (*PENDING_STATUSES, DEPLOYED, SUPERSEDED, FAILED, UNINSTALLED)

# Release names become part of label values (63 chars) and Secret names: keep them DNS-1123 labels with
# room for the record prefix, like Helm's 53-character limit.
NAME_RE = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
MAX_NAME_LENGTH = 53


class ReleaseError(Exception):
    """A problem with release records that the user has to act on."""


class LockedError(ReleaseError):
    """Another run holds the release (a pending record that has not expired)."""


def utcnow():
    return datetime.now(timezone.utc)


def timestamp(moment=None):
    return (moment or utcnow()).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_timestamp(text):
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc)


def validate_name(name):
    """Return an error message for an unusable release name, or None."""
    if not name or len(name) > MAX_NAME_LENGTH or not NAME_RE.match(name):
        return (
            "release name %r must be a DNS-1123 label (lowercase letters, digits and '-', starting and ending "
            "with a letter or digit) of at most %d characters" % (name, MAX_NAME_LENGTH)
        )
    return None


def secret_name(release, revision):
    return "anvil.release.v1.%s.v%d" % (release, revision)


def selector(release=None):
    """Label selector listing the records of one release (or of every release when None)."""
    sel = "owner=%s" % OWNER
    if release:
        sel += ",name=%s" % release
    return sel


def digest_objects(objects):
    """Stable digest of rendered objects (order-independent): equal input, equal digest."""
    canonical = sorted(json.dumps(obj, sort_keys=True, separators=(",", ":")) for obj in objects)
    return "sha256:" + hashlib.sha256("\n".join(canonical).encode("utf-8")).hexdigest()


def encode_payload(payload):
    """JSON -> gzip -> base64 text (the value of the Secret's data.release)."""
    raw = json.dumps(payload, sort_keys=True, separators=(",", ":")).encode("utf-8")
    # mtime=0 keeps the encoding deterministic (same payload, same bytes).
    packed = gzip.compress(raw, compresslevel=9, mtime=0)
    encoded = base64.b64encode(packed).decode("ascii")
    if len(encoded) > MAX_PAYLOAD_BYTES:
        raise ReleaseError(
            "the release record would be %d bytes after compression (limit %d): the release is too large "
            "for one record; split it into several releases or move large data (files, dashboards) out of "
            "the manifests" % (len(encoded), MAX_PAYLOAD_BYTES)
        )
    return encoded


def decode_payload(text):
    try:
        return json.loads(gzip.decompress(base64.b64decode(text)).decode("utf-8"))
    except (ValueError, OSError, TypeError) as exc:
        raise ReleaseError("cannot decode release record payload: %s" % exc) from exc


def new_record(release, namespace, revision, status, objects, **extra):
    """A fresh record (payload dict). ``extra`` keys: description, values, source, rollback_of, ..."""
    now = timestamp()
    record = {
        "name": release,
        "namespace": namespace,
        "revision": revision,
        "status": status,
        "objects": objects,
        "digest": digest_objects(objects),
        "description": "",
        "values": {},
        "source": {},
        "first_deployed": now,
        "created": now,
        "updated": now,
    }
    record.update(extra)
    return record


def to_secret(record, resource_version=None):
    """The Secret manifest (a dict for the Kubernetes API) holding a record."""
    metadata = {
        "name": secret_name(record["name"], record["revision"]),
        "namespace": record["namespace"],
        "labels": {
            "owner": OWNER,
            "name": record["name"],
            "version": str(record["revision"]),
            "status": record["status"],
        },
    }
    if resource_version:
        metadata["resourceVersion"] = resource_version
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": SECRET_TYPE,
        "metadata": metadata,
        "data": {PAYLOAD_KEY: encode_payload(record)},
    }


def from_secret(secret):
    """Decode a Secret (dict as returned by the API) into a record; adds ``_resource_version``."""
    data = secret.get("data") or {}
    if PAYLOAD_KEY not in data:
        raise ReleaseError("Secret %s has no %r key" % (secret.get("metadata", {}).get("name"), PAYLOAD_KEY))
    record = decode_payload(data[PAYLOAD_KEY])
    labels = secret.get("metadata", {}).get("labels") or {}
    # The label is what listing relies on; if someone edited it, trust the label over the payload.
    if labels.get("status") in STATUSES:
        record["status"] = labels["status"]
    record["_resource_version"] = secret.get("metadata", {}).get("resourceVersion")
    return record


def with_status(record, status, **changes):
    """A copy of a record with a new status (content fields untouched)."""
    updated = copy.deepcopy(record)
    updated.pop("_resource_version", None)
    updated["status"] = status
    updated["updated"] = timestamp()
    updated.update(changes)
    return updated


def sort_history(records):
    return sorted(records, key=lambda r: r["revision"])


def latest(records):
    return sort_history(records)[-1] if records else None


def last_deployed(records):
    """The newest record in status deployed (there should be at most one)."""
    deployed = [r for r in records if r["status"] == DEPLOYED]
    return sort_history(deployed)[-1] if deployed else None


def next_revision(records):
    return max([r["revision"] for r in records] or [0]) + 1


def lock_expiry(timeout_seconds, now=None):
    """When a pending record written now becomes stale: the run's own worst case plus a margin.

    A run waits at most ``timeout`` for its revision and, when atomic, ``timeout`` again for the
    rollback; applying and recording take seconds. A record still pending after that belongs to a run
    that died (killed controller, lost connection) and may be recovered.
    """
    return timestamp((now or utcnow()) + timedelta(seconds=2 * int(timeout_seconds) + 120))


def check_lock(records, now=None, force_unlock=False):
    """Return the pending records that are stale (to be marked failed), or raise LockedError.

    A pending record is a lock. While it has not expired, another run is presumed to be working on the
    release and this run must not touch it. After expiry (or with ``force_unlock``) the caller marks it
    failed and continues.
    """
    now = now or utcnow()
    pending = [r for r in records if r["status"] in PENDING_STATUSES]
    stale = []
    for record in sort_history(pending):
        expires = record.get("lock_expires")
        expired = expires is None or parse_timestamp(expires) <= now
        if expired or force_unlock:
            stale.append(record)
            continue
        holder = record.get("lock_owner") or {}
        raise LockedError(
            "release %s/%s is locked: revision %d is %s since %s (run by %s, pid %s); another run is in progress. "
            "Retry after it finishes; the lock expires at %s, or set force_unlock=true if you are sure that "
            "run is gone."
            % (
                record["namespace"],
                record["name"],
                record["revision"],
                record["status"],
                record.get("created"),
                holder.get("host", "unknown host"),
                holder.get("pid", "?"),
                expires,
            )
        )
    return stale


def prune_history(records, history_max):
    """Records to delete so that at most ``history_max`` remain (0 means unlimited).

    The newest records are kept; the last deployed record and pending records (locks) are never
    deleted, even if that leaves more than ``history_max`` records.
    """
    if not history_max or history_max < 1:
        return []
    ordered = sort_history(records)
    deployed = last_deployed(records)
    protected = {r["revision"] for r in ordered if r["status"] in PENDING_STATUSES}
    if deployed:
        protected.add(deployed["revision"])
    excess = len(ordered) - history_max
    doomed = []
    for record in ordered:
        if excess <= 0:
            break
        if record["revision"] in protected:
            continue
        doomed.append(record)
        excess -= 1
    return doomed


def rollback_target(records, revision=None):
    """The record to roll back to: ``revision`` if given, else the previous successfully deployed one.

    "Previous" is the newest revision older than the deployed one that was itself deployed once
    (status superseded); failed revisions are skipped.
    """
    by_revision = {r["revision"]: r for r in records}
    if revision is not None:
        if revision not in by_revision:
            raise ReleaseError(
                "revision %d not found in the release history (available: %s)"
                % (revision, ", ".join(str(r) for r in sorted(by_revision)) or "none")
            )
        target = by_revision[revision]
        if target["status"] in PENDING_STATUSES:
            raise ReleaseError("revision %d is %s and cannot be a rollback target" % (revision, target["status"]))
        return target
    current = last_deployed(records)
    if current is None:
        raise ReleaseError("the release has no deployed revision to roll back from; give revision explicitly")
    candidates = [r for r in records if r["revision"] < current["revision"] and r["status"] == SUPERSEDED]
    if not candidates:
        raise ReleaseError(
            "no earlier successfully deployed revision before revision %d; give revision explicitly"
            % current["revision"]
        )
    return sort_history(candidates)[-1]


def summary(record):
    """The short view of a record returned to playbooks."""
    return {
        "revision": record["revision"],
        "status": record["status"],
        "description": record.get("description", ""),
        "updated": record.get("updated"),
        "digest": record.get("digest"),
        "rollback_of": record.get("rollback_of"),
    }
