"""OCI 1.1 referrers: artifacts (SBOMs, provenance) attached to an image through a manifest's `subject`.

An artifact is an image manifest with an `artifactType`, the empty config
(`application/vnd.oci.empty.v1+json`, the two bytes `{}`, as image-spec 1.1 advises) and one layer
holding the document. A registry with the referrers API answers `GET /v2/<name>/referrers/<digest>`
and says so with an `OCI-Subject` header when the artifact is pushed; one without it (distribution
2.8) gets the distribution spec's fallback: the tag `sha256-<hex of the subject>` holds an image
index of the referrers, which the pusher reads, extends and writes back (read-modify-write, checked
by reading it again, since such registries have no conditional PUT).
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass, field

from builder.oci.descriptors import INDEX_MEDIA_TYPE, MANIFEST_MEDIA_TYPE, canonical_json
from builder.registry.client import RegistryError
from builder.registry.manifests import RawManifest, Repository, sha256

EMPTY_MEDIA_TYPE = "application/vnd.oci.empty.v1+json"
EMPTY_DATA = b"{}"
EMPTY_DESCRIPTOR = {"mediaType": EMPTY_MEDIA_TYPE, "digest": sha256(EMPTY_DATA), "size": len(EMPTY_DATA),
                    "data": base64.b64encode(EMPTY_DATA).decode()}
FALLBACK_ATTEMPTS = 3


@dataclass(frozen=True)
class Artifact:
    artifact_type: str                  # e.g. application/spdx+json
    data: bytes                         # the document
    media_type: str                     # the layer's (the document's own type)
    annotations: dict[str, str] = field(default_factory=dict)


def fallback_tag(digest: str) -> str:
    """The distribution spec's referrers tag of a subject: `sha256:<hex>` -> `sha256-<hex>`."""
    return digest.replace(":", "-", 1)


def artifact_manifest(subject: dict, artifact: Artifact) -> RawManifest:
    manifest = {"schemaVersion": 2, "mediaType": MANIFEST_MEDIA_TYPE, "artifactType": artifact.artifact_type,
                "config": EMPTY_DESCRIPTOR,
                "layers": [{"mediaType": artifact.media_type, "digest": sha256(artifact.data),
                            "size": len(artifact.data)}],
                "subject": {k: subject[k] for k in ("mediaType", "digest", "size")}}
    if artifact.annotations:
        manifest["annotations"] = dict(artifact.annotations)
    data = canonical_json(manifest)
    return RawManifest(sha256(data), MANIFEST_MEDIA_TYPE, data)


def referrer_descriptor(manifest: RawManifest) -> dict:
    """The entry for a referrers index: the manifest's descriptor with its artifactType and annotations."""
    body = manifest.json
    entry = manifest.descriptor
    entry["artifactType"] = body.get("artifactType") or body.get("config", {}).get("mediaType", "")
    if body.get("annotations"):
        entry["annotations"] = body["annotations"]
    return entry


class Referrers:
    """The referrers of images in one repository: list them, attach new ones."""

    def __init__(self, repository: Repository):
        self.repo = repository

    def list(self, digest: str, artifact_type: str | None = None) -> list[dict]:
        """Descriptors of `digest`'s referrers (the API where the registry has one, else the fallback tag)."""
        client = self.repo.client
        response = client.request("GET", f"/v2/{self.repo.repository}/referrers/{digest}", scopes=self.repo.scopes,
                                  what=f"listing the referrers of {self.repo.name}@{digest}",
                                  ok=(200, 404, 400, 405), headers={"Accept": INDEX_MEDIA_TYPE},
                                  params={"artifactType": artifact_type} if artifact_type else None)
        if response.status_code == 200 and "json" in response.headers.get("Content-Type", ""):
            found = json.loads(response.content).get("manifests", [])
        else:
            found = self._fallback_index(digest)
        return [entry for entry in found if artifact_type is None or entry.get("artifactType") == artifact_type]

    def document(self, entry: dict) -> tuple[str, bytes]:
        """A referrer's document (its one layer): (the layer's media type, its bytes, checked)."""
        manifest = self.repo.get_manifest(entry["digest"])
        layers = manifest.json.get("layers", []) if manifest is not None else []
        if len(layers) != 1:
            raise RegistryError(f"{self.repo.name}@{entry['digest']} is not an artifact with one document")
        return layers[0]["mediaType"], self.repo.get_small_blob(layers[0]["digest"])

    def attach(self, subject: dict, artifacts: list[Artifact]) -> list[dict]:
        """Push each artifact (its blobs, then its manifest by digest) as a referrer of `subject`; their
        descriptors."""
        self.repo.put_small_blob(EMPTY_DATA)
        for artifact in artifacts:
            self.repo.put_small_blob(artifact.data)
        return self.put_referrers(subject["digest"], [artifact_manifest(subject, a) for a in artifacts])

    def put_referrers(self, subject_digest: str, manifests: list[RawManifest]) -> list[dict]:
        """Put referrers' manifests (their blobs already there) and, where the registry has no referrers API,
        add them to the fallback tag's index (one read-modify-write for all)."""
        entries, unlisted = [], []
        for manifest in manifests:
            response = self.repo.put_manifest(manifest.digest, manifest)
            entries.append(referrer_descriptor(manifest))
            if response.headers.get("OCI-Subject") != subject_digest:
                unlisted.append(entries[-1])
        if unlisted:
            self._add_to_fallback(subject_digest, unlisted)
        return entries

    # -- the fallback tag -----------------------------------------------------------------------------

    def _fallback_index(self, digest: str) -> list[dict]:
        index = self.repo.get_manifest(fallback_tag(digest))
        if index is None:
            return []
        if index.media_type != INDEX_MEDIA_TYPE:
            raise RegistryError(f"{self.repo.name}:{fallback_tag(digest)} should hold an image index of referrers, "
                                f"but holds a {index.media_type}")
        return list(index.json.get("manifests", []))

    def _add_to_fallback(self, subject_digest: str, new: list[dict]) -> None:
        tag = fallback_tag(subject_digest)
        for _ in range(FALLBACK_ATTEMPTS):
            entries = self._fallback_index(subject_digest)
            listed = {e.get("digest") for e in entries}
            missing = [e for e in new if e["digest"] not in listed]
            if not missing:
                return
            data = canonical_json({"schemaVersion": 2, "mediaType": INDEX_MEDIA_TYPE, "manifests": entries + missing})
            self.repo.put_manifest(tag, RawManifest(sha256(data), INDEX_MEDIA_TYPE, data))
            # Another pusher may have written the tag between our read and write: the next read checks ours survived.
        listed = {e.get("digest") for e in self._fallback_index(subject_digest)}
        if any(e["digest"] not in listed for e in new):
            raise RegistryError(f"the referrers tag {self.repo.name}:{tag} kept changing under concurrent pushes; "
                                "the new referrers could not be added to it: push again")
