"""HTTP to one registry: scheme and TLS policy, authentication, retries with backoff, clear errors.

HTTPS always, verified against the system's CAs plus `AIRBUILD_CA_BUNDLE` / `--ca-bundle`.
Plain HTTP only for a loopback registry or one marked `insecure: true` (which also skips
certificate checks), and only when HTTPS does not answer. Connection errors, 408, 429 and
5xx are retried with exponential backoff (`Retry-After` honoured; `retry.py`); a registry that still
fails is reported with what was being done, the registry, the HTTP status and its error body.
Credentials and tokens only ever travel in headers: they are never in a message.
"""

from __future__ import annotations

import json
import os
import ssl
from pathlib import Path
from typing import Any, Callable, Iterable, NoReturn, TypeVar

import httpx

from builder.common.errors import BuildError, InputError
from builder.registry import retry
from builder.registry.auth import Authenticator
from builder.registry.docker_config import Credential
from builder.registry.reference import DOCKER_HUB, DOCKER_HUB_ENDPOINT, is_loopback
from builder.registry.retry import Transient

ENV_CA_BUNDLE = "AIRBUILD_CA_BUNDLE"
T = TypeVar("T")


class RegistryError(BuildError):
    """A registry operation failed for good (exit 1)."""


def ssl_context(ca_bundle: Path | None, verify: bool) -> ssl.SSLContext:
    if not verify:
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        return context
    import certifi  # only when no CA bundle is configured

    context = ssl.create_default_context(cafile=certifi.where())
    bundle = ca_bundle or (Path(os.environ[ENV_CA_BUNDLE]) if os.environ.get(ENV_CA_BUNDLE) else None)
    if bundle is not None:
        try:
            context.load_verify_locations(cafile=str(bundle))
        except (OSError, ssl.SSLError) as exc:
            raise InputError(f"CA bundle {bundle}: cannot load it ({exc})") from None
    return context


def error_detail(response: httpx.Response) -> str:
    """The registry's error body in a line: `CODE: message (detail)` for each error, or its text."""
    try:
        body = response.read()
    except httpx.HTTPError:
        return ""
    try:
        errors = json.loads(body).get("errors")
        parts = []
        for error in errors:
            part = f"{error.get('code', '')}: {error.get('message', '')}".strip(": ")
            if error.get("detail"):
                part += f" ({error['detail']})"
            parts.append(part)
        if parts:
            return "; ".join(parts)[:1000]
    except (ValueError, AttributeError, TypeError):
        pass
    return body[:500].decode("utf-8", "replace").strip()


class RegistryClient:
    def __init__(self, registry: str, *, insecure: bool = False, ca_bundle: Path | None = None,
                 credential: Credential | Callable[[], Credential | None] | None = None):
        self.registry = registry
        self.endpoint = DOCKER_HUB_ENDPOINT if registry == DOCKER_HUB else registry
        self.insecure = insecure
        self.attempts = retry.attempts()
        self.http = httpx.Client(verify=ssl_context(ca_bundle, verify=not insecure), trust_env=False,
                                 timeout=retry.timeout(), follow_redirects=False, headers={"User-Agent": "airbuild"})
        self.auth = Authenticator(self, credential)
        self._base: str | None = None

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> "RegistryClient":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- errors and retries -----------------------------------------------------------------

    def fail(self, what: str, response: httpx.Response | None = None, cause: str | None = None) -> None:
        message = f"{what} ({self.registry})"
        if response is not None:
            message += f": HTTP {response.status_code}"
            detail = error_detail(response)
            if detail:
                message += f": {detail}"
        elif cause:
            message += f": {cause}"
        raise RegistryError(message)

    def retrying(self, what: str, attempt: Callable[[], T]) -> T:
        """Run `attempt` until it does not raise Transient, with backoff; a clear error when it gives up."""
        return retry.retrying(what, attempt, self.attempts, self._give_up)

    def _give_up(self, message: str, last: Transient) -> NoReturn:
        if last.response is not None:
            self.fail(message, last.response)
        self.fail(message, cause=str(last))
        raise AssertionError("unreachable")

    @staticmethod
    def transient_status(response: httpx.Response) -> Transient | None:
        return retry.transient_status(response, error_detail)

    # -- the base URL: scheme by policy -------------------------------------------------------------

    @property
    def base_url(self) -> str:
        if self._base is None:
            self._base = self.retrying("reaching the registry", self._probe)
        return self._base

    def _probe(self) -> str:
        plain_allowed = self.insecure or is_loopback(self.endpoint)
        try:
            response = self.http.get(f"https://{self.endpoint}/v2/")
        except httpx.ConnectError as exc:
            text = str(exc)
            if "CERTIFICATE_VERIFY_FAILED" in text or "certificate verify failed" in text:
                raise RegistryError(f"TLS certificate of {self.registry} is not trusted ({text}); give its CA "
                                    f"with --ca-bundle or ${ENV_CA_BUNDLE}") from None
            if not plain_allowed or not ("SSL" in text or "record" in text.lower() or "EOF" in text):
                raise Transient(f"cannot connect over HTTPS: {text}") from None
            return self._probe_plain(text)
        except httpx.TransportError as exc:
            if plain_allowed and isinstance(exc, (httpx.ReadError, httpx.RemoteProtocolError)):
                return self._probe_plain(str(exc))
            raise Transient(f"cannot connect over HTTPS: {exc}") from None
        return self._accept_probe(response, "https")

    def _probe_plain(self, https_error: str) -> str:
        try:
            response = self.http.get(f"http://{self.endpoint}/v2/")
        except httpx.TransportError as exc:
            raise Transient(f"HTTPS failed ({https_error}), and plain HTTP too ({exc})") from None
        if response.status_code == 400 and b"HTTPS" in response.content:
            raise RegistryError(f"{self.registry} speaks HTTPS, but the TLS handshake failed: {https_error}")
        return self._accept_probe(response, "http")

    def _accept_probe(self, response: httpx.Response, scheme: str) -> str:
        transient = self.transient_status(response)
        if transient is not None:
            raise transient
        if response.status_code == 401:
            self.auth.learn(response.headers.get("WWW-Authenticate"))
        elif response.status_code >= 400 and response.status_code != 404:
            self.fail("the registry's API root /v2/ answered unexpectedly", response)
        return f"{scheme}://{self.endpoint}"

    def url(self, path_or_url: str) -> str:
        if path_or_url.startswith(("http://", "https://")):
            return path_or_url
        return self.base_url + path_or_url

    # -- requests ----------------------------------------------------------------------------------

    def send(self, method: str, path_or_url: str, *, scopes: tuple[str, ...], what: str,
             ok: Iterable[int] = (200,), headers: dict[str, str] | None = None,
             content: Callable[[], Any] | bytes | None = None, params: Any = None,
             stream: bool = False) -> httpx.Response:
        """One attempt (plus one more after a 401 with a fresh token). Raises Transient or RegistryError.

        `content` is bytes or a callable making the body anew (a stream from disk), so a retry can resend it.
        """
        ok = tuple(ok)
        url = self.url(path_or_url)
        for auth_round in range(2):
            body = content() if callable(content) else content
            request = self.http.build_request(method, url, headers={**(headers or {}), **self.auth.headers(scopes)},
                                              content=body, params=params)
            try:
                response = self.http.send(request, stream=True)
            except httpx.TransportError as exc:
                raise Transient(f"{type(exc).__name__}: {exc}") from None
            if response.status_code == 401 and auth_round == 0:
                header = response.headers.get("WWW-Authenticate")
                response.close()
                self.auth.forget(scopes, request.headers.get("Authorization"))
                if self.auth.learn(header):
                    continue
            if response.status_code in ok:
                if not stream:
                    self._read(response)
                return response
            transient = self.transient_status(response)
            if transient is not None:
                raise transient
            if response.status_code == 401:
                hint = (f" with {self.auth.credential.source}" if self.auth.credential
                        else "; no credentials found: run `airbuild login " + self.registry + "` or set "
                        "AIRBUILD_REGISTRY_USERNAME/AIRBUILD_REGISTRY_PASSWORD")
                self.fail(f"{what}: not authorized{hint}", response)
            self.fail(what, response)
        raise AssertionError("unreachable")

    @staticmethod
    def _read(response: httpx.Response) -> None:
        try:
            response.read()
        except httpx.TransportError as exc:
            raise Transient(f"{type(exc).__name__} while reading the answer: {exc}") from None

    def request(self, method: str, path_or_url: str, *, what: str, **kwargs) -> httpx.Response:
        """`send` with retries."""
        return self.retrying(what, lambda: self.send(method, path_or_url, what=what, **kwargs))

    def token_request(self, method: str, realm: str, *, params=None, data=None,
                      headers: dict[str, str] | None = None) -> httpx.Response:
        what = f"getting a token from {realm}"

        def attempt() -> httpx.Response:
            try:
                response = self.http.request(method, realm, params=params, data=data, headers=headers)
            except httpx.TransportError as exc:
                raise Transient(f"{type(exc).__name__}: {exc}") from None
            transient = self.transient_status(response)
            if transient is not None:
                raise transient
            if response.status_code in (401, 403):
                source = self.auth.credential.source if self.auth.credential else "no credentials"
                self.fail(f"authentication failed ({source}): the token server {realm} refused them; check them, "
                          f"or run `airbuild login {self.registry}`", response)
            if response.status_code != 200:
                self.fail(what, response)
            return response

        return self.retrying(what, attempt)

    def check_credentials(self) -> str:
        """Prove the credentials against the registry (for `login`); returns how it authenticates."""
        self.base_url
        challenge = self.auth.challenge
        if challenge is None:
            return "the registry asks for no authentication"
        if challenge.scheme == "bearer":
            self.auth.fetch_token(())
            return "token"
        self.request("GET", "/v2/", scopes=(), what="checking the credentials")
        return "basic"
