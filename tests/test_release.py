"""Releases against the loopback registry: SBOMs and provenance attached as OCI referrers (fallback tag),
signed provenance checked, promote by digest across registries with the referrers, --digest refusals."""

from __future__ import annotations

import base64
import hashlib
import json
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cyclonedx.schema import SchemaVersion
from cyclonedx.validation.json import JsonStrictValidator
from spdx_tools.spdx.parser.parse_anything import parse_file
from spdx_tools.spdx.validation.document_validator import validate_full_spdx_document

from builder.attest.dsse import SignatureError, verify_envelope
from builder.attest.provenance import verify_provenance
from builder.registry.connect import open_client
from builder.registry.manifests import Repository
from builder.registry.referrers import Referrers
from tests.helpers import run, run_cli, tool
from tests.projects import make_project

PACKAGES = "python3-six\n"
REQUIREMENTS = "tabulate==0.9.0\n"
INDEX = "application/vnd.oci.image.index.v1+json"
MANIFEST = "application/vnd.oci.image.manifest.v1+json"
TYPES = {"application/spdx+json", "application/vnd.cyclonedx+json", "application/vnd.in-toto+json"}


@dataclass
class Release:
    project: Path
    env: dict
    registry: str
    repo: str                  # path in the registry
    deployed: dict             # deploy --json
    public_key: Path
    base: str

    @property
    def digest(self) -> str:
        return self.deployed["manifest_digest"]


def git(project: Path, *args: str) -> str:
    return run(["git", "-C", project, "-c", "user.name=t", "-c", "user.email=t@example.invalid", *args]).stdout


def http_get(url: str, accept: str | None = None) -> tuple[int, bytes]:
    request = urllib.request.Request(url, headers={"Accept": accept} if accept else {})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def blob(registry: str, repo: str, digest: str) -> bytes:
    status, data = http_get(f"http://{registry}/v2/{repo}/blobs/{digest}")
    assert status == 200, (status, data[:200])
    return data


def skopeo_raw(ref: str) -> dict:
    return json.loads(run([tool("skopeo"), "inspect", "--raw", "--tls-verify=false", f"docker://{ref}"]).stdout)


def fallback_tag(digest: str) -> str:
    return digest.replace(":", "-")


def write_keys(directory: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    private, public = directory / "key.pem", directory / "pub.pem"
    private.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                          serialization.NoEncryption()))
    public.write_bytes(key.public_key().public_bytes(serialization.Encoding.PEM,
                                                     serialization.PublicFormat.SubjectPublicKeyInfo))
    return private, public


@pytest.fixture(scope="module")
def release(module_tmp, debian_rootfs, shared_store, registry) -> Release:
    """A project with packages.txt and requirements.txt, built, committed and deployed with a signed provenance."""
    root = module_tmp("release")
    project = make_project(root / "app")
    (project / "packages.txt").write_text(PACKAGES)
    (project / "requirements.txt").write_text(REQUIREMENTS)
    (project / ".gitignore").write_text(".airbuild/\n")
    env = {"AIRBUILD_CACHE_DIR": str(shared_store), "SOURCE_DATE_EPOCH": "1700000000"}
    base = f"rootfs:{debian_rootfs}"
    run_cli(["build", project, "--base", base, "--no-validate", "--json"], env=env)
    git(project, "init", "-q")
    git(project, "add", "-A")
    git(project, "commit", "-qm", "release")
    private, public = write_keys(root)
    repo = f"release-test/{uuid.uuid4().hex[:12]}"
    deployed = json.loads(run_cli(["deploy", project, "--base", base, "--to", f"{registry}/{repo}", "--no-validate",
                                   "--sign-key", private, "--json"], env=env).stdout)
    return Release(project, env, registry, repo, deployed, public, base)


def lock_purls(project: Path) -> dict[str, str]:
    """purl -> sha256 of every Debian package and Python distribution astro.lock pins."""
    lock = json.loads((project / "astro.lock").read_text())
    out = {}
    for entry in lock["debian"]["entries"]:
        out[f"pkg:deb/debian/{entry['name']}@{entry['version']}?arch={entry['architecture']}"] = entry["sha256"]
    for entry in lock["python"]["entries"]:
        out[f"pkg:pypi/{entry['name'].lower()}@{entry['version']}"] = entry["sha256"]
    return out


def test_sbom_lists_exactly_the_locks_packages_and_wheels(release, tmp_path):
    project, env = release.project, release.env
    expected = lock_purls(project)
    assert len(expected) == 2 and any(p.startswith("pkg:deb/") for p in expected)

    spdx_path = tmp_path / "sbom.spdx.json"
    run_cli(["sbom", project, "--base", release.base, "-o", spdx_path], env=env)
    assert validate_full_spdx_document(parse_file(str(spdx_path))) == []
    spdx = json.loads(spdx_path.read_text())
    assert spdx["spdxVersion"] == "SPDX-2.3" and spdx["creationInfo"]["created"] == "2023-11-14T22:13:20Z"
    listed = {}
    for package in spdx["packages"]:
        purls = [r["referenceLocator"] for r in package.get("externalRefs", []) if r["referenceType"] == "purl"]
        if package["primaryPackagePurpose"] in ("INSTALL", "LIBRARY"):
            listed[purls[0]] = package["checksums"][0]["checksumValue"]
    assert listed == expected
    image = next(p for p in spdx["packages"] if p["SPDXID"] == "SPDXRef-image")
    assert image["versionInfo"] == release.digest
    base = next(p for p in spdx["packages"] if p["SPDXID"] == "SPDXRef-base")
    assert base["versionInfo"] == json.loads((project / "astro.lock").read_text())["base"]["digest"]
    assert any(p["name"] == "airbuild" for p in spdx["packages"])

    cyclonedx = run_cli(["sbom", project, "--base", release.base, "--format", "cyclonedx"], env=env).stdout
    assert JsonStrictValidator(SchemaVersion.V1_6).validate_str(cyclonedx) is None
    bom = json.loads(cyclonedx)
    assert bom["specVersion"] == "1.6" and bom["metadata"]["component"]["version"] == release.digest
    libraries = {c["purl"]: c["hashes"][0]["content"] for c in bom["components"] if c["type"] == "library"}
    assert libraries == expected

    again = run_cli(["sbom", project, "--base", release.base], env=env).stdout
    assert again.encode() == spdx_path.read_bytes(), "the same image gives the same SBOM bytes"


def test_deploy_attaches_referrers_found_through_the_fallback_tag(release):
    registry, repo, digest = release.registry, release.repo, release.digest
    attached = release.deployed["attestations"]
    assert {a["artifactType"] for a in attached} == TYPES
    # This registry (distribution 2.8) has no referrers API: the fallback tag holds them.
    status, _ = http_get(f"http://{registry}/v2/{repo}/referrers/{digest}")
    assert status == 404
    index = skopeo_raw(f"{registry}/{repo}:{fallback_tag(digest)}")
    assert index["mediaType"] == INDEX
    assert sorted(e["digest"] for e in index["manifests"]) == sorted(a["digest"] for a in attached)
    status, raw = http_get(f"http://{registry}/v2/{repo}/manifests/{fallback_tag(digest)}", INDEX)
    assert status == 200 and json.loads(raw) == index, "curl reads the same index"

    image_size = len(run([tool("skopeo"), "inspect", "--raw", "--tls-verify=false",
                          f"docker://{registry}/{repo}@{digest}"]).stdout.encode())
    documents = {}
    for entry in index["manifests"]:
        manifest = skopeo_raw(f"{registry}/{repo}@{entry['digest']}")
        assert manifest["artifactType"] == entry["artifactType"]
        assert manifest["subject"] == {"mediaType": MANIFEST, "digest": digest, "size": image_size}
        assert manifest["config"]["mediaType"] == "application/vnd.oci.empty.v1+json"
        assert blob(registry, repo, manifest["config"]["digest"]) == b"{}"
        documents[entry["artifactType"]] = blob(registry, repo, manifest["layers"][0]["digest"])
    local = run_cli(["sbom", release.project, "--base", release.base], env=release.env).stdout.encode()
    assert documents["application/spdx+json"] == local, "the attached SBOM is the one `airbuild sbom` prints"

    history = json.loads(run_cli(["history", release.project, "--json"]).stdout)
    assert [a["digest"] for a in history[-1]["attestations"]] == [a["digest"] for a in attached]


def test_signed_provenance_verifies_and_a_tampered_one_does_not(release, tmp_path):
    registry, repo = release.registry, release.repo
    entry = next(a for a in release.deployed["attestations"] if a["artifactType"] == "application/vnd.in-toto+json")
    manifest = skopeo_raw(f"{registry}/{repo}@{entry['digest']}")
    assert manifest["layers"][0]["mediaType"] == "application/vnd.dsse.envelope.v1+json"
    envelope = json.loads(blob(registry, repo, manifest["layers"][0]["digest"]))
    assert envelope["payloadType"] == "application/vnd.in-toto+json"

    statement = verify_envelope(envelope, release.public_key).statement()
    assert statement["_type"] == "https://in-toto.io/Statement/v1"
    assert statement["predicateType"] == "https://slsa.dev/provenance/v1"
    assert statement["subject"][0]["digest"] == {"sha256": release.digest.removeprefix("sha256:")}
    definition = statement["predicate"]["buildDefinition"]
    assert definition["externalParameters"]["source"] == {"commit": git(release.project, "rev-parse", "HEAD").strip(),
                                                          "dirty": False}
    names = {d["name"] for d in definition["resolvedDependencies"]}
    assert names == {"base", "astro.lock"}
    assert statement["predicate"]["runDetails"]["builder"]["version"] == {"airbuild": "0.1.0"}

    forged = dict(statement, subject=[{"name": "app", "digest": {"sha256": "0" * 64}}])
    tampered = dict(envelope, payload=base64.b64encode(json.dumps(forged).encode()).decode())
    with pytest.raises(SignatureError, match="do not verify"):
        verify_envelope(tampered, release.public_key)
    signature = bytearray(base64.b64decode(envelope["signatures"][0]["sig"]))
    signature[-1] ^= 1
    bad_sig = dict(envelope, signatures=[{"keyid": "", "sig": base64.b64encode(bytes(signature)).decode()}])
    with pytest.raises(SignatureError):
        verify_envelope(bad_sig, release.public_key)
    _, other_public = write_keys(tmp_path)
    with pytest.raises(SignatureError):
        verify_envelope(envelope, other_public)

    # What `verify --key` does: find the provenance among the image's referrers, check it is signed and about it.
    with open_client(registry) as client:
        referrers = Referrers(Repository(client, repo))
        found = referrers.list(release.digest, "application/vnd.in-toto+json")
        assert [e["digest"] for e in found] == [entry["digest"]]
        media_type, document = referrers.document(found[0])
    assert media_type == "application/vnd.dsse.envelope.v1+json"
    assert verify_provenance(document, release.public_key, release.digest) == statement
    with pytest.raises(SignatureError, match="not sha256:0000"):
        verify_provenance(document, release.public_key, "sha256:" + "0" * 64)


def test_deploying_the_same_image_again_keeps_its_one_provenance(release, tmp_path):
    registry, repo = release.registry, f"release-test/{uuid.uuid4().hex[:12]}"
    private = release.public_key.parent / "key.pem"

    def deploy(key: Path) -> tuple[dict, list[dict]]:
        done = json.loads(run_cli(["deploy", release.project, "--base", release.base, "--to", f"{registry}/{repo}",
                                   "--no-validate", "--sign-key", key, "--json"], env=release.env).stdout)
        index = skopeo_raw(f"{registry}/{repo}:{fallback_tag(release.digest)}")
        return done, [e for e in index["manifests"] if e["artifactType"] == "application/vnd.in-toto+json"]

    first, provenances = deploy(private)
    assert len(provenances) == 1
    again, provenances = deploy(private)
    assert again["manifest_digest"] == release.digest
    assert sorted(a["digest"] for a in again["attestations"]) == sorted(a["digest"] for a in first["attestations"])
    assert len(provenances) == 1, "a second deploy of the same build adds no second provenance"

    other_private, _ = write_keys(tmp_path)
    signed_otherwise, provenances = deploy(other_private)
    new = next(a for a in signed_otherwise["attestations"] if a["artifactType"] == "application/vnd.in-toto+json")
    assert len(provenances) == 2 and new["digest"] in {e["digest"] for e in provenances}, \
        "a provenance signed by another key is another attestation"


def test_promote_across_registries_carries_the_referrers(release, start_registry, tmp_path):
    source = f"{release.registry}/{release.repo}"
    second = start_registry()
    dest = f"{second.address}/prod/app"
    promoted = json.loads(run_cli(["promote", f"{source}:{release.deployed['tag']}", "--to", dest, "--tag", "v1",
                                   "--digest", release.digest, "--project", release.project, "--json"]).stdout)
    assert promoted["digest"] == release.digest and promoted["reference"] == f"{dest}@{release.digest}"
    assert promoted["blobs_copied"] >= 4 and promoted["blobs_mounted"] == 0 and promoted["bytes_copied"] > 0
    for tag in ("v1", release.deployed["tag"]):
        raw = run([tool("skopeo"), "inspect", "--raw", "--tls-verify=false", f"docker://{dest}:{tag}"]).stdout
        assert "sha256:" + hashlib.sha256(raw.encode()).hexdigest() == release.digest
    index = skopeo_raw(f"{dest}:{fallback_tag(release.digest)}")
    assert sorted(e["digest"] for e in index["manifests"]) == \
        sorted(a["digest"] for a in release.deployed["attestations"])
    copied = tmp_path / "copied"
    run([tool("skopeo"), "copy", "--quiet", "--src-tls-verify=false", f"docker://{dest}:v1", f"oci:{copied}:x"])
    assert json.loads((copied / "index.json").read_text())["manifests"][0]["digest"] == release.digest

    history = json.loads(run_cli(["history", release.project, "--json"]).stdout)
    assert history[-1]["kind"] == "promote" and history[-1]["digest"] == release.digest
    assert history[-1]["source"] == f"{source}:{release.deployed['tag']}@{release.digest}"

    again = json.loads(run_cli(["promote", f"{source}@{release.digest}", "--to", dest, "--json"]).stdout)
    assert again["blobs_copied"] == 0 and again["blobs_skipped"] >= 4, "nothing moves twice"


def test_promote_refuses_when_the_source_moved(release, registry):
    source = f"{release.registry}/{release.repo}"
    dest = f"{registry}/release-test/{uuid.uuid4().hex[:12]}"
    other = "sha256:" + "0" * 64
    refused = run_cli(["promote", f"{source}:{release.deployed['tag']}", "--to", dest, "--tag", "prod",
                       "--digest", other], check=False)
    assert refused.returncode == 1, refused.stderr
    assert f"now points at {release.digest}, not {other}" in refused.stderr and "Traceback" not in refused.stderr
    status, _ = http_get(f"http://{registry}/v2/{dest.split('/', 1)[1]}/manifests/prod")
    assert status == 404, "nothing copied"
    bad = run_cli(["promote", source, "--to", dest, "--digest", "sha256:nothex"], check=False)
    assert bad.returncode == 2 and "--digest" in bad.stderr


def test_no_attest_pushes_the_image_alone_and_a_bad_key_is_refused(release, registry, tmp_path):
    repo = f"release-test/{uuid.uuid4().hex[:12]}"
    common = ["deploy", release.project, "--base", release.base, "--to", f"{registry}/{repo}", "--no-validate"]
    bad_key = tmp_path / "key.pem"
    bad_key.write_text("not a key\n")
    refused = run_cli([*common, "--sign-key", bad_key], env=release.env, check=False)
    assert refused.returncode == 2 and str(bad_key) in refused.stderr and "PEM" in refused.stderr
    public_as_private = run_cli(["provenance", release.project, "--sign-key", release.public_key], check=False)
    assert public_as_private.returncode == 2 and "not an unencrypted PEM private key" in public_as_private.stderr
    nowhere = run_cli(["sbom", release.project, "-o", tmp_path / "no-such-dir" / "sbom.json"], check=False)
    assert nowhere.returncode == 2 and "no-such-dir" in nowhere.stderr and "Traceback" not in nowhere.stderr
    alone = json.loads(run_cli([*common, "--no-attest", "--json"], env=release.env).stdout)
    assert alone["manifest_digest"] == release.digest and alone["attestations"] == []
    status, _ = http_get(f"http://{registry}/v2/{repo}/manifests/{fallback_tag(release.digest)}", INDEX)
    assert status == 404
