"""A local Astro Deploy API (platform v1beta1), written from Astro's public API reference, for tests.

    GET  {API}/organizations/{org}/deployments/{dep}                        the Deployment
    POST {API}/organizations/{org}/deployments/{dep}/deploys                {type, description} -> a Deploy
    GET  {API}/organizations/{org}/deployments/{dep}/deploys/{id}           a Deploy
    POST {API}/organizations/{org}/deployments/{dep}/deploys/{id}/finalize  {dagTarballVersion} -> the Deploy
    PUT  /dag-uploads/{dep}/{id}?sv=..&sig=..                               the pre-signed blob URL a deploy's
                                                                            dagsUploadUrl names (Azure Put Blob)

{API} is http://127.0.0.1:PORT/platform/v1beta1. As the reference describes them: the Deploy's
`imageRepository` and `imageTag` name where its image goes (a new tag for every deploy),
`dagsUploadUrl` appears only when the Deployment has DAG deploys enabled, finalize requires
`dagTarballVersion` for IMAGE_AND_DAG and DAG_ONLY deploys there; errors are Astro's JSON
(`{"message", "requestId", "statusCode"}`), the blob endpoint's are Azure's XML. Beyond the reference,
finalize checks what a real rollout would find: the version was uploaded to this deploy, and the
image tag is in the registry.

`faults[KIND]` (KIND: get-deployment, create, finalize, upload) is a list of what the next requests
of that kind meet instead of an answer: "503", "500", "drop" (the connection closed unanswered),
or for finalize "refuse" (400 with a message, as when Astro cannot finalize).
"""

from __future__ import annotations

import datetime
import http.server
import itertools
import json
import re
import secrets
import socket
import threading
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass, field
from urllib.parse import parse_qs, urlsplit

from tests.registry_servers import answer, answer_json as _json

API_PREFIX = "/platform/v1beta1"
DEPLOY_TYPES = ("IMAGE_AND_DAG", "IMAGE_ONLY", "DAG_ONLY")
MANIFEST_TYPES = ("application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json")
REFUSAL = "Deploy cannot be finalized: the Deployment is being updated, try again later"


@dataclass
class Deployment:
    id: str
    organization: str
    dag_deploy_enabled: bool
    image_repository: str               # as the API answers it (the tests give some a scheme)
    repository: str                     # its path in the registry
    runtime_version: str = "13.1.0"
    image_tag: str = ""
    dag_tarball_version: str | None = None

    def to_json(self) -> dict:
        now = _now()
        return {
            "id": self.id, "organizationId": self.organization, "name": f"deployment {self.id}",
            "workspaceId": "ws-test", "namespace": f"ns-{self.id}", "status": "HEALTHY", "type": "STANDARD",
            "astroRuntimeVersion": self.runtime_version, "runtimeVersion": self.runtime_version,
            "airflowVersion": "2.10.3", "isDagDeployEnabled": self.dag_deploy_enabled, "isCicdEnforced": False,
            "imageRepository": self.image_repository, "imageTag": self.image_tag,
            "dagTarballVersion": self.dag_tarball_version, "desiredDagTarballVersion": self.dag_tarball_version,
            "webServerUrl": f"{self.id}.example.invalid", "createdAt": now, "updatedAt": now,
        }


@dataclass
class Request:
    method: str
    path: str                 # without the query
    body: dict | None         # a JSON body, parsed
    size: int                 # body bytes


@dataclass
class AstroAPIServer:
    registry: str                                   # host:port behind the deployments' imageRepository
    token: str
    organization: str = "org-test"
    deployments: dict[str, Deployment] = field(default_factory=dict)
    deploys: dict[str, dict] = field(default_factory=dict)
    bundles: dict[str, bytes] = field(default_factory=dict)   # x-ms-version-id -> the uploaded bytes
    faults: dict[str, list[str]] = field(default_factory=dict)
    log: list[Request] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._ids = itertools.count(1)
        self._signatures: dict[str, str] = {}       # deploy id -> the sig its upload URL carries
        self._uploads: dict[str, list[str]] = {}    # deploy id -> versions uploaded to its URL
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self):  # noqa: N802
                server._handle(self)

            do_POST = do_PUT = do_GET  # noqa: N815

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.address = f"127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://{self.address}{API_PREFIX}"

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def add_deployment(self, dep_id: str, *, dag_deploys: bool, repository: str | None = None,
                       scheme: str = "") -> Deployment:
        """A Deployment whose images go to `repository` in the registry (default: a new one of its own)."""
        repository = repository or f"{self.organization}/{uuid.uuid4().hex[:10]}/{dep_id}"
        deployment = Deployment(dep_id, self.organization, dag_deploys, f"{scheme}{self.registry}/{repository}",
                                repository)
        self.deployments[dep_id] = deployment
        return deployment

    def calls(self) -> list[tuple[str, str]]:
        """(method, what) of every request: what is the endpoint's kind."""
        return [(r.method, _kind(r.path)) for r in self.log]

    # -- requests ---------------------------------------------------------------------------------

    def _handle(self, request: http.server.BaseHTTPRequestHandler) -> None:
        url = urlsplit(request.path)
        length = int(request.headers.get("Content-Length") or 0)
        raw = request.rfile.read(length) if length else b""
        try:
            body = json.loads(raw) if raw and request.headers.get("Content-Type", "").startswith("application/json") \
                else None
        except ValueError:
            body = None
        with self._lock:
            self.log.append(Request(request.command, url.path, body, len(raw)))
            kind = _kind(url.path)
            pending = self.faults.get(kind)
            fault = pending.pop(0) if pending else None
        if fault == "drop":
            request.close_connection = True
            request.connection.shutdown(socket.SHUT_RDWR)
            return
        if fault in ("500", "503"):
            return _error(request, int(fault), "upstream unavailable")
        if kind == "upload":
            return self._upload(request, url, raw)
        if not url.path.startswith(API_PREFIX + "/"):
            return _error(request, 404, "no such route")
        if request.headers.get("Authorization") != f"Bearer {self.token}":
            given = request.headers.get("Authorization")
            return _error(request, 401, "Unauthorized: the API token is invalid or expired" if given else
                          "Unauthorized: no API token given")
        match = re.fullmatch(r"/organizations/([^/]+)/deployments/([^/]+)(/deploys(?:/([^/]+)(/finalize)?)?)?",
                             url.path[len(API_PREFIX):])
        if not match:
            return _error(request, 404, "no such route")
        org, dep_id, deploys, deploy_id, finalize = match.groups()
        if org != self.organization:
            return _error(request, 403, f"the API token has no access to organization {org}")
        deployment = self.deployments.get(dep_id)
        if deployment is None:
            return _error(request, 404, f"Deployment {dep_id} not found")
        with self._lock:
            if not deploys and request.command == "GET":
                return _json(request, 200, deployment.to_json())
            if deploys and deploy_id is None and request.command == "POST":
                return self._create(request, deployment, body or {})
            deploy = self.deploys.get(deploy_id or "")
            if deploy is None or deploy["deploymentId"] != dep_id:
                return _error(request, 404, f"Deploy {deploy_id} not found")
            if finalize and request.command == "POST":
                if fault == "refuse":
                    return _error(request, 400, REFUSAL)
                return self._finalize(request, deployment, deploy, body or {})
            if not finalize and request.command == "GET":
                return _json(request, 200, deploy)
        return _error(request, 405, "method not allowed")

    def _create(self, request, deployment: Deployment, body: dict) -> None:
        deploy_type = body.get("type")
        if deploy_type not in DEPLOY_TYPES:
            return _error(request, 400, f"invalid deploy type {deploy_type!r}: must be one of {', '.join(DEPLOY_TYPES)}")
        if len(body.get("description") or "") > 500:
            return _error(request, 400, "description must be at most 500 characters")
        if deploy_type == "DAG_ONLY" and not deployment.dag_deploy_enabled:
            return _error(request, 400, "dag deploy is not enabled for deployment")
        number = next(self._ids)
        deploy_id = f"cldeploy{number:06d}"
        now = _now()
        deploy = {
            "id": deploy_id, "deploymentId": deployment.id, "type": deploy_type, "status": "INITIALIZED",
            "description": body.get("description") or "", "isDagDeployEnabled": deployment.dag_deploy_enabled,
            "imageRepository": deployment.image_repository,
            "imageTag": f"deploy-{datetime.datetime.now(datetime.timezone.utc):%Y-%m-%dT%H-%M-%S}-{number}",
            "astroRuntimeVersion": deployment.runtime_version, "airflowVersion": "2.10.3",
            "createdAt": now, "updatedAt": now,
            "createdBySubject": {"id": "api-token-1", "subjectType": "SERVICEKEY", "apiTokenName": "ci"},
        }
        if deployment.dag_deploy_enabled:
            signature = secrets.token_urlsafe(24)
            self._signatures[deploy_id] = signature
            deploy["dagsUploadUrl"] = (f"http://{self.address}/dag-uploads/{deployment.id}/{deploy_id}"
                                       f"?sv=2023-11-03&sr=b&sp=cw&sig={signature}")
        self.deploys[deploy_id] = deploy
        return _json(request, 200, deploy)

    def _finalize(self, request, deployment: Deployment, deploy: dict, body: dict) -> None:
        if deploy["status"] != "INITIALIZED":
            return _error(request, 400, f"Deploy {deploy['id']} is already {deploy['status']}")
        version = body.get("dagTarballVersion")
        needs_dags = deployment.dag_deploy_enabled and deploy["type"] in ("IMAGE_AND_DAG", "DAG_ONLY")
        if needs_dags and not version:
            return _error(request, 400, "dagTarballVersion is required when DAG deploys are enabled")
        if version and version not in self._uploads.get(deploy["id"], []):
            return _error(request, 400, f"DAG tarball version {version} was not uploaded for this deploy")
        if deploy["type"] in ("IMAGE_AND_DAG", "IMAGE_ONLY") and not self._has_image(deploy):
            return _error(request, 400, f"image tag {deploy['imageTag']} not found in {deploy['imageRepository']}")
        deploy.update(status="DEPLOYED", updatedAt=_now())
        if version:
            deploy["dagTarballVersion"] = version
            deployment.dag_tarball_version = version
        if deploy["type"] != "DAG_ONLY":
            deployment.image_tag = deploy["imageTag"]
        return _json(request, 200, deploy)

    def _has_image(self, deploy: dict) -> bool:
        repository = deploy["imageRepository"].split("://", 1)[-1].split("/", 1)[1]
        check = urllib.request.Request(f"http://{self.registry}/v2/{repository}/manifests/{deploy['imageTag']}",
                                       method="HEAD", headers={"Accept": MANIFEST_TYPES})
        try:
            with urllib.request.urlopen(check, timeout=10):
                return True
        except urllib.error.HTTPError as exc:
            return exc.code == 401  # a registry asking for credentials: assume the push it took went through
        except OSError:
            return False

    def _upload(self, request, url, raw: bytes) -> None:
        match = re.fullmatch(r"/dag-uploads/([^/]+)/([^/]+)", url.path)
        query = parse_qs(url.query)
        with self._lock:
            deploy_id = match.group(2) if match else ""
            expected = self._signatures.get(deploy_id)
            if request.command != "PUT" or expected is None:
                return _azure_error(request, 404, "ResourceNotFound", "The specified resource does not exist.")
            if query.get("sig") != [expected]:
                return _azure_error(request, 403, "AuthenticationFailed", "Server failed to authenticate the "
                                    "request. Make sure the value of Authorization header is formed correctly.")
            if request.headers.get("Authorization"):
                return _azure_error(request, 400, "InvalidAuthenticationInfo", "A pre-signed URL takes no "
                                    "Authorization header.")
            if request.headers.get("x-ms-blob-type") != "BlockBlob":
                return _azure_error(request, 400, "MissingRequiredHeader", "An HTTP header that's mandatory for "
                                    "this request is not specified. HeaderName: x-ms-blob-type")
            version = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f") + \
                f"{len(self.bundles) % 10}Z"
            self.bundles[version] = raw
            self._uploads.setdefault(deploy_id, []).append(version)
        request.send_response(201)
        for name, value in (("x-ms-version-id", version), ("x-ms-request-server-encrypted", "true"),
                            ("ETag", f'"0x{len(self.bundles):016X}"'), ("Content-Length", "0")):
            request.send_header(name, value)
        request.end_headers()


def _kind(path: str) -> str:
    if path.startswith("/dag-uploads/"):
        return "upload"
    if path.endswith("/finalize"):
        return "finalize"
    if re.search(r"/deploys/[^/]+$", path):
        return "get-deploy"
    if path.endswith("/deploys"):
        return "create"
    return "get-deployment"


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _error(request, status: int, message: str) -> None:
    _json(request, status, {"message": message, "requestId": f"req-{secrets.token_hex(6)}", "statusCode": status})


def _azure_error(request, status: int, code: str, message: str) -> None:
    data = (f'<?xml version="1.0" encoding="utf-8"?><Error><Code>{code}</Code><Message>{message}\n'
            f"RequestId:{secrets.token_hex(8)}\nTime:{_now()}</Message></Error>").encode()
    answer(request, status, data, "application/xml", {"x-ms-error-code": code})
