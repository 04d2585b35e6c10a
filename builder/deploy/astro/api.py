"""A client for Astro's Deploy API (platform v1beta1), and for the DAG bundle upload it hands out.

    GET  {API}/organizations/{org}/deployments/{dep}                     the Deployment
    POST {API}/organizations/{org}/deployments/{dep}/deploys             {"type", "description"} -> a Deploy
    PUT  {dagsUploadUrl}  (x-ms-blob-type: BlockBlob)                    the bundle -> x-ms-version-id
    POST {API}/organizations/{org}/deployments/{dep}/deploys/{id}/finalize  {"dagTarballVersion"} -> the Deploy

API calls carry `Authorization: Bearer TOKEN`; the upload URL is a pre-signed (SAS) URL to blob
storage and gets no Authorization header, and its query (the signature) is masked and never put
in a message. Failures are retried as the registry client retries them (`registry.retry`: 5xx,
408, 429, dropped connections, with backoff); what still fails is an AstroError naming the call,
the HTTP status and the API's own message (`{"message", "requestId", "statusCode"}`; blob storage's
`<Error><Code><Message>` for the upload).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn
from urllib.parse import parse_qsl, quote

import httpx

from builder import __version__
from builder.common import masking
from builder.common.errors import BuildError
from builder.deploy.astro.settings import AstroSettings, checked_url
from builder.registry import retry
from builder.registry.client import ssl_context
from builder.registry.retry import Transient

DEPLOY_TYPES = ("IMAGE_AND_DAG", "IMAGE_ONLY", "DAG_ONLY")
DESCRIPTION_LIMIT = 500  # characters the API takes in a deploy's description


class AstroError(BuildError):
    """Astro's API (or its blob storage) refused or kept failing (exit 1)."""

    def __init__(self, message: str, status: int | None = None):
        self.status = status
        super().__init__(message)


@dataclass(frozen=True)
class Deployment:
    id: str
    name: str
    runtime_version: str            # astroRuntimeVersion (runtimeVersion on older answers)
    dag_deploy_enabled: bool
    image_repository: str           # as Astro gives it (may carry a scheme)
    image_tag: str                  # the current image's tag ("" when the API gives none)

    @classmethod
    def from_json(cls, data: dict) -> "Deployment":
        return cls(str(data.get("id", "")), str(data.get("name", "")),
                   str(data.get("astroRuntimeVersion") or data.get("runtimeVersion") or ""),
                   bool(data.get("isDagDeployEnabled")), str(data.get("imageRepository") or ""),
                   str(data.get("imageTag") or ""))


@dataclass(frozen=True)
class Deploy:
    id: str
    type: str
    status: str
    image_repository: str
    image_tag: str
    dags_upload_url: str | None
    dag_tarball_version: str | None

    @classmethod
    def from_json(cls, data: dict) -> "Deploy":
        return cls(str(data.get("id", "")), str(data.get("type", "")), str(data.get("status", "")),
                   str(data.get("imageRepository") or ""), str(data.get("imageTag") or ""),
                   data.get("dagsUploadUrl") or None, data.get("dagTarballVersion") or None)


def api_message(response: httpx.Response) -> str:
    """The error an answer carries, in a line: the API's `message` (and request id), blob storage's
    `Code: Message`, or the start of the body."""
    try:
        body = response.read()
    except httpx.HTTPError:
        return ""
    try:
        data = json.loads(body)
        if isinstance(data, dict) and data.get("message"):
            request = f" (request {data['requestId']})" if data.get("requestId") else ""
            return f"{data['message']}{request}"[:1000]
    except ValueError:
        pass
    text = body.decode("utf-8", "replace")
    code, message = re.search(r"<Code>(.*?)</Code>", text, re.S), re.search(r"<Message>(.*?)</Message>", text, re.S)
    if code or message:
        parts = [m.group(1).strip().splitlines()[0] for m in (code, message) if m and m.group(1).strip()]
        return ": ".join(parts)[:1000]
    return text[:500].strip()


def shown_url(url: str) -> str:
    """A URL fit for a message: without its query, where a pre-signed URL keeps its signature."""
    parsed = httpx.URL(url)
    return str(parsed.copy_with(query=None, fragment=None))


class AstroAPI:
    def __init__(self, settings: AstroSettings, ca_bundle: Path | None = None):
        self.settings = settings
        self.base = (f"{settings.api_url}/organizations/{quote(settings.organization, safe='')}"
                     f"/deployments/{quote(settings.deployment, safe='')}")
        self.attempts = retry.attempts()
        self.http = httpx.Client(verify=ssl_context(ca_bundle, verify=True), trust_env=False,
                                 timeout=retry.timeout(), follow_redirects=False,
                                 headers={"User-Agent": f"airbuild/{__version__}"})

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> "AstroAPI":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- the calls ---------------------------------------------------------------------------------

    def deployment(self) -> Deployment:
        data = self._call("GET", self.base, what=f"reading Deployment {self.settings.deployment}")
        return Deployment.from_json(data)

    def create_deploy(self, deploy_type: str, description: str) -> Deploy:
        assert deploy_type in DEPLOY_TYPES
        body = {"type": deploy_type, "description": description[:DESCRIPTION_LIMIT]}
        data = self._call("POST", f"{self.base}/deploys", body=body,
                          what=f"creating a {deploy_type} deploy on Deployment {self.settings.deployment}")
        return Deploy.from_json(data)

    def finalize(self, deploy_id: str, dag_tarball_version: str | None) -> Deploy:
        body = {} if dag_tarball_version is None else {"dagTarballVersion": dag_tarball_version}
        data = self._call("POST", f"{self.base}/deploys/{quote(deploy_id, safe='')}/finalize", body=body,
                          what=f"finalizing deploy {deploy_id}")
        return Deploy.from_json(data)

    def upload_bundle(self, upload_url: str, path: Path) -> str:
        """PUT the bundle at `path` to the pre-signed `upload_url`; the blob's version (x-ms-version-id)."""
        checked_url(upload_url, "the DAG upload URL Astro gave")
        for name, value in parse_qsl(httpx.URL(upload_url).query.decode(), keep_blank_values=True):
            if name.lower() == "sig":
                masking.add(value)
        what = f"uploading the DAG bundle to {shown_url(upload_url)}"

        def attempt() -> str:
            response = self._send("PUT", upload_url, headers={"x-ms-blob-type": "BlockBlob",
                                                              "Content-Type": "application/gzip"},
                                  content=path.read_bytes())
            if response.status_code not in (200, 201):
                self._refused(what, response)
            version = response.headers.get("x-ms-version-id")
            if not version:
                raise AstroError(f"{what}: the upload was accepted (HTTP {response.status_code}) but answered no "
                                 "x-ms-version-id, so there is no bundle version to finalize with")
            return version

        return retry.retrying(what, attempt, self.attempts, self._give_up)

    # -- HTTP ----------------------------------------------------------------------------------------

    def _call(self, method: str, url: str, *, what: str, body: dict | None = None) -> dict:
        headers = {"Authorization": f"Bearer {self.settings.token}", "Accept": "application/json"}

        def attempt() -> dict:
            response = self._send(method, url, headers=headers, json_body=body)
            if response.status_code not in (200, 201):
                self._refused(what, response)
            try:
                data = response.json()
            except ValueError:
                raise AstroError(f"{what}: the API answered HTTP {response.status_code} with no JSON") from None
            if not isinstance(data, dict):
                raise AstroError(f"{what}: the API answered something other than a JSON object")
            return data

        return retry.retrying(what, attempt, self.attempts, self._give_up)

    def _send(self, method: str, url: str, *, headers: dict[str, str], json_body: dict | None = None,
              content: bytes | None = None) -> httpx.Response:
        """One request, its answer read; Transient for a dropped connection or a 408, 429 or 5xx."""
        try:
            response = self.http.request(method, url, headers=headers, json=json_body, content=content)
        except httpx.TransportError as exc:
            raise Transient(f"{type(exc).__name__}: {exc}") from None
        transient = retry.transient_status(response, api_message)
        if transient is not None:
            raise transient
        return response

    def _refused(self, what: str, response: httpx.Response) -> NoReturn:
        status = response.status_code
        message = api_message(response)
        detail = f"HTTP {status}" + (f": {message}" if message else "")
        if status == 401:
            raise AstroError(f"{what}: Astro refused the token from {self.settings.token_source} ({detail}); "
                             "check it, or create a new API token", status)
        if status == 403:
            raise AstroError(f"{what}: the token from {self.settings.token_source} may not do this ({detail}); "
                             "use a Deployment API token for this Deployment, or a Workspace or Organization "
                             "token with deploy permission", status)
        if status == 404 and response.request.url.path == httpx.URL(self.base).path:
            raise AstroError(f"{what}: no Deployment {self.settings.deployment} in Organization "
                             f"{self.settings.organization} ({detail})", status)
        raise AstroError(f"{what}: {detail}", status)

    def _give_up(self, message: str, last: Transient) -> NoReturn:
        raise AstroError(f"{message}: {last}", last.response.status_code if last.response is not None else None)

