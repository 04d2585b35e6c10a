"""The documents that go with an image: SBOMs (SPDX, CycloneDX) and provenance, made from a build's result.

`documents` writes them from what the build resolved (astro.lock) and how it ran; `attach` pushes them to a
registry as OCI referrers of the image. `airbuild sbom` and `airbuild provenance` print the same documents
a deploy attaches.
"""

from __future__ import annotations

import datetime
import hashlib
import importlib
import importlib.metadata
import json
from dataclasses import dataclass
from pathlib import Path

from builder import __version__
from builder.attest import CYCLONEDX_MEDIA_TYPE, DSSE_MEDIA_TYPE, IN_TOTO_MEDIA_TYPE, SPDX_MEDIA_TYPE
from builder.attest.dsse import envelope_json, load_signing_key, public_key_pem, sign_envelope, verify_envelope
from builder.attest.facts import ImageFacts, image_facts
from builder.attest.provenance import BuildRun, provenance_json, provenance_statement
from builder.common.errors import BuildError, InputError
from builder.common.hashing import json_sha256
from builder.engine.build import BuildOptions, epoch_from_env, image_name
from builder.oci.descriptors import MANIFEST_MEDIA_TYPE
from builder.project.lock import Lock
from builder.project.manifest import load_manifest
from builder.registry.client import RegistryClient, RegistryError
from builder.registry.manifests import Repository
from builder.registry.referrers import Artifact, Referrers
from builder.store.store import Store

# format -> (media type, module, function); spdx-tools and cyclonedx-python-lib are imported only to write one
SBOM_FORMATS = {"spdx": (SPDX_MEDIA_TYPE, "builder.attest.sbom_spdx", "spdx_json"),
                "cyclonedx": (CYCLONEDX_MEDIA_TYPE, "builder.attest.sbom_cyclonedx", "cyclonedx_json")}
SBOMS_KIND = "sboms"  # store records: the SBOMs of an image (by what they are made from) -> their blobs
SBOM_LIBRARIES = ("spdx-tools", "cyclonedx-python-lib", "packageurl-python")


@dataclass(frozen=True)
class ImageId:
    name: str       # the project's image name
    digest: str     # its manifest's digest


def _read_lock(project: Path) -> tuple[Lock, Path]:
    manifest, _ = load_manifest(project)
    path = project / manifest.lockfile
    lock = Lock.read(path)
    if lock is None:
        raise InputError(f"no {manifest.lockfile}: build the project first (`airbuild build` writes it)", path=path)
    return lock, path


def facts_of(project: Path, image: ImageId) -> ImageFacts:
    lock, _ = _read_lock(project)
    return image_facts(lock, image.name, image.digest, epoch_from_env())


def sbom(project: Path, image: ImageId, fmt: str) -> bytes:
    if fmt not in SBOM_FORMATS:
        raise InputError(f"unknown SBOM format {fmt!r}; choose one of {', '.join(SBOM_FORMATS)}")
    return _writer(fmt)(facts_of(project, image))


def _writer(fmt: str):
    _, module, function = SBOM_FORMATS[fmt]
    return getattr(importlib.import_module(module), function)


def _sha256_file(path: Path) -> str | None:
    try:
        return "sha256:" + hashlib.sha256(path.read_bytes()).hexdigest()
    except FileNotFoundError:
        return None


def build_run(options: BuildOptions, image: ImageId, commit: str | None, dirty: bool,
              started: datetime.datetime, finished: datetime.datetime) -> BuildRun:
    project = options.project.resolve()
    manifest, manifest_path = load_manifest(project)
    lock, lock_path = _read_lock(project)
    digests = {name: digest for name, digest in
               (("astro.yaml", _sha256_file(manifest_path) if manifest_path else None),
                (manifest.dockerfile, _sha256_file(project / manifest.dockerfile))) if digest}
    shaping = {"base": lock.base.source, "baseOverride": str(options.base is not None).lower(), "platform": manifest.platform, "backend": options.backend or manifest.backend,
               "locked": str(options.locked).lower(), "sourceDateEpoch": str(epoch_from_env()),
               "compression": manifest.compression.codec,
               "compressionLevel": "default" if manifest.compression.level is None else str(manifest.compression.level)}
    build_args = {**manifest.build_args, **options.build_args}
    return BuildRun(image_name=image.name, digest=image.digest, commit=commit, dirty=dirty,
                    manifest_digests=digests, options=shaping, base_source=lock.base.source,
                    base_digest=lock.base.digest, lock_name=lock_path.name, lock_digest=_sha256_file(lock_path),
                    started=started, finished=finished, build_args=build_args)


def provenance(run: BuildRun, sign_key: Path | None) -> Artifact:
    """The statement, in a DSSE envelope when a key is given."""
    statement = provenance_json(run)
    if sign_key is None:
        return Artifact(IN_TOTO_MEDIA_TYPE, statement, IN_TOTO_MEDIA_TYPE)
    envelope = envelope_json(sign_envelope(statement, load_signing_key(sign_key)))
    return Artifact(IN_TOTO_MEDIA_TYPE, envelope, DSSE_MEDIA_TYPE)


def documents(options: BuildOptions, store: Store, image: ImageId, run: BuildRun,
              sign_key: Path | None) -> list[Artifact]:
    return sboms(store, options.project.resolve(), image) + [provenance(run, sign_key)]


def sboms(store: Store, project: Path, image: ImageId) -> list[Artifact]:
    """The image's SBOMs, written once per image and what they are made from (the lock, the epoch, the code and
    libraries that write them: the documents are the same bytes every time), then read from the store."""
    lock, path = _read_lock(project)
    key = sboms_key(path, image)
    known = store.get_record(SBOMS_KIND, key)
    if isinstance(known, dict) and all(isinstance(known.get(fmt), str) and store.has_blob(known[fmt])
                                       for fmt in SBOM_FORMATS):
        return [Artifact(media_type, store.read_blob(known[fmt]), media_type)
                for fmt, (media_type, _, _) in SBOM_FORMATS.items()]
    facts = image_facts(lock, image.name, image.digest, epoch_from_env())
    artifacts = {fmt: Artifact(media_type, _writer(fmt)(facts), media_type)
                 for fmt, (media_type, _, _) in SBOM_FORMATS.items()}
    (store.root / SBOMS_KIND).mkdir(exist_ok=True)
    store.put_record(SBOMS_KIND, key, {fmt: store.put_blob(artifact.data) for fmt, artifact in artifacts.items()})
    return list(artifacts.values())


def sboms_key(lock_path: Path, image: ImageId) -> str:
    """The name of the store's record of an image's SBOMs: what they are made from."""
    return json_sha256({"image": [image.name, image.digest], "lock": _sha256_file(lock_path),
                        "epoch": epoch_from_env(), "airbuild": __version__, "writers": _writers_fingerprint()})


def _writers_fingerprint() -> dict:
    """What the SBOMs' bytes depend on besides their facts: airbuild's writers and the libraries they use."""
    attest = Path(__file__).resolve().parent.parent / "attest"
    sources = {name: hashlib.sha256((attest / name).read_bytes()).hexdigest()
               for name in ("facts.py", "sbom_spdx.py", "sbom_cyclonedx.py")}
    versions = {}
    for library in SBOM_LIBRARIES:
        try:
            versions[library] = importlib.metadata.version(library)
        except importlib.metadata.PackageNotFoundError:
            versions[library] = None
    return {"sources": sources, "libraries": versions}


def attach_all(client: RegistryClient, store: Store, repository: str, options: BuildOptions, manifest_digest: str,
               commit: str | None, dirty: bool, started: datetime.datetime, finished: datetime.datetime,
               sign_key: Path | None) -> tuple[list[dict], int]:
    """A deploy's attachments: every document made for the pushed image and attached to it; their descriptors
    and the bytes it took. A provenance already attached for the same build (the same statement but for when it
    ran, signed by the same key) is kept rather than joined by another: deploying an image again adds nothing."""
    project = options.project.resolve()
    image = ImageId(image_name(project, load_manifest(project)[0].name), manifest_digest)
    run = build_run(options, image, commit, dirty, started, finished)
    repo = Repository(client, repository, writable=True)
    artifacts = documents(options, store, image, run, sign_key)
    sboms = artifacts[:-1]
    existing = _same_provenance(Referrers(repo), manifest_digest, provenance_statement(run), sign_key)
    if existing is None:
        return attach(repo, store, manifest_digest, artifacts), repo.bytes_sent
    return attach(repo, store, manifest_digest, sboms) + [existing], repo.bytes_sent


def _without_run_times(statement: dict) -> dict:
    """A provenance statement less its run's metadata (when it started and finished), the one part in which two
    deploys of one image from the same inputs differ."""
    details = {k: v for k, v in statement.get("predicate", {}).get("runDetails", {}).items() if k != "metadata"}
    return {**statement, "predicate": {**statement.get("predicate", {}), "runDetails": details}}


def _same_provenance(referrers: Referrers, digest: str, ours: dict, sign_key: Path | None) -> dict | None:
    """The descriptor of a provenance referrer of `digest` that says what `ours` says (signed by `sign_key`'s
    key when one is given, unsigned otherwise); None when there is none or the registry cannot tell."""
    public_pem = None
    if sign_key is not None:
        public_pem = public_key_pem(load_signing_key(sign_key))
    wanted = _without_run_times(ours)
    try:
        entries = referrers.list(digest, IN_TOTO_MEDIA_TYPE)
    except RegistryError:
        return None
    for entry in entries:
        try:
            media_type, document = referrers.document(entry)
            if public_pem is None:
                statement = json.loads(document) if media_type == IN_TOTO_MEDIA_TYPE else None
            else:
                statement = verify_envelope(document, public_pem).statement() if media_type == DSSE_MEDIA_TYPE else None
        except (BuildError, RegistryError, ValueError):
            continue
        if isinstance(statement, dict) and _without_run_times(statement) == wanted:
            return entry
    return None


def attach(repo: Repository, store: Store, manifest_digest: str, artifacts: list[Artifact]) -> list[dict]:
    """Each artifact pushed as a referrer of the image; their descriptors (digest, size, artifactType).
    `repo.bytes_sent` then counts what it cost: documents, manifests, the fallback index."""
    manifest = json.loads(store.read_blob(manifest_digest))
    subject = {"mediaType": manifest.get("mediaType", MANIFEST_MEDIA_TYPE), "digest": manifest_digest,
               "size": len(store.read_blob(manifest_digest))}
    return Referrers(repo).attach(subject, artifacts)
