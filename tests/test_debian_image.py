"""The system-packages layer as a working system: maintainer scripts run by dpkg in the sandbox, checked
inside the built image with the real tools (`docker load` + `docker run` against dockerd).

The list is the one real Astro projects carry (the fidelity test checks apt would choose the same
packages), plus pkg-config. Two clean builds (fresh stores; the second only given the first's
downloaded .deb files) must give the same digest: what the scripts write (dpkg's database, the
library cache, alternatives, the Java trust store, fontconfig's caches) is normalised.
"""

from __future__ import annotations

import http.server
import json
import os
import re
import ssl
import threading
import uuid
from pathlib import Path

import pytest

from tests.helpers import run_cli
from tests.java_fetch import fetch_class
from tests.projects import make_project
from tests.registry_servers import free_port, self_signed

PACKAGES = ["build-essential", "libpq-dev", "git", "curl", "unixodbc-dev", "libsasl2-dev", "graphviz",
            "openjdk-17-jre-headless", "pkg-config"]


def build(project: Path, store: Path, base: Path, *extra: str, env: dict | None = None) -> dict:
    proc = run_cli(["build", project, "--base", f"rootfs:{base}", "--no-validate", "--json", *extra],
                   env={"AIRBUILD_CACHE_DIR": str(store), **(env or {})}, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return {**json.loads(proc.stdout), "stderr": proc.stderr}


@pytest.fixture(scope="module")
def image(module_tmp, debian_rootfs, docker_client):
    """Two clean builds of the list; the first loaded into dockerd: (tag, first result, second result)."""
    work = module_tmp("debian-image")
    project = make_project(work / "project")
    (project / "packages.txt").write_text("".join(f"{p}\n" for p in PACKAGES))
    first = build(project, work / "store-1", debian_rootfs, "--archive", str(work / "image.tar"))
    # the second store gets the .deb files the lock pins (content-addressed), not the layer
    entries = json.loads((project / "astro.lock").read_text())["debian"]["entries"]
    blobs = work / "store-2" / "blobs" / "sha256"
    blobs.mkdir(parents=True)
    for entry in entries:
        os.link(work / "store-1" / "blobs" / "sha256" / entry["sha256"], blobs / entry["sha256"])
    second = build(project, work / "store-2", debian_rootfs, "--locked", env={"AIRBUILD_PROGRESS": "lines"})
    loaded = docker_client("load", "-i", work / "image.tar").stdout
    # A name of this test's own: another test removing an image of the same name (a project called
    # `project` with the same content) cannot take it away meanwhile.
    tag = f"debian-image-test:{uuid.uuid4().hex[:12]}"
    docker_client("tag", re.search(r"Loaded image: (\S+)", loaded).group(1), tag)
    yield tag, first, second
    docker_client("rmi", "-f", tag, check=False)


def in_image(docker_client, tag: str, script: str, *options: str):
    """`script` run by root in a container of the image (the project's Dockerfile says `USER astro`)."""
    return docker_client("run", "--rm", "--user", "root", *options, tag, "sh", "-c", script, check=False)


def test_two_clean_builds_give_the_same_digest(image):
    _, first, second = image
    assert any("dpkg configured" in note and "bubblewrap" in note for note in first["notes"]), first["notes"]
    layer = next(l for l in first["layers"] if l["rule"] == "system-packages")
    assert not layer["cached"]
    assert first["manifest_digest"] == second["manifest_digest"]
    configured = re.search(r"^configured (\d+) packages in [\d.]+ s$", second["stderr"], re.M)
    assert configured and int(configured.group(1)) > 100, "progress while dpkg configures: " + second["stderr"][-2000:]


def test_apt_and_dpkg_find_every_package_configured(image, docker_client):
    tag, _, _ = image
    proc = in_image(docker_client, tag, "apt-get check -q && dpkg --audit && "
                    "dpkg-query -W -f '${db:Status-Abbrev} ${Package}\\n'", "--network", "none")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    states = dict(line.split()[::-1] for line in proc.stdout.splitlines() if re.match(r"^[a-z]{2}[ A-Z] ", line))
    assert set(PACKAGES) <= set(states), sorted(set(PACKAGES) - set(states))
    assert {s for s in states.values()} == {"ii"}, {p: s for p, s in states.items() if s != "ii"}


def test_a_c_file_compiles_and_pkg_config_knows_libpq(image, docker_client):
    tag, _, _ = image
    script = ("printf '#include <libpq-fe.h>\\nint main(void){return PQlibVersion() > 0 ? 0 : 1;}\\n' > /tmp/a.c && "
              "cc /tmp/a.c -o /tmp/a $(pkg-config --cflags --libs libpq) && /tmp/a && pkg-config --libs libpq")
    proc = in_image(docker_client, tag, script, "--network", "none")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.strip().splitlines()[-1] == "-lpq"


@pytest.fixture
def tls_server(tmp_path):
    """An HTTPS server on loopback with a certificate of its own CA: (url, the CA's PEM file)."""
    cert, key = self_signed(tmp_path, "loopback")
    server = http.server.HTTPServer(("127.0.0.1", free_port()), http.server.SimpleHTTPRequestHandler)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"https://127.0.0.1:{server.server_address[1]}/", cert
    server.shutdown()
    server.server_close()


def test_java_checks_tls_against_the_trust_store_ca_certificates_java_made(image, docker_client, tls_server,
                                                                          tmp_path):
    """The trust store is there and full; Java refuses the loopback server's unknown CA, and accepts it once
    update-ca-certificates has run the Java hook the packages' scripts set up."""
    tag, _, _ = image
    url, ca = tls_server
    classes = tmp_path / "classes"
    classes.mkdir()
    (classes / "Fetch.class").write_bytes(fetch_class())
    listing = in_image(docker_client, tag, "keytool -list -cacerts -storepass changeit", "--network", "none")
    assert listing.returncode == 0, listing.stdout + listing.stderr
    assert int(re.search(r"contains (\d+) entries", listing.stdout).group(1)) > 100
    script = (f"java -cp /classes Fetch {url}; echo unknown-ca=$?; "
              "cp /ca/loopback.crt /usr/local/share/ca-certificates/ && update-ca-certificates >/dev/null && "
              f"java -cp /classes Fetch {url}; echo trusted-ca=$?")
    proc = in_image(docker_client, tag, script, "--network", "host", "-v", f"{classes}:/classes:ro",
                    "-v", f"{ca.parent}:/ca:ro")
    assert "PKIX path building failed" in proc.stderr and "unknown-ca=1" in proc.stdout, proc.stdout + proc.stderr
    assert "trusted-ca=0" in proc.stdout, proc.stdout + proc.stderr
