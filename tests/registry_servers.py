"""Servers the registry tests start on loopback: `docker-registry` processes with their own
configuration (htpasswd + TLS, token auth), and a token server (the fault-injecting proxy is tests/fault_proxy.py).

Every request loop here is bounded: servers stop when their fixture ends.
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import http.server
import json
import signal
import socket
import ssl
import subprocess
import threading
import time
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.helpers import run, tool

USER, PASSWORD = "deployer", "s3cret-Pa55word"
REFRESH_TOKEN = "refresh-3f1c0a7e"  # what Docker saves as `identitytoken` after an OAuth2 login


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# -- certificates and keys -----------------------------------------------------------------------

def self_signed(directory: Path, name: str) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 and localhost (its own CA) and its RSA key, as PEM files."""
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.x509.oid import NameOID

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"airbuild test {name}")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(hours=1)).not_valid_after(now + datetime.timedelta(days=2))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost"),
                                                        x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = directory / f"{name}.crt", directory / f"{name}.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
                                           serialization.NoEncryption()))
    return cert_path, key_path


def libtrust_key_id(public_key) -> str:
    """The key id docker's registry computes for a trusted key (libtrust's format)."""
    from cryptography.hazmat.primitives import serialization

    der = public_key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    text = base64.b32encode(hashlib.sha256(der).digest()[:30]).decode().rstrip("=")
    return ":".join(text[i:i + 4] for i in range(0, len(text), 4))


# -- docker-registry processes -------------------------------------------------------------------

@dataclass
class Registry:
    address: str                  # 127.0.0.1:PORT
    directory: Path
    process: subprocess.Popen
    scheme: str = "http"
    ca: Path | None = None

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)


def start_registry(directory: Path, *, auth: str = "", tls: tuple[Path, Path] | None = None) -> Registry:
    """A `docker-registry` on a free loopback port, storing under `directory`; fails the test if it does not come up."""
    binary = tool("docker-registry")
    directory.mkdir(parents=True, exist_ok=True)
    port = free_port()
    tls_text = f"\n  tls:\n    certificate: {tls[0]}\n    key: {tls[1]}" if tls else ""
    (directory / "config.yml").write_text(f"""version: 0.1
log:
  level: warn
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: {directory / 'data'}
  delete:
    enabled: true
http:
  addr: 127.0.0.1:{port}
  secret: airbuild-test-secret{tls_text}
{auth}""")
    log = open(directory / "registry.log", "wb")
    process = subprocess.Popen([binary, "serve", str(directory / "config.yml")], stdout=log, stderr=log,
                               stdin=subprocess.DEVNULL)
    log.close()
    registry = Registry(f"127.0.0.1:{port}", directory, process, "https" if tls else "http", tls[0] if tls else None)
    context = ssl.create_default_context(cafile=str(tls[0])) if tls else None
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            break
        try:
            urllib.request.urlopen(f"{registry.scheme}://{registry.address}/v2/", timeout=2, context=context)
            return registry
        except urllib.error.HTTPError:
            return registry  # 401: up, and asking for credentials
        except OSError:
            time.sleep(0.1)
    registry.stop()
    pytest.fail(f"docker-registry did not come up on {registry.address}:\n"
                f"{(directory / 'registry.log').read_text()[-3000:]}", pytrace=False)


def htpasswd_auth(directory: Path) -> str:
    """The `auth:` section for Basic auth with USER/PASSWORD (bcrypt, as the registry requires)."""
    path = directory / "htpasswd"
    path.write_text(run([tool("htpasswd"), "-Bbn", USER, PASSWORD]).stdout)
    return f"auth:\n  htpasswd:\n    realm: airbuild-test\n    path: {path}\n"


def answer(request, status: int, data: bytes, content_type: str, headers: dict[str, str] | None = None) -> None:
    """A complete answer from an http.server handler: status, headers, body."""
    request.send_response(status)
    request.send_header("Content-Type", content_type)
    for name, value in (headers or {}).items():
        request.send_header(name, value)
    request.send_header("Content-Length", str(len(data)))
    request.end_headers()
    request.wfile.write(data)


def answer_json(request, status: int, payload: dict) -> None:
    answer(request, status, json.dumps(payload).encode(), "application/json")


# -- a token server ------------------------------------------------------------------------------

@dataclass
class TokenServer:
    """Issues registry tokens (RS256 JWTs) for USER/PASSWORD; anonymous callers get no access."""

    directory: Path
    service: str = "airbuild-test-registry"
    issuer: str = "airbuild-test-issuer"
    lifetime_s: int = 300
    expired_first: int = 0       # hand out this many tokens that are already expired (expires_in still says 300)
    requests: list[dict] = field(default_factory=list)

    def start(self) -> "TokenServer":
        from cryptography.hazmat.primitives import serialization

        self.cert, key_path = self_signed(self.directory, "token-signer")
        self.key = serialization.load_pem_private_key(key_path.read_bytes(), None)
        self.kid = libtrust_key_id(self.key.public_key())
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802
                server.handle(self)

            def do_POST(self):  # noqa: N802  (OAuth2: grant_type=refresh_token in a form)
                server.handle(self)

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.address = f"127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def auth_config(self) -> str:
        return (f"auth:\n  token:\n    realm: http://{self.address}/token\n    service: {self.service}\n"
                f"    issuer: {self.issuer}\n    rootcertbundle: {self.cert}\n")

    def handle(self, request: http.server.BaseHTTPRequestHandler) -> None:
        from urllib.parse import parse_qs, urlparse

        query = parse_qs(urlparse(request.path).query)
        header = request.headers.get("Authorization", "")
        user = None
        if request.command == "POST":
            length = int(request.headers.get("Content-Length", 0))
            query = parse_qs(request.rfile.read(length).decode())
            if query.get("grant_type") != ["refresh_token"] or query.get("refresh_token") != [REFRESH_TOKEN]:
                answer_json(request, 401, {"errors": [{"code": "UNAUTHORIZED", "message": "bad refresh token"}]})
                return
            user = USER
        elif header.startswith("Basic "):
            name, _, password = base64.b64decode(header[6:]).decode().partition(":")
            if (name, password) != (USER, PASSWORD):
                answer_json(request, 401, {"errors": [{"code": "UNAUTHORIZED", "message": "bad credentials"}]})
                return
            user = name
        scopes = [s for value in query.get("scope", []) for s in value.split(" ") if s]
        self.requests.append({"user": user, "scopes": scopes})
        access = []
        for scope in scopes:
            kind, _, rest = scope.partition(":")
            name, _, actions = rest.rpartition(":")
            if user is not None:
                access.append({"type": kind, "name": name, "actions": actions.split(",")})
        now = int(time.time())
        expired = len(self.requests) <= self.expired_first
        claims = {"iss": self.issuer, "sub": user or "", "aud": self.service, "jti": uuid.uuid4().hex,
                  "iat": now - (1000 if expired else 0), "nbf": now - (1000 if expired else 10),
                  "exp": now - 500 if expired else now + self.lifetime_s, "access": access}
        answer_json(request, 200, {"token": self._jwt(claims), "expires_in": self.lifetime_s})

    def _jwt(self, claims: dict) -> str:
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import padding

        def b64(data: bytes) -> str:
            return base64.urlsafe_b64encode(data).decode().rstrip("=")

        head = b64(json.dumps({"typ": "JWT", "alg": "RS256", "kid": self.kid}).encode())
        body = b64(json.dumps(claims).encode())
        signature = self.key.sign(f"{head}.{body}".encode(), padding.PKCS1v15(), hashes.SHA256())
        return f"{head}.{body}.{b64(signature)}"
