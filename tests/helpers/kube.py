"""Kubernetes conditions the integration tests and benchmarks wait for."""

from __future__ import annotations

from tests.helpers.wait import wait_until


def wait_for_default_service_account(core, namespace: str, timeout: float) -> None:
    """Pods can be created in `namespace` once its `default` ServiceAccount exists (core: CoreV1Api)."""
    wait_until(
        lambda: core.read_namespaced_service_account("default", namespace),
        timeout,
        f"ServiceAccount default in namespace {namespace}",
    )
