"""A package index on loopback (PEP 503 simple pages) serving given files, counting the files it sends;
with `auth`, every request must carry that Authorization header (401 and a Basic challenge otherwise)."""

from __future__ import annotations

import hashlib
import http.server
import threading


def project_of(filename: str) -> str:
    """The normalised project a distribution file belongs to (`internal_tools-1.2.0-py3-none-any.whl` ->
    `internal-tools`); file names are normalised already, so the name ends at the first `-`."""
    return filename.split("-")[0].replace("_", "-").lower()


class PackageIndex:
    def __init__(self, files: list[tuple[str, bytes]], auth: str | None = None):
        served = dict(files)
        self.downloads: list[str] = []
        index = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_HEAD(self):
                self.do_GET(head=True)

            def do_GET(self, head: bool = False):
                if auth is not None and self.headers.get("Authorization") != auth:
                    self.send_response(401)
                    self.send_header("WWW-Authenticate", 'Basic realm="index"')
                    self.end_headers()
                    return
                name = self.path.strip("/").split("/")[-1]
                if self.path.startswith("/simple/"):
                    links = [f'<a href="/files/{f}#sha256={hashlib.sha256(data).hexdigest()}">{f}</a>'
                             for f, data in served.items() if project_of(f) == name]
                    # none: 404, so an installer asks its other indexes (an empty page would say "no files")
                    body, ctype = "".join(links).encode(), "text/html" if links else ""
                elif self.path.startswith("/files/") and name in served:
                    body, ctype = served[name], "application/octet-stream"
                    if not head:
                        index.downloads.append(name)
                else:
                    body, ctype = b"", ""
                self.send_response(200 if ctype else 404)
                self.send_header("Content-Type", ctype or "text/plain")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if not head:
                    self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/simple/"

    def close(self) -> None:
        self.server.shutdown()
