"""The collection's Kubernetes layer (plugins/module_utils/k8s): paths, discovery, retries, counting, waiting.

The transport is a fake urllib3 pool (pure logic under test: which requests are sent, retried, counted);
the integration suite runs the same client against a real API server.
"""

import json

import pytest
import urllib3
from ansible_collections.anvil.cluster.plugins.module_utils.k8s.client import ApiError, KubeClient, describe
from ansible_collections.anvil.cluster.plugins.module_utils.k8s.resources import Catalog, builtin, parse_discovery
from ansible_collections.anvil.cluster.plugins.module_utils.k8s.waiter import wait_until

RB = {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding", "metadata": {"name": "x", "namespace": "n"}}


class Response:
    def __init__(self, status, body=None, headers=None):
        self.status = status
        self.data = json.dumps(body).encode() if body is not None else b""
        self.headers = headers or {}


class FakePool:
    """Answers queued responses (or raises queued exceptions) and records every request."""

    def __init__(self, answers):
        self.answers = list(answers)
        self.sent = []

    def request(self, method, url, body=None, headers=None, **_kwargs):
        self.sent.append((method, url, json.loads(body) if body else None, dict(headers or {})))
        answer = self.answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer


class Config:
    host = "https://api.example:6443/"
    connection_pool_maxsize = 64

    def auth_settings(self):
        return {"BearerToken": {"in": "header", "key": "authorization", "value": "Bearer t0ken"}}


class ApiClientStub:
    def __init__(self, pool):
        self.configuration = Config()
        self.default_headers = {"User-Agent": "test"}
        self.rest_client = type("Rest", (), {"pool_manager": pool})()


def client(answers, **kwargs):
    pool = FakePool(answers)
    slept = []
    kube = KubeClient(ApiClientStub(pool), sleep=slept.append, **kwargs)
    return kube, pool, slept


def test_paths():
    assert builtin("v1", "Namespace").collection_path() == "/api/v1/namespaces"
    assert builtin("v1", "ResourceQuota").collection_path("a") == "/api/v1/namespaces/a/resourcequotas"
    assert (
        builtin("networking.k8s.io/v1", "NetworkPolicy").collection_path()
        == "/apis/networking.k8s.io/v1/networkpolicies"
    )
    kube, _pool, _slept = client([])
    assert kube.path_of(RB) == "/apis/rbac.authorization.k8s.io/v1/namespaces/n/rolebindings/x"
    # A cluster-scoped kind ignores a namespace in metadata; subresources append.
    assert kube.path_of({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "a", "namespace": "x"}}) == (
        "/api/v1/nodes/a"
    )
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "namespace": "n"}}
    assert kube.path_of(pod, "eviction") == "/api/v1/namespaces/n/pods/p/eviction"


def test_discovery_once_per_group_version_and_unserved_kinds():
    fetched = []
    document = {
        "resources": [
            {"name": "widgets", "kind": "Widget", "namespaced": True},
            {"name": "widgets/status", "kind": "Widget", "namespaced": True},
            {"name": "gadgets", "kind": "Gadget", "namespaced": False},
        ]
    }

    def fetch(prefix):
        fetched.append(prefix)
        return document if prefix == "/apis/example.com/v1" else None

    catalog = Catalog(fetch)
    widget = catalog.lookup("example.com/v1", "Widget")
    assert (widget.plural, widget.namespaced) == ("widgets", True)
    assert catalog.lookup("example.com/v1", "Gadget").collection_path("ns") == "/apis/example.com/v1/gadgets"
    assert catalog.lookup("example.com/v1", "Missing") is None
    assert catalog.lookup("example.com/v2", "Widget") is None
    assert catalog.lookup("apps/v1", "Deployment").plural == "deployments"  # built in: no request
    assert fetched == ["/apis/example.com/v1", "/apis/example.com/v2"]
    assert parse_discovery("v1", None) == {}


def test_request_sends_credentials_json_and_counts_by_label():
    kube, pool, _slept = client([Response(200, {"kind": "Namespace"}), Response(200, {"items": []})])
    assert kube.get("v1", "Namespace", "a", what="get ns") == {"kind": "Namespace", "apiVersion": "v1"}
    assert kube.list("v1", "Pod", field_selector="spec.nodeName=n1", what="list pods") == []
    method, url, _body, headers = pool.sent[0]
    assert (method, url) == ("GET", "https://api.example:6443/api/v1/namespaces/a")
    assert headers["authorization"] == "Bearer t0ken" and headers["User-Agent"] == "test"
    assert pool.sent[1][1] == "https://api.example:6443/api/v1/pods?limit=500&fieldSelector=spec.nodeName%3Dn1"
    assert kube.report() == {"get ns": 1, "list pods": 1, "total": 2}


def test_list_follows_continue_tokens_and_a_limit_reads_one_page():
    pages = [
        Response(200, {"items": [{"metadata": {"name": "a"}}], "metadata": {"continue": "t1"}}),
        Response(200, {"items": [{"metadata": {"name": "b"}}], "metadata": {}}),
    ]
    kube, pool, _slept = client(pages)
    assert [i["metadata"]["name"] for i in kube.list("v1", "Secret", namespace="n")] == ["a", "b"]
    assert pool.sent[1][1].endswith("continue=t1")
    kube, pool, _slept = client([Response(200, {"items": [], "metadata": {"continue": "t"}})])
    kube.list("apps/v1", "Deployment", namespace="n", limit=20)
    assert len(pool.sent) == 1 and "limit=20" in pool.sent[0][1]


def test_throttling_and_server_errors_are_retried_with_backoff():
    answers = [Response(429, {"reason": "TooManyRequests"}, {"Retry-After": "2"}), Response(503, {}), Response(200, {})]
    kube, pool, slept = client(answers)
    kube.apply(RB, "m")
    assert len(pool.sent) == 3 and kube.total == 3
    assert slept == [2.0, 0.4]  # Retry-After honoured, then the doubled backoff


def test_server_error_on_create_is_not_retried_and_carries_status_reason_details():
    body = {"reason": "InternalError", "message": "boom", "details": {"causes": [{"reason": "x"}]}}
    kube, pool, _slept = client([Response(500, body)])
    with pytest.raises(ApiError) as err:
        kube.create({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "namespace": "n"}})
    assert (err.value.status, err.value.reason, err.value.message) == (500, "InternalError", "boom")
    assert err.value.details == {"causes": [{"reason": "x"}]} and len(pool.sent) == 1


def test_retry_false_shows_every_refusal():
    refusal = {
        "reason": "TooManyRequests",
        "message": "Cannot evict pod as it would violate the pod's disruption budget.",
    }
    kube, pool, slept = client([Response(429, refusal)])
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "namespace": "n"}}
    with pytest.raises(ApiError) as err:
        kube.post_subresource(pod, "eviction", {"kind": "Eviction"}, retry=False)
    assert err.value.status == 429 and len(pool.sent) == 1 and slept == []


def test_connection_errors_retry_where_safe():
    refused = urllib3.exceptions.NewConnectionError(None, "connection refused")
    reset = urllib3.exceptions.ProtocolError("connection reset")
    # Not sent at all: any method is retried.
    kube, pool, _slept = client([refused, Response(201, {"metadata": {"resourceVersion": "1"}})])
    kube.create({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s", "namespace": "n"}})
    assert len(pool.sent) == 2
    # Reset after sending: a POST may have been applied, so it is not repeated; a GET is.
    kube, pool, _slept = client([reset])
    with pytest.raises(ApiError) as err:
        kube.create({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s", "namespace": "n"}})
    assert err.value.status == 0 and len(pool.sent) == 1
    kube, pool, _slept = client([reset, Response(200, {})])
    assert kube.get("v1", "Node", "a") == {"apiVersion": "v1", "kind": "Node"}


def test_retries_are_bounded():
    kube, pool, slept = client([Response(503, {})] * 3, retries=2)
    with pytest.raises(ApiError):
        kube.get("v1", "Node", "a")
    assert len(pool.sent) == 3 and slept == [0.2, 0.4]


def test_get_and_delete_of_missing_objects():
    kube, _pool, _slept = client([Response(404, {"reason": "NotFound"}), Response(404, {"reason": "NotFound"})])
    assert kube.get("v1", "Node", "gone") is None
    assert kube.delete(RB) is False


def test_unserved_kind_is_an_api_error():
    kube, _pool, _slept = client([Response(404, {})])
    with pytest.raises(ApiError, match=r"does not serve Widget in example\.com/v1"):
        kube.path_of({"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"}})


def test_describe_says_what_to_fix():
    assert "check host / kubeconfig" in describe(ApiError(0, "ConnectionError", "refused"), "https://h")
    assert "credentials" in describe(ApiError(401, "Unauthorized"))
    assert "RBAC" in describe(ApiError(403, "Forbidden", 'pods "p" is forbidden'))
    assert describe(ApiError(422, "Invalid", "bad")) == "422 Invalid: bad"


def test_map_keeps_order_and_captures_errors():
    kube, _pool, _slept = client([], concurrency=4)

    def work(n):
        if n == 2:
            raise ValueError("two")
        return n * 10

    results = kube.map(work, [1, 2, 3])
    assert [(i, r) for i, r, _e in results] == [(1, 10), (2, None), (3, 30)]
    assert isinstance(results[1][2], ValueError)


def test_wait_until_stops_when_done_or_at_the_deadline():
    now = [0.0]

    def sleep(seconds):
        now[0] += seconds

    rounds = []

    def still(pending):
        rounds.append(list(pending))
        return [p for p in pending if p > len(rounds)]

    assert wait_until([1, 2, 3], still, deadline=100, clock=lambda: now[0], sleep=sleep) == []
    assert rounds == [[1, 2, 3], [2, 3], [3]]
    assert wait_until(["x"], lambda p: p, deadline=2.5, clock=lambda: now[0] - 2, sleep=sleep) == ["x"]
