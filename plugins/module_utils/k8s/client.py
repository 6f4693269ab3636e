# -*- coding: utf-8 -*-
# Copyright: anvil.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""KubeClient: the one piece of the collection that talks HTTP to a Kubernetes API server.

The connection (kubeconfig, in-cluster config, ``K8S_AUTH_*`` variables, tokens, client
certificates, impersonation) is built by kubernetes.core's client factory, so an AWX "Kubernetes"
credential or module_defaults written for kubernetes.core work unchanged; only the common kubeconfig
(server, CA, token or client certificate) is read by kubeconfig.py, which spares importing the
kubernetes package. Requests then go as raw
JSON through urllib3 with that configuration's TLS settings and credentials, skipping the generated
models: (de)serialising thousands of objects into models costs more than the HTTP calls, and the
modules need what the typed client makes awkward (eviction preconditions, server-side apply, field
selectors). The same code runs on every ``kubernetes`` client release from 24.2.0 on, because it
uses only the configuration and urllib3 pool that all of them expose.

What every caller gets:
- retries with exponential backoff on 429 (throttled), on 5xx other than 501 for idempotent methods,
  and on connection failures (any method when the request never reached the server, idempotent
  methods otherwise); a caller that must see every refusal (an eviction answered 429 by a
  PodDisruptionBudget) passes ``retry=False``;
- request counting per label (``calls``, ``total``), as the modules report and the benchmarks use;
- one HTTP connection per concurrent worker (the pool is sized to ``concurrency``) and ``map`` to run
  calls with at most that many in flight;
- one error type, ApiError, carrying status, reason, message, details and Retry-After.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import os
import ssl
import tempfile
import threading
import time
import traceback
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import urlencode

from ansible_collections.anvil.cluster.plugins.module_utils.k8s.kubeconfig import direct_settings
from ansible_collections.anvil.cluster.plugins.module_utils.k8s.resources import Catalog

IMPORT_ERROR = None
try:
    import urllib3
except ImportError:
    IMPORT_ERROR = traceback.format_exc()

# Our PATCH requests are server-side applies and merge patches, which give the same result when repeated.
IDEMPOTENT = frozenset(["GET", "HEAD", "PUT", "DELETE", "PATCH"])
BACKOFF_INITIAL = 0.2
BACKOFF_MAX = 5.0


class ApiError(Exception):
    """A failed API call: HTTP status (0 when the server was not reached), reason, message, details."""

    def __init__(self, status, reason="", message="", details=None, *, retry_after=None, path=""):
        self.status = status
        self.reason = reason
        self.message = message or reason or "HTTP %s" % status
        self.path = path
        self.details = details or {}
        self.retry_after = retry_after
        super(ApiError, self).__init__("%s %s: %s" % (status, reason, self.message))


def describe(err, host=None):
    """A message for an ApiError that says what to check or change."""
    where = " at %s" % host if host else ""
    if err.status == 0:
        return (
            "cannot reach the Kubernetes API server%s (%s): check host / kubeconfig / context and that the "
            "API server is up" % (where, err.message)
        )
    if err.status == 401:
        return (
            "the Kubernetes API server%s rejected the credentials (401 Unauthorized): check the kubeconfig, "
            "api_key or client certificate" % where
        )
    if err.status == 403:
        return "forbidden (403): %s; grant the missing permission to these credentials (RBAC)" % err.message
    return str(err)


def _retry_after(headers):
    value = (headers or {}).get("Retry-After")
    try:
        return float(value) if value is not None else None
    except (TypeError, ValueError):
        return None


def _not_sent(exc):
    """True when a connection error happened before the request reached the server."""
    return isinstance(exc, (urllib3.exceptions.NewConnectionError, urllib3.exceptions.ConnectTimeoutError))


def _ssl_context(settings):
    """TLS for kubeconfig.direct_settings: its CA (or no verification), its client certificate. A
    certificate given as data is loaded through a private temporary file that is removed at once."""
    context = ssl.create_default_context(cafile=settings.get("ca_file"), cadata=settings.get("ca_data"))
    if not settings["verify"]:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    if "cert_file" in settings or "cert_data" in settings:
        scratch = tempfile.mkdtemp(prefix="anvil-kube-")
        try:
            paths = {}
            for kind in ("cert", "key"):
                paths[kind] = settings.get("%s_file" % kind)
                if paths[kind] is None:
                    paths[kind] = os.path.join(scratch, kind)
                    with os.fdopen(os.open(paths[kind], os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "w") as out:
                        out.write(settings["%s_data" % kind])
            context.load_cert_chain(paths["cert"], paths["key"])
        finally:
            for name in os.listdir(scratch):
                os.unlink(os.path.join(scratch, name))
            os.rmdir(scratch)
    return context


class KubeClient:
    """JSON REST access to one API server; safe for concurrent use from ``map``."""

    def __init__(self, api_client, concurrency=8, *, timeout=60, retries=5, sleep=time.sleep, direct=None):
        """A client on a kubernetes ApiClient's configuration, or (``direct``, api_client None) on the
        settings kubeconfig.direct_settings read."""
        self.concurrency = max(1, int(concurrency))
        self.timeout = timeout
        self.retries = retries
        self.calls = {}
        self._sleep = sleep
        self._lock = threading.Lock()
        if direct is not None:
            self.host = direct["host"]
            self._config = None
            self._headers = {"Authorization": "Bearer %s" % direct["token"]} if direct.get("token") else {}
            self._pool = urllib3.PoolManager(maxsize=self.concurrency, ssl_context=_ssl_context(direct))
            self.catalog = Catalog(self._discover)
            return
        from kubernetes.client import rest  # pylint: disable=import-outside-toplevel

        config = api_client.configuration
        self.host = (config.host or "").rstrip("/")
        self._config = config
        self._headers = dict(getattr(api_client, "default_headers", None) or {})
        if (getattr(config, "connection_pool_maxsize", None) or 0) < self.concurrency:
            # One HTTP connection per worker thread, instead of urllib3 discarding the extra ones.
            config.connection_pool_maxsize = self.concurrency
            self._pool = rest.RESTClientObject(config).pool_manager
        else:
            self._pool = api_client.rest_client.pool_manager
        self.catalog = Catalog(self._discover)

    @classmethod
    def from_params(cls, params, concurrency=8, **kwargs):
        """A client for a module's kubernetes.core connection options (kubeconfig, host, api_key, ...).

        The common kubeconfig (server, CA, token or client certificate) is read here, without importing
        the kubernetes package (kubeconfig.py says why); everything else goes through kubernetes.core."""
        from ansible_collections.kubernetes.core.plugins.module_utils.args_common import AUTH_ARG_SPEC

        auth = dict((key, params.get(key)) for key in AUTH_ARG_SPEC if params.get(key) is not None)
        # PyYAML: a requirement of the kubernetes package too, imported only when a module connects.
        import yaml  # pylint: disable=import-outside-toplevel

        direct = direct_settings(auth, yaml.safe_load)
        if direct is not None:
            return cls(None, concurrency=concurrency, direct=direct, **kwargs)
        from ansible_collections.kubernetes.core.plugins.module_utils.k8s.client import get_api_client

        return cls(get_api_client(**auth).client.client, concurrency=concurrency, **kwargs)

    # -- counting ----------------------------------------------------------------------------------

    def _count(self, what):
        with self._lock:
            self.calls[what] = self.calls.get(what, 0) + 1

    @property
    def total(self):
        return sum(self.calls.values())

    def report(self):
        """Request counts per label plus ``total``, as modules return them."""
        calls = dict(self.calls)
        calls["total"] = sum(calls.values())
        return calls

    # -- transport ---------------------------------------------------------------------------------

    def _auth_headers(self):
        headers = {}
        if self._config is None:
            return headers
        for setting in self._config.auth_settings().values():
            if setting.get("in") == "header" and setting.get("value"):
                headers[setting["key"]] = setting["value"]
        return headers

    def _send(self, method, path, query, body, content_type):
        headers = dict(self._headers)
        headers.update(self._auth_headers())
        headers["Accept"] = "application/json"
        url = self.host + path
        if query:
            url += "?" + urlencode(list(query.items()))
        payload = None
        if body is not None:
            headers["Content-Type"] = content_type or "application/json"
            payload = json.dumps(body)
        response = self._pool.request(
            method, url, body=payload, headers=headers, timeout=self.timeout, retries=False, preload_content=True
        )
        return response.status, response.data, response.headers

    def request(self, method, path, query=None, body=None, *, content_type=None, what=None, retry=True):
        """Send one request; return the decoded JSON body ({} when empty). Raises ApiError."""
        delay = BACKOFF_INITIAL
        for attempt in range(self.retries + 1):
            self._count(what or method)
            last = attempt == self.retries or not retry
            try:
                status, data, headers = self._send(method, path, query, body, content_type)
            except urllib3.exceptions.HTTPError as exc:
                if last or not (_not_sent(exc) or method in IDEMPOTENT):
                    raise ApiError(0, "ConnectionError", str(exc), path=path) from exc
                self._sleep(delay)
                delay = min(delay * 2, BACKOFF_MAX)
                continue
            if 200 <= status <= 299:
                return json.loads(data) if data else {}
            retry_after = _retry_after(headers)
            retryable = status == 429 or (status >= 500 and status != 501 and method in IDEMPOTENT)
            if last or not retryable:
                break
            self._sleep(max(delay, retry_after or 0))
            delay = min(delay * 2, BACKOFF_MAX)
        try:
            payload = json.loads(data)
        except (TypeError, ValueError):
            payload = None
        payload = payload if isinstance(payload, dict) else {}
        text = data.decode("utf-8", "replace") if isinstance(data, bytes) else (data or "")
        raise ApiError(
            status,
            payload.get("reason") or "",
            payload.get("message") or text[:500],
            details=payload.get("details"),
            retry_after=retry_after,
            path=path,
        )

    def _discover(self, prefix):
        try:
            return self.request("GET", prefix, what="discovery")
        except ApiError as exc:
            if exc.status == 404:
                return None
            raise

    # -- resources ---------------------------------------------------------------------------------

    def resource(self, api_version, kind):
        """The Resource of a kind, or None when the server does not serve it."""
        return self.catalog.lookup(api_version, kind)

    def _resource(self, api_version, kind):
        res = self.catalog.lookup(api_version, kind)
        if res is None:
            raise ApiError(404, "NotFound", "the API server does not serve %s in %s" % (kind, api_version))
        return res

    def path_of(self, obj, subresource=None):
        meta = obj.get("metadata") or {}
        res = self._resource(obj["apiVersion"], obj["kind"])
        return res.path(meta["name"], meta.get("namespace"), subresource)

    # -- verbs -------------------------------------------------------------------------------------

    def get(self, api_version, kind, name, namespace=None, *, what=None):
        """One object, or None if it does not exist."""
        try:
            obj = self.request("GET", self._resource(api_version, kind).path(name, namespace), what=what)
        except ApiError as exc:
            if exc.status == 404:
                return None
            raise
        obj.setdefault("apiVersion", api_version)
        obj.setdefault("kind", kind)
        return obj

    def list(
        self,
        api_version,
        kind,
        namespace=None,
        *,
        label_selector=None,
        field_selector=None,
        page_size=500,
        limit=None,
        what=None,
    ):
        """Objects of a kind (every namespace unless ``namespace``), following continue tokens.

        ``limit`` stops after the first page of that size (to name a few examples, not to read all).
        """
        path = self._resource(api_version, kind).collection_path(namespace)
        query = {"limit": limit or page_size}
        if label_selector:
            query["labelSelector"] = label_selector
        if field_selector:
            query["fieldSelector"] = field_selector
        items = []
        while True:
            page = self.request("GET", path, dict(query), what=what)
            for item in page.get("items") or []:
                item.setdefault("apiVersion", api_version)
                item.setdefault("kind", kind)
                items.append(item)
            token = (page.get("metadata") or {}).get("continue")
            if not token or limit:
                return items
            query["continue"] = token

    def apply(self, obj, manager, *, dry_run=False, force=True, what=None):
        """Server-side apply (creates or updates); returns the resulting object."""
        query = {"fieldManager": manager}
        if force:
            query["force"] = "true"
        if dry_run:
            query["dryRun"] = "All"
        return self.request(
            "PATCH", self.path_of(obj), query, obj, content_type="application/apply-patch+yaml", what=what
        )

    def create(self, obj, dry_run=False, what=None):
        meta = obj.get("metadata") or {}
        res = self._resource(obj["apiVersion"], obj["kind"])
        query = {"dryRun": "All"} if dry_run else None
        return self.request("POST", res.collection_path(meta.get("namespace")), query, obj, what=what)

    def replace(self, obj, what=None):
        """PUT the whole object (with metadata.resourceVersion set, a 409 means someone else changed it)."""
        return self.request("PUT", self.path_of(obj), body=obj, what=what)

    def patch(self, api_version, kind, name, patch, namespace=None, *, what=None):
        """A JSON merge patch."""
        path = self._resource(api_version, kind).path(name, namespace)
        return self.request("PATCH", path, body=patch, content_type="application/merge-patch+json", what=what)

    def post_subresource(self, obj, subresource, body, *, what=None, retry=True):
        """POST to a subresource of an object (e.g. pods/eviction)."""
        return self.request("POST", self.path_of(obj, subresource), body=body, what=what, retry=retry)

    def delete(self, obj, *, dry_run=False, propagation="Background", options=None, what=None, retry=True):
        """Delete; returns True if something was deleted, False if it was already gone."""
        body = {"kind": "DeleteOptions", "apiVersion": "v1"}
        if propagation:
            body["propagationPolicy"] = propagation
        body.update(options or {})
        query = None
        if dry_run:
            query = {"dryRun": "All"}
            body["dryRun"] = ["All"]
        try:
            self.request("DELETE", self.path_of(obj), query, body, what=what, retry=retry)
        except ApiError as exc:
            if exc.status == 404:
                return False
            raise
        return True

    def whoami(self):
        """The user name these credentials authenticate as (SelfSubjectReview)."""
        body = {"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"}
        data = self.create(body, what="whoami")
        return ((data.get("status") or {}).get("userInfo") or {}).get("username")

    # -- concurrency -------------------------------------------------------------------------------

    def map(self, func, items):
        """Run func(item) for every item with at most ``concurrency`` in flight.

        Returns [(item, result, error)] in input order; an exception is captured, never raised.
        """
        items = list(items)

        def call(item):
            try:
                return item, func(item), None
            except Exception as exc:  # pylint: disable=broad-except
                return item, None, exc

        if len(items) <= 1 or self.concurrency == 1:
            return [call(i) for i in items]
        with ThreadPoolExecutor(max_workers=min(self.concurrency, len(items))) as pool:
            return list(pool.map(call, items))
