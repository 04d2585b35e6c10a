"""Where Astro's API is and who we are to it: the API URL, the token, the Organization.

`ASTRO_API_URL` (default https://api.astronomer.io/platform/v1beta1; plain HTTP only on
loopback). The token: `ASTRO_API_TOKEN`, else the one `airbuild login --astro` saved where
registry credentials are kept (Docker's config.json or its credential helper, under the API's
host). The Organization: the target's `organization`, else `ASTRO_ORGANIZATION_ID`. The token is
registered as a secret as soon as it is read: it is masked in everything airbuild prints or writes.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import httpx

from builder.common import masking
from builder.common.errors import InputError
from builder.project.manifest import AstroTarget
from builder.registry import docker_config
from builder.registry.reference import is_loopback

ENV_URL = "ASTRO_API_URL"
ENV_TOKEN = "ASTRO_API_TOKEN"
ENV_ORGANIZATION = "ASTRO_ORGANIZATION_ID"
DEFAULT_URL = "https://api.astronomer.io/platform/v1beta1"
LOGIN_USER = "cli"  # the user name Astro's registry takes with the API token, and what `login` saves


@dataclass(frozen=True)
class AstroSettings:
    api_url: str                               # no trailing slash
    token: str = field(repr=False)
    token_source: str                          # where the token came from, for messages
    organization: str
    deployment: str


def astro_target(deployment: str) -> AstroTarget:
    """The target `--astro DEPLOYMENT_ID` names (its Organization from the environment)."""
    try:
        return AstroTarget(deployment=deployment)
    except ValueError:
        raise InputError(f"--astro {deployment!r}: not an Astro Deployment ID (letters, digits, '_' and '-')") from None


def checked_url(url: str, what: str) -> httpx.URL:
    """`url` parsed; HTTPS, or plain HTTP to a loopback host only (credentials never cross a network in clear)."""
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, TypeError):
        raise InputError(f"{what} {url!r} is not a URL") from None
    if parsed.scheme == "https" and parsed.host:
        return parsed
    if parsed.scheme == "http" and parsed.host and is_loopback(parsed.host):
        return parsed
    raise InputError(f"{what} {url!r}: airbuild speaks HTTPS to Astro (plain HTTP only to a loopback address)")


def api_url() -> str:
    url = os.environ.get(ENV_URL) or DEFAULT_URL
    checked_url(url, f"${ENV_URL}" if os.environ.get(ENV_URL) else "the Astro API URL")
    return url.rstrip("/")


def api_host(url: str) -> str:
    """The key the token is saved under: the API's host[:port]."""
    parsed = httpx.URL(url)
    return parsed.host + (f":{parsed.port}" if parsed.port else "")


def find_token(url: str) -> tuple[str, str] | None:
    """(token, where it came from): $ASTRO_API_TOKEN, else what `airbuild login --astro` saved; None if neither."""
    token = os.environ.get(ENV_TOKEN, "").strip()
    if token:
        return token, f"${ENV_TOKEN}"
    saved = docker_config.lookup(api_host(url))
    secret = saved and (saved.password or saved.registry_token)
    if secret:
        return secret, f"the token `airbuild login --astro` saved ({saved.source})"
    return None


def settings_for(target: AstroTarget, token: tuple[str, str] | None = None) -> AstroSettings:
    """How to reach `target`: with `token` (the token, where it came from), else the one found."""
    url = api_url()
    found = token or find_token(url)
    if found is None:
        raise InputError(f"no Astro API token: set ${ENV_TOKEN} (a Deployment, Workspace or Organization API "
                         f"token) or run `airbuild login --astro {target.deployment}`")
    masking.add(found[0])
    organization = target.organization or os.environ.get(ENV_ORGANIZATION, "").strip()
    if not organization:
        raise InputError(f"which Astro Organization? set ${ENV_ORGANIZATION}, or give the target "
                         "`astro: {deployment: ID, organization: ID}` in astro.yaml")
    return AstroSettings(url, found[0], found[1], organization, target.deployment)
