"""Health endpoints of the components, and waiting for them."""

from __future__ import annotations

import ssl
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Callable

from tools.kube_api.errors import KubeApiError
from tools.kube_api.instance import Instance


def _https_ok(
    url: str, cafile: Path | None = None, cert: tuple[Path, Path] | None = None, timeout: float = 5.0
) -> bool:
    if cafile:
        ctx = ssl.create_default_context(cafile=str(cafile))
    else:
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    if cert:
        ctx.load_cert_chain(str(cert[0]), str(cert[1]))
    try:
        with urllib.request.urlopen(url, context=ctx, timeout=timeout) as resp:
            return resp.status == 200
    except (urllib.error.URLError, OSError, ssl.SSLError):
        return False


def _http_ok(url: str, timeout: float = 2.0) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return resp.status == 200
    except (urllib.error.URLError, OSError):
        return False


def health_checks(inst: Instance) -> dict[str, Callable[[], bool]]:
    pki = inst.pki
    return {
        "etcd": lambda: _https_ok(
            f"https://127.0.0.1:{inst.etcd_client_port}/health",
            pki / "ca.crt",
            (pki / "apiserver-etcd-client.crt", pki / "apiserver-etcd-client.key"),
        ),
        "kube-apiserver": lambda: _https_ok(
            f"{inst.server}/readyz", pki / "ca.crt", (pki / "admin.crt", pki / "admin.key")
        ),
        "kube-controller-manager": lambda: _https_ok(f"https://127.0.0.1:{inst.kcm_port}/healthz"),
        "kube-scheduler": lambda: _https_ok(f"https://127.0.0.1:{inst.scheduler_port}/healthz"),
        "kwok": lambda: _http_ok(f"http://127.0.0.1:{inst.kwok_port}/healthz"),
    }


def wait_for(
    what: str, check: Callable[[], bool], timeout: float, alive: Callable[[], str | None] | None = None
) -> None:
    """Poll `check` until it passes; fail early when `alive` reports a dead process."""
    deadline = time.monotonic() + timeout
    delay = 0.05
    while True:
        if check():
            return
        if alive:
            dead = alive()
            if dead:
                raise KubeApiError(f"{dead} exited while waiting for {what}")
        if time.monotonic() > deadline:
            raise KubeApiError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(delay)
        delay = min(delay * 1.5, 0.5)
