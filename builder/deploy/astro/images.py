"""Astro's image registry: the repository a Deployment or a deploy names, reached with the API token.

`imageRepository` may come with a scheme (`https://images.astronomer.cloud/...`): it is dropped,
and the registry client's own policy decides HTTPS or (loopback only) plain HTTP. The credentials
are those the Astro CLI pushes with: user `cli`, the API token as the password; the registry's
`WWW-Authenticate` challenge decides how they are used (Basic, or a Bearer token fetched with them).
"""

from __future__ import annotations

from pathlib import Path

from builder.common.errors import BuildError, InputError
from builder.deploy.astro.settings import LOGIN_USER, AstroSettings
from builder.registry.client import RegistryClient
from builder.registry.docker_config import Credential
from builder.registry.reference import TAG, Reference, parse_repository


def repository(image_repository: str) -> Reference:
    """The registry repository Astro names, without a scheme."""
    text = image_repository.strip()
    for scheme in ("https://", "http://"):
        if text.lower().startswith(scheme):
            text = text[len(scheme):]
    try:
        return parse_repository(text.rstrip("/"))
    except InputError as exc:
        raise BuildError(f"Astro named an image repository airbuild cannot use ({image_repository!r}: "
                         f"{exc.message})") from None


def checked_tag(tag: str) -> str:
    if not TAG.match(tag):
        raise BuildError(f"Astro named an image tag that is not a valid tag: {tag!r}")
    return tag


def client(settings: AstroSettings, repo: Reference, ca_bundle: Path | None) -> RegistryClient:
    credential = Credential(LOGIN_USER, settings.token, source=f"the Astro API token ({settings.token_source})")
    return RegistryClient(repo.registry, ca_bundle=ca_bundle, credential=credential)
