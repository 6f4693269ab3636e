"""Errors of the local API tool and its log line (stderr, prefixed `kube-api:`)."""

from __future__ import annotations

import sys


class KubeApiError(RuntimeError):
    """The local API could not be started or used; the message says what to do."""


class BinariesMissing(KubeApiError):
    pass


def log(msg: str) -> None:
    print(f"kube-api: {msg}", file=sys.stderr, flush=True)
