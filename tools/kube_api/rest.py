"""Talking to the instance's API.

Starting the instance talks to the API through a tiny keep-alive HTTPS client instead of the
kubernetes package: importing that package costs 1-3 s on a busy 2-core host (a large part of a 3-node
start), and it validates every body through pydantic models, which made creating nodes about 25%
slower (200 nodes: 3.1 s against 2.4 s). Tests use the real kubernetes client (api_client()).
"""

from __future__ import annotations

import json
import ssl
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Iterable

from tools.kube_api.errors import KubeApiError
from tools.kube_api.instance import Instance


def api_client(kubeconfig: Path | str):
    """A kubernetes.client.ApiClient for the given kubeconfig."""
    from kubernetes import config

    return config.new_client_from_config(config_file=str(kubeconfig))


class Rest:
    """Minimal JSON-over-HTTPS client with client-certificate auth, one connection per thread."""

    def __init__(self, server: str, ca_file: str, cert_file: str | None = None, key_file: str | None = None):
        import threading
        import urllib.parse

        url = urllib.parse.urlsplit(server)
        self.host, self.port = url.hostname, url.port or 443
        self.ctx = ssl.create_default_context(cafile=ca_file)
        if cert_file:
            self.ctx.load_cert_chain(cert_file, key_file)
        self._local = threading.local()

    @classmethod
    def for_instance(cls, inst: Instance) -> Rest:
        pki = inst.pki
        return cls(inst.server, str(pki / "ca.crt"), str(pki / "admin.crt"), str(pki / "admin.key"))

    @classmethod
    def of(cls, client) -> Rest:
        """Accept a Rest, an Instance or a kubernetes ApiClient (its host and certificate files)."""
        if isinstance(client, Rest):
            return client
        if isinstance(client, Instance):
            return cls.for_instance(client)
        cfg = client.configuration
        return cls(cfg.host, cfg.ssl_ca_cert, cfg.cert_file, cfg.key_file)

    def request(self, method: str, path: str, body: dict | None = None, ok: Iterable[int] = (200, 201)) -> tuple:
        import http.client

        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._local.conn = http.client.HTTPSConnection(self.host, self.port, context=self.ctx, timeout=120)
        headers = {"Accept": "application/json"}
        payload = None
        if body is not None:
            payload = json.dumps(body)
            headers["Content-Type"] = "application/json"
        try:
            conn.request(method, path, payload, headers)
            resp = conn.getresponse()
            data = resp.read()
        except (OSError, http.client.HTTPException):
            self._local.conn = None  # reconnect next time
            conn.close()
            raise
        if resp.status not in set(ok):
            raise KubeApiError(f"{method} {path}: HTTP {resp.status}: {data[:300]!r}")
        return resp.status, (json.loads(data) if data else None)

    def get(self, path: str, ok: Iterable[int] = (200,)):
        return self.request("GET", path, ok=ok)

    def many(self, method: str, requests: list[tuple[str, dict | None]], ok: Iterable[int], workers: int = 16) -> None:
        """Send many requests concurrently over keep-alive connections."""
        with ThreadPoolExecutor(max_workers=workers) as pool_exec:
            list(pool_exec.map(lambda r: self.request(method, r[0], r[1], ok=ok), requests))
