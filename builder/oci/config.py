"""The runtime part of an image config (`config` in the OCI image config)."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

# Keys we model; anything else the base carries (Healthcheck, Volumes, StopSignal...) passes through.
_MODELLED = {"Env", "User", "WorkingDir", "Entrypoint", "Cmd", "Labels", "ExposedPorts", "OnBuild"}


@dataclass(frozen=True)
class ContainerConfig:
    env: tuple[tuple[str, str], ...] = ()
    user: str = ""
    workdir: str = ""
    entrypoint: tuple[str, ...] | None = None
    cmd: tuple[str, ...] | None = None
    labels: tuple[tuple[str, str], ...] = ()
    exposed_ports: tuple[str, ...] = ()
    extra: tuple[tuple[str, Any], ...] = field(default=(), compare=True)

    @classmethod
    def from_oci(cls, data: dict[str, Any] | None) -> "ContainerConfig":
        data = data or {}
        env = []
        for item in data.get("Env") or []:
            key, _, value = item.partition("=")
            env.append((key, value))
        return cls(
            env=tuple(env),
            user=data.get("User") or "",
            workdir=data.get("WorkingDir") or "",
            entrypoint=tuple(data["Entrypoint"]) if data.get("Entrypoint") else None,
            cmd=tuple(data["Cmd"]) if data.get("Cmd") else None,
            labels=tuple(sorted((data.get("Labels") or {}).items())),
            exposed_ports=tuple(sorted(data.get("ExposedPorts") or {})),
            # ONBUILD triggers are not inherited: builder/bases/onbuild.py replaces or runs each one.
            extra=tuple(sorted((k, v) for k, v in data.items() if k not in _MODELLED and v is not None)),
        )

    def to_oci(self) -> dict[str, Any]:
        out: dict[str, Any] = dict(self.extra)
        if self.env:
            out["Env"] = [f"{k}={v}" for k, v in self.env]
        if self.user:
            out["User"] = self.user
        if self.workdir:
            out["WorkingDir"] = self.workdir
        if self.entrypoint is not None:
            out["Entrypoint"] = list(self.entrypoint)
        if self.cmd is not None:
            out["Cmd"] = list(self.cmd)
        if self.labels:
            out["Labels"] = dict(self.labels)
        if self.exposed_ports:
            out["ExposedPorts"] = {port: {} for port in self.exposed_ports}
        return out

    def env_dict(self) -> dict[str, str]:
        return dict(self.env)

    def with_env(self, key: str, value: str) -> "ContainerConfig":
        env = [(k, v) for k, v in self.env if k != key]
        # Keep the position of an overridden variable, as Docker does.
        position = next((i for i, (k, _) in enumerate(self.env) if k == key), len(env))
        env.insert(position, (key, value))
        return replace(self, env=tuple(env))

    def with_label(self, key: str, value: str) -> "ContainerConfig":
        labels = dict(self.labels)
        labels[key] = value
        return replace(self, labels=tuple(sorted(labels.items())))

    def with_port(self, port: str) -> "ContainerConfig":
        if "/" not in port:
            port += "/tcp"
        return replace(self, exposed_ports=tuple(sorted(set(self.exposed_ports) | {port})))
