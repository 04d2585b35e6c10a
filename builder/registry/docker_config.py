"""Registry credentials where Docker keeps them, and from the environment for CI.

`$DOCKER_CONFIG/config.json` (default `~/.docker/config.json`): `credHelpers` (per registry),
then `credsStore` (all registries), through the `docker-credential-NAME get|store|erase`
protocol (the server URL or a JSON object on stdin, JSON on stdout); then `auths`
(`auth` = base64 of user:password, `identitytoken`, `registrytoken`). Written back with
mode 0600, other keys kept as they were.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from builder.common import masking
from builder.common.atomic import atomic_write_bytes
from builder.common.errors import AirbuildError, InputError
from builder.registry.reference import DOCKER_HUB, DOCKER_HUB_CONFIG_KEY, normalise_registry

ENV_USERNAME = "AIRBUILD_REGISTRY_USERNAME"
ENV_PASSWORD = "AIRBUILD_REGISTRY_PASSWORD"
ENV_TOKEN = "AIRBUILD_REGISTRY_TOKEN"
ENV_REGISTRY = "AIRBUILD_REGISTRY_HOST"   # which registry the variables above are for (default: the deploy target)
HELPER_TIMEOUT_S = 30


@dataclass(frozen=True)
class Credential:
    """What to authenticate with. Secrets are never shown by repr."""

    username: str | None = None
    password: str | None = field(default=None, repr=False)
    identity_token: str | None = field(default=None, repr=False)   # OAuth2 refresh token for the token server
    registry_token: str | None = field(default=None, repr=False)   # a Bearer token sent to the registry as is
    source: str = ""                                               # where it came from, for messages

    def __post_init__(self) -> None:
        for secret in (self.password, self.identity_token, self.registry_token):
            masking.add(secret)  # from now on masked in everything airbuild prints or writes


def config_path() -> Path:
    directory = os.environ.get("DOCKER_CONFIG")
    return Path(directory) / "config.json" if directory else Path.home() / ".docker" / "config.json"


def config_key(registry: str) -> str:
    return DOCKER_HUB_CONFIG_KEY if registry == DOCKER_HUB else registry


def _load(path: Path) -> dict:
    try:
        data = json.loads(path.read_bytes())
    except FileNotFoundError:
        return {}
    except ValueError as exc:
        raise InputError(f"not valid JSON ({exc})", path=path) from None
    if not isinstance(data, dict):
        raise InputError("expected a JSON object", path=path)
    return data


def _helper_for(config: dict, registry: str) -> str | None:
    helpers = config.get("credHelpers") or {}
    for key, name in helpers.items():
        if _same_registry(key, registry):
            return name
    return config.get("credsStore") or None


def _same_registry(key: str, registry: str) -> bool:
    try:
        return normalise_registry(key) == registry
    except InputError:
        return False


def from_environment(registry: str, default_registry: str | None) -> Credential | None:
    """CI credentials from AIRBUILD_REGISTRY_*; they apply to AIRBUILD_REGISTRY_HOST, else `default_registry`."""
    scope = os.environ.get(ENV_REGISTRY)
    target = normalise_registry(scope) if scope else default_registry
    if target != registry:
        return None
    token = os.environ.get(ENV_TOKEN)
    if token:
        return Credential(registry_token=token, source=f"${ENV_TOKEN}")
    username, password = os.environ.get(ENV_USERNAME), os.environ.get(ENV_PASSWORD)
    if username and password:
        return Credential(username, password, source=f"${ENV_USERNAME}/${ENV_PASSWORD}")
    return None


def lookup(registry: str, env_registry: str | None = None) -> Credential | None:
    """Credentials for `registry` (host[:port]): the environment first, then Docker's config."""
    found = from_environment(registry, env_registry)
    if found is not None:
        return found
    path = config_path()
    config = _load(path)
    helper = _helper_for(config, registry)
    if helper:
        found = helper_get(helper, config_key(registry))
        if found is not None:
            return found
    for key, entry in (config.get("auths") or {}).items():
        if _same_registry(key, registry) and isinstance(entry, dict):
            return _from_auth_entry(entry, f"{path} auths")
    return None


def _from_auth_entry(entry: dict, source: str) -> Credential | None:
    username = entry.get("username")
    password = entry.get("password")
    if entry.get("auth"):
        try:
            username, _, password = base64.b64decode(entry["auth"]).decode().partition(":")
        except (ValueError, UnicodeDecodeError):
            raise InputError(f"{source}: an `auth` value is not base64 of user:password") from None
    if entry.get("registrytoken"):
        return Credential(registry_token=entry["registrytoken"], source=source)
    if entry.get("identitytoken"):
        return Credential(username, identity_token=entry["identitytoken"], source=source)
    if username and password:
        return Credential(username, password, source=source)
    return None


# -- the docker-credential-* helper protocol ------------------------------------------------------

class HelperError(AirbuildError):
    exit_code = 1


def _run_helper(name: str, action: str, stdin: str) -> str:
    program = f"docker-credential-{name}"
    if shutil.which(program) is None:
        raise HelperError(f"the credential helper {program} named in {config_path()} is not on PATH")
    try:
        proc = subprocess.run([program, action], input=stdin, capture_output=True, text=True,
                              timeout=HELPER_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        raise HelperError(f"the credential helper {program} {action} did not answer in {HELPER_TIMEOUT_S}s") from None
    if proc.returncode != 0:
        message = (proc.stdout.strip() or proc.stderr.strip())[:500]
        if action in ("get", "erase") and "credentials not found" in message.lower():
            return ""
        raise HelperError(f"the credential helper {program} {action} failed ({proc.returncode}): {message}")
    return proc.stdout


def helper_get(name: str, server: str) -> Credential | None:
    out = _run_helper(name, "get", server)
    if not out.strip():
        return None
    try:
        data = json.loads(out)
    except ValueError:
        raise HelperError(f"the credential helper docker-credential-{name} answered with something other "
                          "than JSON") from None
    username, secret = data.get("Username"), data.get("Secret")
    if not secret:
        return None
    source = f"docker-credential-{name}"
    if username == "<token>":
        return Credential(identity_token=secret, source=source)
    return Credential(username, secret, source=source)


# -- login / logout -----------------------------------------------------------------------------

def store(registry: str, username: str, password: str) -> str:
    """Save credentials where Docker would; returns where, for the message."""
    path = config_path()
    config = _load(path)
    key = config_key(registry)
    helper = _helper_for(config, registry)
    auths = config.setdefault("auths", {})
    if helper:
        _run_helper(helper, "store", json.dumps({"ServerURL": key, "Username": username, "Secret": password}))
        auths[key] = {}
        where = f"the credential helper docker-credential-{helper}"
    else:
        auths[key] = {"auth": base64.b64encode(f"{username}:{password}".encode()).decode()}
        where = str(path)
    _write(path, config)
    return where


def erase(registry: str) -> bool:
    """Remove saved credentials; True when there were some."""
    path = config_path()
    config = _load(path)
    key = config_key(registry)
    found = False
    helper = _helper_for(config, registry)
    if helper:
        found = helper_get(helper, key) is not None
        _run_helper(helper, "erase", key)
    auths = config.get("auths") or {}
    for name in [k for k in auths if _same_registry(k, registry)]:
        found = found or bool(auths[name])
        del auths[name]
    if path.exists():
        _write(path, config)
    return found


def _write(path: Path, config: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    atomic_write_bytes(path, (json.dumps(config, indent="\t") + "\n").encode(), mode=0o600)
