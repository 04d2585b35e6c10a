"""The registry client against real `docker-registry` processes: pulls of bases, auth, TLS, credentials."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from builder.common.errors import InputError
from builder.registry.reference import is_loopback, normalise_registry, parse_reference
from tests.helpers import run, run_cli, tool
from tests.projects import make_project
from tests.registry_servers import PASSWORD, USER, htpasswd_auth, self_signed
from tests.test_bases import tiny_rootfs


def build_json(project: Path, *extra: str, env: dict | None = None) -> dict:
    return json.loads(run_cli(["build", project, "--json", *extra], env=env).stdout)


def push_layout(layout: Path, tag: str, dest: str, *extra: str) -> None:
    run([tool("skopeo"), "copy", "--quiet", "--dest-tls-verify=false", *extra, f"oci:{layout}:{tag}", f"docker://{dest}"])


def base_image(tmp_path: Path, name: str, *, platform: str = "linux/amd64", marker: str = "") -> tuple[Path, dict]:
    """An image built by airbuild from a tiny rootfs, in an OCI layout; returns (layout, build result)."""
    root = tmp_path / name
    root.mkdir()
    tiny_rootfs(root / "rootfs.tar.gz")
    (root / "proj").mkdir()
    (root / "proj" / "Dockerfile").write_text(f"FROM scratch\nLABEL marker={marker or name}\nUSER astro\n")
    (root / "proj" / "astro.yaml").write_text(f"platform: {platform}\nbase:\n  rootfs: ../rootfs.tar.gz\n")
    result = build_json(root / "proj", "--oci", root / "layout")
    return root / "layout", result


def app_project(tmp_path: Path, base_ref: str, name: str = "app") -> Path:
    project = make_project(tmp_path / name)
    (project / "astro.yaml").write_text(f"base:\n  image: {base_ref}\n")
    return project


# -- references --------------------------------------------------------------------------------

@pytest.mark.parametrize("text, expected", [
    ("python", ("docker.io", "library/python", "latest", None)),
    ("python:3.12-slim", ("docker.io", "library/python", "3.12-slim", None)),
    ("bitnami/redis:7", ("docker.io", "bitnami/redis", "7", None)),
    ("index.docker.io/library/debian", ("docker.io", "library/debian", "latest", None)),
    ("quay.io/astronomer/astro-runtime:12.1.0", ("quay.io", "astronomer/astro-runtime", "12.1.0", None)),
    ("localhost/app", ("localhost", "app", "latest", None)),
    ("127.0.0.1:5000/team/app:v1@sha256:" + "a" * 64, ("127.0.0.1:5000", "team/app", "v1", "sha256:" + "a" * 64)),
    ("host:5000/app@sha256:" + "b" * 64, ("host:5000", "app", None, "sha256:" + "b" * 64)),
])
def test_references_are_normalised_as_docker_does(text, expected):
    ref = parse_reference(text)
    assert (ref.registry, ref.repository, ref.tag, ref.digest) == expected
    assert parse_reference(str(ref)) == ref


@pytest.mark.parametrize("text", ["Upper/Case", "app:bad tag", "app@sha256:short", "host:5000/", "a//b"])
def test_bad_references_are_input_errors(text):
    with pytest.raises(InputError):
        parse_reference(text)


def test_plain_http_only_for_loopback():
    assert is_loopback("127.0.0.1:5000") and is_loopback("localhost:80") and is_loopback("[::1]:5000")
    assert not is_loopback("10.0.0.1:5000") and not is_loopback("registry.example.com")
    assert normalise_registry("https://index.docker.io/v1/") == "docker.io"

    import httpx

    from builder.registry.client import RegistryClient, Transient

    def probe(registry: str, insecure: bool) -> list[str]:
        """The URLs a client tries when HTTPS fails as against a plain-HTTP server (no traffic leaves)."""
        tried = []

        def get(url, **kwargs):
            tried.append(url)
            raise httpx.ConnectError("[SSL: WRONG_VERSION_NUMBER] wrong version number")

        client = RegistryClient(registry, insecure=insecure)
        client.http.get = get
        try:
            with pytest.raises(Transient):
                client._probe()
        finally:
            client.close()
        return tried

    assert probe("registry.example.com", insecure=False) == ["https://registry.example.com/v2/"]
    assert probe("registry.example.com", insecure=True) == ["https://registry.example.com/v2/",
                                                            "http://registry.example.com/v2/"]
    assert probe("127.0.0.1:5999", insecure=False) == ["https://127.0.0.1:5999/v2/", "http://127.0.0.1:5999/v2/"]


# -- pulls -------------------------------------------------------------------------------------

def test_base_pushed_by_skopeo_is_pulled_and_built_on(tmp_path, airbuild_cache, start_registry):
    registry = start_registry()
    layout, base = base_image(tmp_path, "base")
    push_layout(layout, base["tag"], f"{registry.address}/bases/tiny:v1")
    project = app_project(tmp_path, f"{registry.address}/bases/tiny:v1")
    result = build_json(project)
    assert [l["diff_id"] for l in result["layers"][:1]] == [base["layers"][0]["diff_id"]]
    assert result["layers"][0]["reason"] == f"base image image:{registry.address}/bases/tiny:v1"
    lock = json.loads((project / "astro.lock").read_text())
    assert lock["base"]["digest"] == base["manifest_digest"], "skopeo kept our manifest: same digest"
    assert not (project / ".airbuild" / "stamp.json").exists(), "a tag may move: no no-op stamp"
    info = json.loads(run([tool("skopeo"), "inspect", f"oci:{result['oci_layout']}:{result['tag']}"]).stdout)
    assert info["Labels"]["marker"] == "base", "the base's config is inherited"

    # Pinned by digest and in the store: no network needed, even with the registry gone.
    pinned = app_project(tmp_path, f"{registry.address}/bases/tiny@{base['manifest_digest']}", "pinned")
    first = build_json(pinned)
    registry.stop()
    (pinned / "dags" / "etl.py").write_text("# edited\n")
    again = build_json(pinned)
    assert again["manifest_digest"] != first["manifest_digest"]
    assert again["layers"][0]["digest"] == first["layers"][0]["digest"]


def test_blobs_are_verified(tmp_path, airbuild_cache, start_registry):
    registry = start_registry()
    layout, base = base_image(tmp_path, "base")
    push_layout(layout, base["tag"], f"{registry.address}/bases/tiny:v1")
    layer = base["layers"][0]["digest"].removeprefix("sha256:")
    stored = next((registry.directory / "data").rglob(f"blobs/sha256/{layer[:2]}/{layer}/data"))
    data = stored.read_bytes()
    stored.write_bytes(data[:-1] + bytes([data[-1] ^ 0xFF]))  # corrupt the registry's copy
    cache = tmp_path / "fresh-cache"  # the build of the base left its layer in airbuild_cache
    proc = run_cli(["build", app_project(tmp_path, f"{registry.address}/bases/tiny:v1"), "--json"], check=False,
                   env={"AIRBUILD_CACHE_DIR": str(cache)})
    assert proc.returncode == 1 and "do not match the digest" in proc.stderr
    assert not (cache / "blobs" / "sha256" / layer).exists()
    assert list((cache / "tmp").iterdir()) == []


def test_index_resolves_to_the_platform(tmp_path, airbuild_cache, start_registry):
    registry = start_registry()
    amd_layout, amd = base_image(tmp_path, "amd", platform="linux/amd64")
    arm_layout, arm = base_image(tmp_path, "arm", platform="linux/arm64", marker="arm")
    multi = tmp_path / "multi"
    (multi / "blobs" / "sha256").mkdir(parents=True)
    for layout in (amd_layout, arm_layout):
        for blob in (layout / "blobs" / "sha256").iterdir():
            (multi / "blobs" / "sha256" / blob.name).write_bytes(blob.read_bytes())
    index = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": [
        {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": r["manifest_digest"],
         "size": len((multi / "blobs" / "sha256" / r["manifest_digest"][7:]).read_bytes()),
         "platform": {"os": "linux", "architecture": arch}} for r, arch in ((amd, "amd64"), (arm, "arm64"))]}
    data = json.dumps(index).encode()
    import hashlib

    digest = hashlib.sha256(data).hexdigest()
    (multi / "blobs" / "sha256" / digest).write_bytes(data)
    (multi / "oci-layout").write_text('{"imageLayoutVersion":"1.0.0"}')
    (multi / "index.json").write_text(json.dumps({"schemaVersion": 2, "manifests": [
        {"mediaType": index["mediaType"], "digest": f"sha256:{digest}", "size": len(data),
         "annotations": {"org.opencontainers.image.ref.name": "multi"}}]}))
    push_layout(multi, "multi", f"{registry.address}/bases/multi:v1", "--all")

    project = app_project(tmp_path, f"{registry.address}/bases/multi:v1")
    (project / "astro.yaml").write_text(f"platform: linux/arm64\nbase:\n  image: {registry.address}/bases/multi:v1\n")
    result = build_json(project)
    assert result["layers"][0]["diff_id"] == arm["layers"][0]["diff_id"]
    lock = json.loads((project / "astro.lock").read_text())
    assert lock["base"]["digest"] == f"sha256:{digest}", "the lock pins what the tag points at: the index"
    (project / "astro.yaml").write_text(f"platform: linux/s390x\nbase:\n  image: {registry.address}/bases/multi:v1\n")
    missing = run_cli(["build", project], check=False)
    assert missing.returncode == 2 and "no image for linux/s390x" in missing.stderr and "linux/arm64" in missing.stderr


def test_locked_build_uses_the_pinned_digest_after_the_tag_moved(tmp_path, airbuild_cache, start_registry):
    registry = start_registry()
    ref = f"{registry.address}/bases/moving:stable"
    layout, first_base = base_image(tmp_path, "one")
    push_layout(layout, first_base["tag"], ref)
    project = app_project(tmp_path, ref)
    first = build_json(project)
    lock = (project / "astro.lock").read_text()

    layout, second_base = base_image(tmp_path, "two", marker="second")
    push_layout(layout, second_base["tag"], ref)  # the tag moves
    locked = build_json(project, "--locked")
    assert locked["manifest_digest"] == first["manifest_digest"]
    assert (project / "astro.lock").read_text() == lock
    moved = build_json(project)
    assert moved["manifest_digest"] != first["manifest_digest"] and moved["lock_changed"]
    assert json.loads((project / "astro.lock").read_text())["base"]["digest"] == second_base["manifest_digest"]


def test_missing_base_is_a_clear_error(tmp_path, airbuild_cache, start_registry):
    registry = start_registry()
    proc = run_cli(["build", app_project(tmp_path, f"{registry.address}/nothing/here:v1")], check=False)
    assert proc.returncode == 2 and f"{registry.address}/nothing/here:v1" in proc.stderr and "not found" in proc.stderr


# -- auth: Basic behind TLS, Bearer tokens, credential helpers ----------------------------------

@pytest.fixture
def tls_registry(tmp_path, start_registry):
    cert, key = self_signed(tmp_path, "registry")
    registry = start_registry(auth=htpasswd_auth(tmp_path), tls=(cert, key))
    certs = tmp_path / "certs"
    certs.mkdir()
    (certs / "ca.crt").write_bytes(cert.read_bytes())  # skopeo's --cert-dir layout
    registry.cert_dir = certs
    return registry


def targets_yaml(registry: str) -> str:
    return f"targets:\n  prod:\n    registry: {registry}\n"


def deploy_project(tmp_path: Path, target: str, name: str = "app") -> Path:
    project = make_project(tmp_path / name)
    tiny_rootfs(tmp_path / f"{name}-rootfs.tar.gz")
    (project / "astro.yaml").write_text(f"base:\n  rootfs: ../{name}-rootfs.tar.gz\n" + targets_yaml(target))
    return project


def test_basic_auth_over_tls_with_login_and_logout(tmp_path, airbuild_cache, tls_registry):
    docker_config = tmp_path / "docker-config"
    env = {"DOCKER_CONFIG": str(docker_config)}
    project = deploy_project(tmp_path, f"{tls_registry.address}/team/app")
    ca = ["--ca-bundle", str(tls_registry.ca)]

    untrusted = run_cli(["deploy", project, "--json"], env=env, check=False)
    assert untrusted.returncode == 1 and "not trusted" in untrusted.stderr and "--ca-bundle" in untrusted.stderr
    anonymous = run_cli(["deploy", project, *ca], env=env, check=False)
    assert anonymous.returncode == 1 and "not authorized" in anonymous.stderr
    assert tls_registry.address in anonymous.stderr and "HTTP 401" in anonymous.stderr

    wrong = run_cli(["login", tls_registry.address, "-u", USER, "--password-stdin", *ca], env=env,
                    input="not-the-password\n", check=False)
    assert wrong.returncode == 1 and "HTTP 401" in wrong.stderr
    assert not (docker_config / "config.json").exists(), "credentials are checked before they are saved"
    login = run_cli(["login", tls_registry.address, "-u", USER, "--password-stdin", *ca], env=env,
                    input=PASSWORD + "\n")
    config = docker_config / "config.json"
    assert stat.S_IMODE(config.stat().st_mode) == 0o600
    assert tls_registry.address in json.loads(config.read_text())["auths"]

    deployed = run_cli(["deploy", project, "--json", *ca], env=env)
    result = json.loads(deployed.stdout)
    assert result["reference"] == f"{tls_registry.address}/team/app@{result['manifest_digest']}"
    for output in (login.stdout, login.stderr, deployed.stdout, deployed.stderr):
        assert PASSWORD not in output
    info = json.loads(run([tool("skopeo"), "inspect", "--cert-dir", str(tls_registry.cert_dir), "--creds",
                           f"{USER}:{PASSWORD}", f"docker://{tls_registry.address}/team/app:{result['tag']}"]).stdout)
    assert info["Digest"] == result["manifest_digest"]

    run_cli(["logout", tls_registry.address], env=env)
    assert tls_registry.address not in json.loads(config.read_text())["auths"]
    again = run_cli(["deploy", project, "--json", *ca], env=env, check=False)
    assert again.returncode == 1 and "not authorized" in again.stderr

    # CI: credentials from the environment, CA bundle from the environment.
    ci = run_cli(["deploy", project, "--json"], env={**env, "AIRBUILD_REGISTRY_USERNAME": USER,
                                                     "AIRBUILD_REGISTRY_PASSWORD": PASSWORD,
                                                     "AIRBUILD_CA_BUNDLE": str(tls_registry.ca)})
    assert json.loads(ci.stdout)["blobs_skipped"] > 0 and PASSWORD not in ci.stdout + ci.stderr


def test_bearer_token_flow_reuses_tokens_and_reauthenticates(tmp_path, airbuild_cache, start_registry, token_server):
    token_server.expired_first = 1  # the first token is refused by the registry: a 401, then a fresh token
    registry = start_registry(auth=token_server.auth_config())
    project = deploy_project(tmp_path, f"{registry.address}/team/app")
    anonymous = run_cli(["deploy", project], check=False, env={"DOCKER_CONFIG": str(tmp_path / "none")})
    assert anonymous.returncode == 1 and "not authorized" in anonymous.stderr

    token_server.requests.clear()
    env = {"DOCKER_CONFIG": str(tmp_path / "none"), "AIRBUILD_REGISTRY_USERNAME": USER,
           "AIRBUILD_REGISTRY_PASSWORD": PASSWORD}
    result = json.loads(run_cli(["deploy", project, "--json"], env=env).stdout)
    assert result["blobs_uploaded"] >= 4
    scopes = [tuple(r["scopes"]) for r in token_server.requests]
    assert all(r["user"] == USER for r in token_server.requests)
    assert len(scopes) <= 3, f"one token per scope, reused until it expires: {scopes}"
    assert scopes.count(("repository:team/app:pull,push",)) == 2, "the expired token was replaced once"

    base = run([tool("skopeo"), "inspect", "--tls-verify=false", "--creds", f"{USER}:{PASSWORD}",
                f"docker://{registry.address}/team/app:{result['tag']}"])
    assert json.loads(base.stdout)["Digest"] == result["manifest_digest"]

    # A registry token handed over as is (AIRBUILD_REGISTRY_TOKEN): no token server round trip.
    import base64
    import urllib.request

    request = urllib.request.Request(
        f"http://{token_server.address}/token?service={token_server.service}&scope=repository:team/app:pull,push",
        headers={"Authorization": "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()})
    with urllib.request.urlopen(request, timeout=10) as answer:
        token = json.loads(answer.read())["token"]
    before = len(token_server.requests)
    again = run_cli(["deploy", project, "--json"], env={"DOCKER_CONFIG": str(tmp_path / "none"),
                                                        "AIRBUILD_REGISTRY_TOKEN": token})
    assert json.loads(again.stdout)["blobs_skipped"] >= 4 and len(token_server.requests) == before
    assert token not in again.stdout + again.stderr

    # A pull needs only the pull scope; the deployed image is a base for another project.
    other = make_project(tmp_path / "other")
    (other / "astro.yaml").write_text(f"base:\n  image: {registry.address}/team/app:{result['tag']}\n")
    pulled = json.loads(run_cli(["build", other, "--json"], env={**env, "AIRBUILD_REGISTRY_HOST": registry.address,
                                                                  "AIRBUILD_CACHE_DIR": str(tmp_path / "c2")}).stdout)
    assert pulled["layers"][0]["digest"] == result_layer(result, registry, 0)
    assert any(r["scopes"] == ["repository:team/app:pull"] for r in token_server.requests)


def result_layer(result: dict, registry, index: int) -> str:
    info = json.loads(run([tool("skopeo"), "inspect", "--tls-verify=false", "--creds", f"{USER}:{PASSWORD}",
                           f"docker://{registry.address}/team/app@{result['manifest_digest']}"]).stdout)
    return info["Layers"][index]


def test_identity_token_from_docker_config(tmp_path, airbuild_cache, start_registry, token_server):
    """An `identitytoken` in config.json is an OAuth2 refresh token: POSTed to the token server."""
    from tests.registry_servers import REFRESH_TOKEN

    registry = start_registry(auth=token_server.auth_config())
    docker_config = tmp_path / "docker-config"
    docker_config.mkdir()
    (docker_config / "config.json").write_text(json.dumps(
        {"auths": {f"https://{registry.address}": {"identitytoken": REFRESH_TOKEN}}}))
    project = deploy_project(tmp_path, f"{registry.address}/team/app")
    result = json.loads(run_cli(["deploy", project, "--json"], env={"DOCKER_CONFIG": str(docker_config)}).stdout)
    assert result["blobs_uploaded"] >= 4 and all(r["user"] == USER for r in token_server.requests)


def test_docker_hub_credentials_are_found_under_dockers_key(tmp_path, monkeypatch):
    from builder.registry import docker_config

    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path))
    monkeypatch.delenv("AIRBUILD_REGISTRY_HOST", raising=False)
    import base64

    (tmp_path / "config.json").write_text(json.dumps({"auths": {
        "https://index.docker.io/v1/": {"auth": base64.b64encode(b"hubuser:hubpass").decode()},
        "http://127.0.0.1:5000/v2/": {"username": "u", "password": "p"}}}))
    hub = docker_config.lookup(parse_reference("python:3.12").registry)
    assert (hub.username, hub.password) == ("hubuser", "hubpass") and "hubpass" not in repr(hub)
    local = docker_config.lookup("127.0.0.1:5000")
    assert (local.username, local.password) == ("u", "p")
    assert docker_config.lookup("elsewhere.example:5000") is None
    monkeypatch.setenv("AIRBUILD_REGISTRY_USERNAME", "ci")
    monkeypatch.setenv("AIRBUILD_REGISTRY_PASSWORD", "ci-secret")
    assert docker_config.lookup("127.0.0.1:5000").username == "u", "CI variables need their registry named"
    assert docker_config.lookup("127.0.0.1:5000", env_registry="127.0.0.1:5000").username == "ci"


HELPER = """#!/usr/bin/env python3
import json, os, sys
path = os.environ["FAKE_HELPER_STORE"]
data = json.load(open(path)) if os.path.exists(path) else {}
action = sys.argv[1]
if action == "get":
    server = sys.stdin.read().strip()
    if server not in data:
        print("credentials not found in native keychain"); sys.exit(1)
    print(json.dumps({"ServerURL": server, "Username": data[server][0], "Secret": data[server][1]}))
elif action == "store":
    entry = json.load(sys.stdin)
    data[entry["ServerURL"]] = [entry["Username"], entry["Secret"]]
    json.dump(data, open(path, "w"))
elif action == "erase":
    data.pop(sys.stdin.read().strip(), None)
    json.dump(data, open(path, "w"))
"""


def test_credentials_through_a_credential_helper(tmp_path, airbuild_cache, tls_registry):
    """The docker-credential-* protocol, with a helper program that keeps credentials in a JSON file."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    helper = bin_dir / "docker-credential-airbuildtest"
    helper.write_text(HELPER)
    helper.chmod(0o755)
    docker_config = tmp_path / "docker-config"
    docker_config.mkdir()
    (docker_config / "config.json").write_text(json.dumps({"credsStore": "airbuildtest", "other": "kept"}))
    env = {"DOCKER_CONFIG": str(docker_config), "PATH": f"{bin_dir}:{os.environ['PATH']}",
           "FAKE_HELPER_STORE": str(tmp_path / "helper.json"), "AIRBUILD_CA_BUNDLE": str(tls_registry.ca)}
    run_cli(["login", tls_registry.address, "-u", USER, "--password-stdin"], env=env, input=PASSWORD)
    assert json.loads((tmp_path / "helper.json").read_text()) == {tls_registry.address: [USER, PASSWORD]}
    config = json.loads((docker_config / "config.json").read_text())
    assert config["other"] == "kept" and PASSWORD not in json.dumps(config)

    project = deploy_project(tmp_path, f"{tls_registry.address}/team/app")
    assert json.loads(run_cli(["deploy", project, "--json"], env=env).stdout)["blobs_uploaded"] >= 4
    run_cli(["logout", tls_registry.address], env=env)
    assert json.loads((tmp_path / "helper.json").read_text()) == {}
