"""Image references: `[host[:port]/]repo[:tag][@sha256:...]`, normalised as Docker does.

A first path component is a registry host when it contains `.` or `:` or is `localhost`;
otherwise the reference is on Docker Hub (`docker.io`), and a one-component name there is
an official image under `library/`. With neither tag nor digest the tag is `latest`.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, replace

from builder.common.errors import InputError

DOCKER_HUB = "docker.io"
DOCKER_HUB_ENDPOINT = "registry-1.docker.io"     # where Docker Hub's registry API answers
DOCKER_HUB_CONFIG_KEY = "https://index.docker.io/v1/"  # Docker Hub's key in config.json
DOCKER_HUB_ALIASES = ("docker.io", "index.docker.io", "registry-1.docker.io")

COMPONENT = re.compile(r"^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$")
TAG = re.compile(r"^[\w][\w.-]{0,127}$")
DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")
HOST = re.compile(r"^(?:\[[0-9a-fA-F:]+\]|[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?)(?::[0-9]+)?$")


@dataclass(frozen=True)
class Reference:
    registry: str          # host[:port]; Docker Hub is `docker.io`
    repository: str        # path in the registry, e.g. library/python
    tag: str | None = None
    digest: str | None = None

    @property
    def name(self) -> str:
        return f"{self.registry}/{self.repository}"

    @property
    def endpoint(self) -> str:
        """host[:port] the registry API answers on."""
        return DOCKER_HUB_ENDPOINT if self.registry == DOCKER_HUB else self.registry

    @property
    def lookup(self) -> str:
        """What to ask the registry for: the digest when pinned (it wins over a tag), else the tag."""
        return self.digest or self.tag or "latest"

    def pinned(self, digest: str) -> "Reference":
        return replace(self, digest=digest)

    def __str__(self) -> str:
        text = self.name
        if self.tag:
            text += f":{self.tag}"
        if self.digest:
            text += f"@{self.digest}"
        return text


def parse_reference(text: str, *, default_tag: bool = True) -> Reference:
    """Parse an image reference; raise InputError naming what is wrong."""
    original = text
    text = text.strip()
    digest = None
    if "@" in text:
        text, _, digest = text.partition("@")
        if not DIGEST.match(digest):
            raise InputError(f"image reference {original!r}: digest must be sha256: and 64 hex digits")
    tag = None
    head, sep, tail = text.rpartition(":")
    if sep and "/" not in tail:
        text, tag = head, tail
        if not TAG.match(tag):
            raise InputError(f"image reference {original!r}: invalid tag {tag!r}")
    registry, repository = split_registry(text, original)
    if tag is None and digest is None and default_tag:
        tag = "latest"
    return Reference(registry, repository, tag, digest)


def parse_repository(text: str) -> Reference:
    """A push target: `host[:port]/repo`, without tag or digest."""
    if "@" in text or ":" in text.rsplit("/", 1)[-1]:
        raise InputError(f"registry target {text!r}: give host/repository without a tag or digest "
                         "(tags go in the target's `tags`)")
    registry, repository = split_registry(text, text)
    return Reference(registry, repository)


def split_registry(text: str, original: str) -> tuple[str, str]:
    first, sep, rest = text.partition("/")
    if sep and ("." in first or ":" in first or first == "localhost"):
        registry, path = first, rest
        if not HOST.match(registry):
            raise InputError(f"image reference {original!r}: invalid registry host {registry!r}")
    else:
        registry, path = DOCKER_HUB, text
    if registry in DOCKER_HUB_ALIASES:
        registry = DOCKER_HUB
    if registry == DOCKER_HUB and "/" not in path:
        path = f"library/{path}"
    components = path.split("/")
    if not path or not all(COMPONENT.match(c) for c in components):
        raise InputError(f"image reference {original!r}: repository names are lower-case letters, digits and "
                         "separators (., _, __, -) between /")
    return registry, path


def host_of(registry: str) -> str:
    """The host part of host[:port] (brackets of an IPv6 literal removed)."""
    if registry.startswith("["):
        return registry[1:registry.index("]")]
    return registry.rsplit(":", 1)[0] if registry.count(":") == 1 else registry


def is_loopback(registry: str) -> bool:
    host = host_of(registry)
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def normalise_registry(text: str) -> str:
    """A registry name as users write it (`docker.io`, `https://host:5000/`...) -> host[:port]."""
    text = re.sub(r"^[a-z]+://", "", text.strip()).split("/", 1)[0]
    if not text or not HOST.match(text):
        raise InputError(f"registry {text!r}: expected host[:port]")
    return DOCKER_HUB if text in DOCKER_HUB_ALIASES else text
