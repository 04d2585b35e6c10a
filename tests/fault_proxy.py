"""A fault-injecting HTTP/1.1 proxy in front of a registry, for the fault tests and the fault campaign.

`FaultProxy(upstream, plan)` listens on 127.0.0.1; every request is classified (`Request.kind`:
"blob-upload" for a PATCH or PUT of upload bytes, "manifest-put", "upload-start", "blob-head", "other")
and `plan(request)` says what to do with it: None (forward it), or a `Fault`:

- `Fault.cut(after)`: forward the headers and the first `after` body bytes, then cut both
  connections (`after` < 1: that fraction of the body);
- `Fault.status(code, retry_after)`: answer `code` (with `Retry-After` when given) without forwarding;
- `Fault.drop_response()`: forward the whole request, then hang up without an answer;
- `Fault.slow(seconds)`: forward it, wait, then trickle the answer out in small pieces.

`token_uses=K` makes every bearer token expire after K requests: the next request carrying it
gets a 401 with the registry's own challenge (learnt from its first 401), as a registry does
when a token expires in the middle of a push.

The proxy counts what the client sent (`body_bytes`: every request body byte it received, the
ones of cut or refused requests too) so a test can bound what a fault costs in re-sent bytes.
Every loop is bounded; `stop()` ends it.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from dataclasses import dataclass, field
from typing import Callable

FAULT_BODY = json.dumps({"errors": [{"code": "UNKNOWN", "message": "injected fault"}]}).encode()
UNAUTHORIZED_BODY = json.dumps({"errors": [{"code": "UNAUTHORIZED", "message": "token expired"}]}).encode()
REASONS = {401: "Unauthorized", 429: "Too Many Requests", 500: "Internal Server Error", 502: "Bad Gateway",
           503: "Service Unavailable", 504: "Gateway Timeout"}


@dataclass(frozen=True)
class Fault:
    kind: str                         # "cut", "status", "drop-response", "slow"
    after: float = 0.5                # cut: body bytes forwarded first (below 1: a fraction of the body)
    code: int = 503                   # status
    retry_after: float | None = None  # status: the Retry-After header's seconds
    delay_s: float = 0.0              # slow

    @classmethod
    def cut(cls, after: float = 0.5) -> "Fault":
        return cls("cut", after=after)

    @classmethod
    def status(cls, code: int, retry_after: float | None = None) -> "Fault":
        return cls("status", code=code, retry_after=retry_after)

    @classmethod
    def drop_response(cls) -> "Fault":
        return cls("drop-response")

    @classmethod
    def slow(cls, delay_s: float) -> "Fault":
        return cls("slow", delay_s=delay_s)

    @property
    def label(self) -> str:
        if self.kind == "status":
            return str(self.code) + (f" retry-after={self.retry_after:g}" if self.retry_after is not None else "")
        if self.kind == "cut":
            return f"cut after {self.after:g}"
        if self.kind == "slow":
            return f"slow {self.delay_s:g}s"
        return self.kind


# The plans test_deploy.py writes as words.
LEGACY = {"500": Fault.status(500), "429": Fault.status(429, retry_after=1), "drop-request": Fault.cut(0.5),
          "drop-response": Fault.drop_response()}


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    n: int                  # requests of this method so far, this one included
    kind: str               # see the module's docstring
    kind_n: int             # requests of this kind so far, this one included
    length: int             # the body's length (Content-Length), 0 without one
    chunked: bool = False   # the body comes in chunks (Transfer-Encoding), its length unknown


def classify(method: str, path: str) -> str:
    bare = path.split("?", 1)[0]
    if "/blobs/uploads/" in bare:
        if method in ("PATCH", "PUT"):
            return "blob-upload"
        if method == "POST":
            return "upload-start"
        return "upload-status"
    if "/manifests/" in bare and method == "PUT":
        return "manifest-put"
    if "/blobs/" in bare and method == "HEAD":
        return "blob-head"
    return "other"


@dataclass
class Counters:
    requests: int = 0
    body_bytes: int = 0                  # request body bytes received from the client
    upload_bytes: int = 0                # ... of blob uploads only
    faults: list[str] = field(default_factory=list)
    tokens_expired: int = 0    # requests refused for a used-up token (several in flight may carry one token)
    expired_tokens: set = field(default_factory=set)  # the distinct tokens used up


class FaultProxy:
    def __init__(self, upstream: str, plan: Callable[[Request], Fault | str | None] | None = None, *,
                 token_uses: int | None = None):
        self.upstream_host, port = upstream.rsplit(":", 1)
        self.upstream_port = int(port)
        self.plan = plan or (lambda request: None)
        self.token_uses = token_uses
        self.counters = Counters()
        self.log: list[tuple[str, str, str]] = []   # (method, path, what was done: "pass" or a fault's label)
        self._by_method: dict[str, int] = {}
        self._by_kind: dict[str, int] = {}
        self._token_counts: dict[str, int] = {}
        self._challenge: str | None = None
        self.lock = threading.Lock()
        self.server = socket.socket()
        self.server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.server.bind(("127.0.0.1", 0))
        self.server.listen(32)
        self.server.settimeout(0.5)
        self.address = f"127.0.0.1:{self.server.getsockname()[1]}"
        self.running = True
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.running = False
        self.thread.join(5)
        self.server.close()

    def __enter__(self) -> "FaultProxy":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    @property
    def injected(self) -> list[str]:
        return [label for _, _, label in self.log if label != "pass"]

    def _accept(self) -> None:
        while self.running:
            try:
                client, _ = self.server.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    # -- one client connection ------------------------------------------------------------------

    def _serve(self, client: socket.socket) -> None:
        client.settimeout(30)
        reader = client.makefile("rb")
        try:
            for _ in range(10_000):  # bounded: one client connection never serves more than this
                line = reader.readline(65536)
                if not line:
                    return
                parts = line.decode("latin-1").split(" ", 2)
                if len(parts) != 3 or not parts[2].startswith("HTTP/"):
                    return  # not HTTP (a client trying TLS first): hang up, as a plain-HTTP server would
                method, path, _ = parts
                headers = _read_headers(reader)
                values = {name.lower(): value for name, value in headers}
                chunked = values.get("transfer-encoding", "").lower() == "chunked"
                length = int(values.get("content-length", 0) or 0) if not chunked else 0
                request, fault = self._decide(method, path, length, chunked)
                if self._expired(values):
                    self._drain(reader, length, chunked, request)
                    self._answer(client, 401, UNAUTHORIZED_BODY, {"WWW-Authenticate": self._challenge or ""})
                    continue
                if fault is not None and fault.kind == "status":
                    self._drain(reader, length, chunked, request)
                    extra = {"Retry-After": f"{fault.retry_after:g}"} if fault.retry_after is not None else {}
                    self._answer(client, fault.code, FAULT_BODY, extra)
                    continue
                self._forward(client, reader, method, path, headers, length, chunked, request, fault)
                return  # the upstream was asked to close, and so is this connection
        except OSError:
            return
        finally:
            reader.close()
            client.close()

    def _decide(self, method: str, path: str, length: int, chunked: bool) -> tuple[Request, Fault | None]:
        kind = classify(method, path)
        with self.lock:
            self._by_method[method] = self._by_method.get(method, 0) + 1
            self._by_kind[kind] = self._by_kind.get(kind, 0) + 1
            self.counters.requests += 1
            request = Request(method, path, self._by_method[method], kind, self._by_kind[kind], length, chunked)
            fault = self.plan(request)
            if isinstance(fault, str):
                fault = LEGACY.get(fault)
            self.log.append((method, path, fault.label if fault else "pass"))
            if fault is not None:
                self.counters.faults.append(f"{kind}:{fault.label}")
        return request, fault

    def _expired(self, values: dict[str, str]) -> bool:
        """True when the request's bearer token has been used up (`token_uses`)."""
        authorization = values.get("authorization", "")
        if self.token_uses is None or not authorization.startswith("Bearer ") or self._challenge is None:
            return False
        with self.lock:
            uses = self._token_counts.get(authorization, 0) + 1
            self._token_counts[authorization] = uses
            if uses <= self.token_uses:
                return False
            self.counters.tokens_expired += 1
            self.counters.expired_tokens.add(authorization)
            self.log.append(("", "", "token expired"))
            self.counters.faults.append("token-expired")
            return True

    def _count(self, request: Request, size: int) -> None:
        with self.lock:
            self.counters.body_bytes += size
            if request.kind == "blob-upload":
                self.counters.upload_bytes += size

    def _drain(self, reader, length: int, chunked: bool, request: Request) -> None:
        for piece in _body(reader, length, chunked):
            self._count(request, len(piece))

    @staticmethod
    def _answer(client: socket.socket, code: int, body: bytes, headers: dict[str, str]) -> None:
        head = [f"HTTP/1.1 {code} {REASONS.get(code, 'Error')}", "Content-Type: application/json",
                f"Content-Length: {len(body)}", *(f"{k}: {v}" for k, v in headers.items() if v)]
        client.sendall(("\r\n".join(head) + "\r\n\r\n").encode() + body)

    def _forward(self, client: socket.socket, reader, method: str, path: str, headers: list[tuple[str, str]],
                 length: int, chunked: bool, request: Request, fault: Fault | None) -> None:
        kept = [(k, v) for k, v in headers if k.lower() not in ("connection", "keep-alive", "transfer-encoding",
                                                                   "content-length")]
        if chunked:  # the upstream is sent a Content-Length: read the chunked body first
            body = b"".join(_body(reader, 0, True))
            self._count(request, len(body))
            pieces, length = [body], len(body)
        else:
            pieces = None
        kept += [("Content-Length", str(length)), ("Connection", "close")]
        head = (f"{method} {path} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in kept) + "\r\n").encode()
        cut_at = None
        if fault is not None and fault.kind == "cut":
            cut_at = int(fault.after if fault.after >= 1 else length * fault.after)
        with socket.create_connection((self.upstream_host, self.upstream_port), timeout=60) as upstream:
            upstream.sendall(head)
            sent = 0
            for piece in pieces if pieces is not None else _body(reader, length, False):
                if pieces is None:
                    self._count(request, len(piece))
                if cut_at is not None and sent + len(piece) >= cut_at:
                    upstream.sendall(piece[:cut_at - sent])
                    time.sleep(0.1)  # let the registry see the bytes before the connection goes
                    _abort(upstream)
                    _abort(client)
                    return
                upstream.sendall(piece)
                sent += len(piece)
            response = _read_response(upstream)
        if response.startswith(b"HTTP/1.1 401") and self._challenge is None:
            self._learn_challenge(response)
        if fault is not None and fault.kind == "drop-response":
            return
        if fault is not None and fault.kind == "slow":
            time.sleep(fault.delay_s)
            for start in range(0, len(response), 64):
                client.sendall(response[start:start + 64])
                time.sleep(0.01)
            return
        client.sendall(response)

    def _learn_challenge(self, response: bytes) -> None:
        head = response.split(b"\r\n\r\n", 1)[0].decode("latin-1")
        for line in head.split("\r\n")[1:]:
            name, _, value = line.partition(":")
            if name.strip().lower() == "www-authenticate":
                self._challenge = value.strip()


def _read_headers(reader) -> list[tuple[str, str]]:
    headers = []
    for _ in range(200):
        line = reader.readline(65536)
        if line in (b"\r\n", b"\n", b""):
            break
        name, _, value = line.decode("latin-1").rstrip("\r\n").partition(":")
        headers.append((name.strip(), value.strip()))
    return headers


def _body(reader, length: int, chunked: bool):
    """The request body in pieces of at most 64 KiB."""
    if not chunked:
        left = length
        while left > 0:
            piece = reader.read(min(left, 1 << 16))
            if not piece:
                raise OSError("the client closed the connection in the middle of a body")
            left -= len(piece)
            yield piece
        return
    for _ in range(1 << 20):
        size = int(reader.readline(1024).split(b";")[0], 16)
        if size == 0:
            reader.readline(1024)
            return
        yield reader.read(size)
        reader.readline(1024)


def _read_response(upstream: socket.socket) -> bytes:
    response = b""
    while chunk := upstream.recv(1 << 16):
        response += chunk
    return response


def _abort(sock: socket.socket) -> None:
    """Close with a reset, as a connection cut in the middle of a transfer looks."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        sock.close()
    except OSError:
        pass


# -- what the registry behind the proxy holds afterwards -----------------------------------------

def upstream_get(address: str, path: str, token: str | None = None) -> tuple[int, bytes]:
    """GET from the registry itself (not through the proxy): (status, body)."""
    import urllib.error
    import urllib.request

    headers = {"Accept": "application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    try:
        with urllib.request.urlopen(urllib.request.Request(f"http://{address}{path}", headers=headers),
                                    timeout=30) as answer:
            return answer.status, answer.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def image_problems(address: str, repo: str, manifest_digest: str, tags: list[str],
                   token: str | None = None) -> list[str]:
    """What is wrong with a pushed image: a tag missing or naming other bytes, a blob missing or corrupt."""
    import hashlib

    problems, body = [], b""
    for tag in tags:
        status, body = upstream_get(address, f"/v2/{repo}/manifests/{tag}", token)
        if status != 200:
            problems.append(f"tag {tag}: HTTP {status}")
        elif "sha256:" + hashlib.sha256(body).hexdigest() != manifest_digest:
            problems.append(f"tag {tag} names other bytes")
    if problems:
        return problems
    manifest = json.loads(body)
    for blob in [manifest["config"], *manifest["layers"]]:
        status, data = upstream_get(address, f"/v2/{repo}/blobs/{blob['digest']}", token)
        if status != 200 or "sha256:" + hashlib.sha256(data).hexdigest() != blob["digest"]:
            problems.append(f"blob {blob['digest']}: HTTP {status}, {len(data)} bytes")
    return problems


def tags_on_partial_image(address: str, repo: str, manifest_digest: str, tags: list[str],
                          token: str | None = None) -> list[str]:
    """The tags (of `tags`) a failed push left, and the manifest if it is reachable by digest."""
    status, body = upstream_get(address, f"/v2/{repo}/tags/list", token)
    present = (json.loads(body).get("tags") or []) if status == 200 else []
    left = sorted(set(tags) & set(present))
    if upstream_get(address, f"/v2/{repo}/manifests/{manifest_digest}", token)[0] == 200:
        left.append(manifest_digest)
    return left
