"""Unit tests of release records: encoding, lock rules, history pruning, rollback targets."""

import base64
import gzip
import hashlib
import json
from datetime import timedelta

import pytest
from ansible_collections.anvil.cluster.plugins.module_utils import release_store as store

OBJ = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "a", "namespace": "ns"}, "data": {"k": "v"}}


def rec(revision, status, **extra):
    return store.new_record("shop", "ns", revision, status, [OBJ], **extra)


def test_secret_roundtrip_keeps_payload_and_labels():
    record = rec(3, store.DEPLOYED, description="Upgrade complete", values={"replicas": 2})
    secret = store.to_secret(record)
    assert secret["type"] == "anvil.cluster/release.v1"
    assert secret["metadata"]["name"] == "anvil.release.v1.shop.v3"
    assert secret["metadata"]["labels"] == {
        "owner": "anvil.cluster",
        "name": "shop",
        "version": "3",
        "status": "deployed",
    }
    # The payload is gzip-compressed JSON, base64 encoded as Secret data must be.
    raw = json.loads(gzip.decompress(base64.b64decode(secret["data"]["release"])))
    assert raw["objects"] == [OBJ]
    secret["metadata"]["resourceVersion"] = "42"
    back = store.from_secret(secret)
    assert back["_resource_version"] == "42"
    assert back["values"] == {"replicas": 2}
    assert back["description"] == "Upgrade complete"


def test_encoding_is_deterministic_and_compact():
    record = rec(1, store.DEPLOYED)
    many = [dict(OBJ, metadata={"name": "cm-%d" % i, "namespace": "ns"}) for i in range(200)]
    big = store.new_record("shop", "ns", 1, store.DEPLOYED, many)
    assert store.encode_payload(record) == store.encode_payload(record)
    # 200 similar objects compress far below their JSON size.
    assert len(store.encode_payload(big)) < len(json.dumps(many)) / 4


def test_oversized_payload_is_refused():
    # Random-looking data does not compress: make the payload exceed the limit.
    noise = base64.b64encode(bytes(range(256)) * 4000).decode()
    chunks = [hashlib.sha256(str(i).encode()).hexdigest() for i in range(30000)]
    record = store.new_record("shop", "ns", 1, store.DEPLOYED, [dict(OBJ, data={"x": "".join(chunks), "y": noise})])
    with pytest.raises(store.ReleaseError, match="too large"):
        store.encode_payload(record)


def test_label_status_wins_over_payload():
    secret = store.to_secret(rec(1, store.DEPLOYED))
    secret["metadata"]["labels"]["status"] = "superseded"
    assert store.from_secret(secret)["status"] == "superseded"


def test_corrupt_payload_raises_release_error():
    with pytest.raises(store.ReleaseError):
        store.from_secret({"metadata": {"name": "x"}, "data": {"release": "bm90IGd6aXA="}})


def test_digest_ignores_order_but_not_content():
    other = dict(OBJ, metadata={"name": "b", "namespace": "ns"})
    assert store.digest_objects([OBJ, other]) == store.digest_objects([other, OBJ])
    assert store.digest_objects([OBJ]) != store.digest_objects([dict(OBJ, data={"k": "w"})])


@pytest.mark.parametrize(
    ("name", "ok"),
    [
        ("shop", True),
        ("a" * 53, True),
        ("a" * 54, False),
        ("Shop", False),
        ("-shop", False),
        ("shop.v1", False),
        ("", False),
    ],
)
def test_validate_name(name, ok):
    assert (store.validate_name(name) is None) is ok


def test_lock_blocks_until_expiry_then_reports_stale():
    now = store.utcnow()
    pending = rec(
        2, store.PENDING_UPGRADE, lock_expires=store.lock_expiry(60, now), lock_owner={"host": "ctl", "pid": 7}
    )
    records = [rec(1, store.DEPLOYED), pending]
    with pytest.raises(store.LockedError, match=r"locked: revision 2 is pending-upgrade .* ctl, pid 7"):
        store.check_lock(records, now=now)
    later = now + timedelta(seconds=2 * 60 + 121)
    assert [r["revision"] for r in store.check_lock(records, now=later)] == [2]


def test_force_unlock_and_missing_expiry():
    now = store.utcnow()
    pending = rec(2, store.PENDING_INSTALL, lock_expires=store.lock_expiry(600, now))
    assert store.check_lock([pending], now=now, force_unlock=True) == [pending]
    legacy = rec(3, store.PENDING_ROLLBACK)  # no expiry recorded: cannot be a live lock
    assert store.check_lock([legacy], now=now) == [legacy]
    assert store.check_lock([rec(1, store.DEPLOYED), rec(2, store.FAILED)], now=now) == []


def test_prune_history_keeps_newest_and_last_deployed():
    records = [rec(1, store.SUPERSEDED), rec(2, store.DEPLOYED)] + [rec(i, store.FAILED) for i in range(3, 8)]
    doomed = [r["revision"] for r in store.prune_history(records, 3)]
    # Keep 3 records: revision 2 (last deployed) plus the two newest; never the deployed one.
    assert doomed == [1, 3, 4, 5]
    assert store.prune_history(records, 0) == []
    assert store.prune_history(records, 10) == []


def test_prune_history_never_deletes_pending():
    # Protected records (locks, the last deployed one) use the budget first; the newest others fill the rest.
    records = [rec(1, store.PENDING_INSTALL), rec(2, store.FAILED), rec(3, store.FAILED)]
    assert [r["revision"] for r in store.prune_history(records, 1)] == [2, 3]
    assert [r["revision"] for r in store.prune_history(records, 2)] == [2]


def test_rollback_target_default_skips_failed():
    records = [rec(1, store.SUPERSEDED), rec(2, store.SUPERSEDED), rec(3, store.FAILED), rec(4, store.DEPLOYED)]
    assert store.rollback_target(records)["revision"] == 2
    assert store.rollback_target(records, 1)["revision"] == 1
    with pytest.raises(store.ReleaseError, match="revision 9 not found"):
        store.rollback_target(records, 9)
    with pytest.raises(store.ReleaseError, match="no earlier"):
        store.rollback_target([rec(1, store.DEPLOYED)])
    with pytest.raises(store.ReleaseError, match="pending"):
        store.rollback_target([rec(1, store.PENDING_INSTALL)], 1)


def test_with_status_keeps_content_and_next_revision():
    record = dict(rec(1, store.PENDING_INSTALL), _resource_version="5")
    done = store.with_status(record, store.DEPLOYED, lock_owner=None)
    assert done["status"] == "deployed" and done["objects"] == record["objects"] and done["lock_owner"] is None
    assert "_resource_version" not in done and record["status"] == store.PENDING_INSTALL
    assert store.next_revision([rec(1, store.DEPLOYED), rec(4, store.FAILED)]) == 5
    assert store.next_revision([]) == 1
    assert store.last_deployed([rec(1, store.SUPERSEDED), rec(2, store.FAILED)]) is None
