"""Authentication to a registry: what its `WWW-Authenticate` challenge asks for.

Basic: the credentials on every request. Bearer: a token from the challenge's `realm` for
the `service` and the scopes a request needs (`repository:NAME:pull,push`), fetched with
the credentials (Basic to the realm, or an OAuth2 refresh token when Docker saved an
identity token), anonymously without any. Tokens are reused until they expire; a 401 on
a request made with one drops it and fetches a new one.
"""

from __future__ import annotations

import base64
import re
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, NoReturn, Protocol

import httpx

from builder.registry.docker_config import Credential
from builder.registry.reference import is_loopback


class TokenTransport(Protocol):
    """What the authenticator needs of the client it serves (builder.registry.client.RegistryClient)."""

    insecure: bool

    def fail(self, what: str, response: httpx.Response | None = None) -> NoReturn: ...

    def token_request(self, method: str, url: str, **kwargs: Any) -> httpx.Response: ...

DEFAULT_TOKEN_LIFETIME_S = 60  # the token spec's default when the server gives no expires_in
PARAM = re.compile(r'([A-Za-z_][A-Za-z0-9_-]*)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s,]*))')


@dataclass(frozen=True)
class Challenge:
    scheme: str                 # "basic" or "bearer"
    params: dict[str, str]

    @property
    def realm(self) -> str:
        return self.params.get("realm", "")


def parse_challenge(header: str | None) -> Challenge | None:
    """The first challenge of a WWW-Authenticate header."""
    if not header:
        return None
    scheme, _, rest = header.strip().partition(" ")
    params = {m.group(1).lower(): (m.group(2) if m.group(2) is not None else m.group(3)).replace('\\"', '"')
              for m in PARAM.finditer(rest)}
    return Challenge(scheme.lower(), params)


def repository_scope(repository: str, actions: str) -> str:
    return f"repository:{repository}:{actions}"


class Authenticator:
    def __init__(self, client: TokenTransport, credential: Credential | Callable[[], Credential | None] | None):
        self.client = client
        self._credential = credential
        self.challenge: Challenge | None = None
        self._tokens: dict[tuple[str, ...], tuple[str, float]] = {}
        self.token_requests = 0
        self._lock = threading.RLock()  # concurrent transfers: one credential lookup, one token per scope

    @property
    def credential(self) -> Credential | None:
        """Looked up on first use: a pull the store can answer runs no credential helper."""
        with self._lock:
            if callable(self._credential):
                self._credential = self._credential()
            return self._credential

    def learn(self, header: str | None) -> bool:
        """Remember a 401's challenge; False when there is none to answer."""
        challenge = parse_challenge(header)
        if challenge is None or challenge.scheme not in ("basic", "bearer"):
            return False
        self.challenge = challenge
        return True

    def headers(self, scopes: tuple[str, ...]) -> dict[str, str]:
        challenge = self.challenge
        if challenge is None:  # no 401 yet: anonymous
            return {}
        credential = self.credential
        if credential is not None and credential.registry_token:
            return {"Authorization": f"Bearer {credential.registry_token}"}
        if challenge.scheme == "basic":
            if credential is None or not credential.password:
                return {}
            return {"Authorization": _basic(credential.username or "", credential.password)}
        return {"Authorization": f"Bearer {self._token(scopes)}"}

    def forget(self, scopes: tuple[str, ...], rejected: str | None = None) -> None:
        """Drop the token the registry rejected (`rejected`: the Authorization sent), unless another transfer
        already replaced it: concurrent requests that met one expiry fetch one new token, not one each."""
        key = tuple(sorted(scopes))
        with self._lock:
            cached = self._tokens.get(key)
            if cached is not None and (rejected is None or rejected == f"Bearer {cached[0]}"):
                del self._tokens[key]

    def _token(self, scopes: tuple[str, ...]) -> str:
        key = tuple(sorted(scopes))
        with self._lock:
            cached = self._tokens.get(key)
            if cached is not None and cached[1] > time.monotonic():
                return cached[0]
            token, lifetime = self.fetch_token(key)
            self._tokens[key] = (token, time.monotonic() + lifetime * 0.9)
            return token

    def fetch_token(self, scopes: tuple[str, ...]) -> tuple[str, float]:
        """(token, lifetime in seconds) from the challenge's realm."""
        challenge = self.challenge
        credential = self.credential
        self.token_requests += 1
        realm = httpx.URL(challenge.realm)
        if realm.scheme not in ("https", "http"):
            self.client.fail(f"the registry's token server {challenge.realm!r} is not an http(s) URL")
        if (realm.scheme == "http" and credential is not None and not self.client.insecure
                and not is_loopback(realm.host)):
            self.client.fail(f"the registry's token server {challenge.realm} is plain HTTP: credentials are not sent "
                             "there (mark the target `insecure: true` if that is really wanted)")
        params: list[tuple[str, str]] = []
        if challenge.params.get("service"):
            params.append(("service", challenge.params["service"]))
        if credential is not None and credential.identity_token:
            form = dict(params, grant_type="refresh_token", client_id="airbuild",
                        refresh_token=credential.identity_token, scope=" ".join(scopes))
            response = self.client.token_request("POST", challenge.realm, data=form)
        else:
            params += [("scope", s) for s in scopes]
            headers = {}
            if credential is not None and credential.password:
                params.append(("account", credential.username or ""))
                headers["Authorization"] = _basic(credential.username or "", credential.password)
            response = self.client.token_request("GET", challenge.realm, params=params, headers=headers)
        try:
            data = response.json()
            token = data.get("token") or data.get("access_token")
            lifetime = float(data.get("expires_in") or DEFAULT_TOKEN_LIFETIME_S)
        except (ValueError, AttributeError, TypeError):
            token = None
        if not token:
            self.client.fail(f"the token server {challenge.realm} answered without a token", response)
        return token, lifetime


def _basic(username: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode()
