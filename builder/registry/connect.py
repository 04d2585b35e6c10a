"""A client for a registry, with the credentials and TLS settings that apply to it."""

from __future__ import annotations

from pathlib import Path

from builder.registry import docker_config
from builder.registry.client import RegistryClient


def open_client(registry: str, *, insecure: bool = False, ca_bundle: Path | None = None,
                env_registry: str | None = None) -> RegistryClient:
    """`env_registry`: the registry the AIRBUILD_REGISTRY_* variables are for when AIRBUILD_REGISTRY_HOST
    does not say (a deploy's target); credentials are looked up when the registry first asks for them."""
    return RegistryClient(registry, insecure=insecure, ca_bundle=ca_bundle,
                          credential=lambda: docker_config.lookup(registry, env_registry))
