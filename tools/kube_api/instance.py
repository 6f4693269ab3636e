"""Where one local API instance keeps its state and which ports it uses."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from tools import anvil_env


@dataclass(frozen=True)
class Instance:
    """Where one local API instance keeps its state and which ports it uses."""

    name: str = "default"
    port_offset: int = 0
    state_root: Path = field(default_factory=lambda: anvil_env.ANVIL_STATE)

    @property
    def dir(self) -> Path:
        return self.state_root / ("kube-api" if self.name == "default" else f"kube-api-{self.name}")

    @property
    def failed_logs_dir(self) -> Path:
        return self.state_root / f"{self.dir.name}-failed-logs"

    @property
    def lock_file(self) -> Path:
        return self.state_root / f".{self.dir.name}.lock"

    def port(self, base: int) -> int:
        return base + self.port_offset

    @property
    def apiserver_port(self) -> int:
        return self.port(16443)

    @property
    def etcd_client_port(self) -> int:
        return self.port(23790)

    @property
    def etcd_peer_port(self) -> int:
        return self.port(23800)

    @property
    def kcm_port(self) -> int:
        return self.port(16257)

    @property
    def scheduler_port(self) -> int:
        return self.port(16259)

    @property
    def kwok_port(self) -> int:
        return self.port(16280)

    @property
    def server(self) -> str:
        return f"https://127.0.0.1:{self.apiserver_port}"

    @property
    def pki(self) -> Path:
        return self.dir / "pki"

    @property
    def logs(self) -> Path:
        return self.dir / "logs"

    @property
    def state_file(self) -> Path:
        return self.dir / "instance.json"

    @property
    def admin_kubeconfig(self) -> Path:
        return self.dir / "admin.kubeconfig"

    def kubeconfig(self, who: str) -> Path:
        return self.dir / "kubeconfigs" / f"{who}.kubeconfig"

    def all_ports(self) -> dict[str, int]:
        return {
            "etcd-client": self.etcd_client_port,
            "etcd-peer": self.etcd_peer_port,
            "kube-apiserver": self.apiserver_port,
            "kube-controller-manager": self.kcm_port,
            "kube-scheduler": self.scheduler_port,
            "kwok": self.kwok_port,
        }


DEFAULT = Instance()


def from_env() -> Instance:
    """The instance named by ANVIL_KUBE_API_INSTANCE and ANVIL_KUBE_API_PORT_OFFSET (by default the shared
    one): what `python -m tools.kube_api`, the make targets and the integration fixture use."""
    return Instance(
        name=os.environ.get("ANVIL_KUBE_API_INSTANCE") or "default",
        port_offset=int(os.environ.get("ANVIL_KUBE_API_PORT_OFFSET") or "0"),
    )
