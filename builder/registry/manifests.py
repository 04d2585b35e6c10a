"""Manifests and small blobs in one repository, by digest: read (checked), write (checked), look up a tag.

What both referrers.py (artifacts attached to an image) and copy.py (promote) need beneath them;
large blobs go through push.py (from the store) or copy.py (streamed between registries).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

import httpx

from builder.oci.descriptors import DOCKER_LIST_MEDIA_TYPE, DOCKER_MANIFEST_MEDIA_TYPE, INDEX_MEDIA_TYPE, MANIFEST_MEDIA_TYPE
from builder.registry.auth import repository_scope
from builder.registry.client import RegistryClient, RegistryError

ACCEPT = ", ".join((MANIFEST_MEDIA_TYPE, INDEX_MEDIA_TYPE, DOCKER_MANIFEST_MEDIA_TYPE, DOCKER_LIST_MEDIA_TYPE))


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


@dataclass(frozen=True)
class RawManifest:
    digest: str
    media_type: str
    data: bytes

    @property
    def json(self) -> dict:
        return json.loads(self.data)

    @property
    def descriptor(self) -> dict:
        return {"mediaType": self.media_type, "digest": self.digest, "size": len(self.data)}


class Repository:
    """One repository of a registry, with push rights asked for only when `writable`."""

    def __init__(self, client: RegistryClient, repository: str, writable: bool = False):
        self.client = client
        self.repository = repository
        self.scopes = (repository_scope(repository, "pull,push" if writable else "pull"),)
        self.bytes_sent = 0  # request bodies: manifests and small blobs

    @property
    def name(self) -> str:
        return f"{self.client.registry}/{self.repository}"

    def resolve(self, ref: str) -> str | None:
        """The digest a tag (or digest) points at; None when there is no such manifest."""
        response = self.client.request("HEAD", f"/v2/{self.repository}/manifests/{ref}", scopes=self.scopes,
                                       what=f"looking up {self.name}:{ref}", ok=(200, 404), headers={"Accept": ACCEPT})
        if response.status_code == 404:
            return None
        digest = response.headers.get("Docker-Content-Digest")
        if digest and digest.startswith("sha256:"):
            return digest
        found = self.get_manifest(ref)
        return found.digest if found else None

    def get_manifest(self, ref: str) -> RawManifest | None:
        """The manifest a tag or digest names, its bytes checked against the digest; None when absent."""
        response = self.client.request("GET", f"/v2/{self.repository}/manifests/{ref}", scopes=self.scopes,
                                       what=f"fetching the manifest {self.name}:{ref}", ok=(200, 404),
                                       headers={"Accept": ACCEPT})
        if response.status_code == 404:
            return None
        data = response.content
        digest = sha256(data)
        if ref.startswith("sha256:") and digest != ref:
            raise RegistryError(f"the manifest {self.name}@{ref} does not match its digest (got {digest})")
        try:
            declared = json.loads(data).get("mediaType")
        except (ValueError, AttributeError):
            raise RegistryError(f"the manifest {self.name}:{ref} is not JSON") from None
        media_type = declared or response.headers.get("Content-Type", MANIFEST_MEDIA_TYPE).split(";")[0].strip()
        return RawManifest(digest, media_type, data)

    def put_manifest(self, ref: str, manifest: RawManifest) -> httpx.Response:
        """PUT by tag or digest; the registry's Docker-Content-Digest must be the manifest's."""
        self.bytes_sent += len(manifest.data)
        response = self.client.request("PUT", f"/v2/{self.repository}/manifests/{ref}", scopes=self.scopes,
                                       ok=(201, 200), content=manifest.data,
                                       headers={"Content-Type": manifest.media_type},
                                       what=f"putting the manifest {manifest.digest} as {self.name}:{ref}")
        got = response.headers.get("Docker-Content-Digest")
        if got and got != manifest.digest:
            raise RegistryError(f"the registry {self.client.registry} stored the manifest for {ref} as {got}, "
                                f"not {manifest.digest}")
        return response

    def has_blob(self, digest: str) -> bool:
        response = self.client.request("HEAD", f"/v2/{self.repository}/blobs/{digest}", scopes=self.scopes,
                                       what=f"checking for blob {digest} in {self.name}", ok=(200, 404))
        return response.status_code == 200

    def get_small_blob(self, digest: str, limit: int = 64 << 20) -> bytes:
        """A blob read into memory (a document attached to an image), checked against its digest."""
        response = self.client.request("GET", f"/v2/{self.repository}/blobs/{digest}", scopes=self.scopes,
                                       what=f"fetching blob {digest} from {self.name}", ok=(200,))
        data = response.content
        if len(data) > limit or sha256(data) != digest:
            raise RegistryError(f"blob {digest} of {self.name} does not match its digest (or is over {limit} bytes)")
        return data

    def put_small_blob(self, data: bytes) -> str:
        """A blob held in memory (an SBOM, a statement, the empty config), unless the registry has it."""
        digest = sha256(data)
        if self.has_blob(digest):
            return digest
        opened = self.client.request("POST", f"/v2/{self.repository}/blobs/uploads/", scopes=self.scopes,
                                     ok=(202,), what=f"starting the upload of blob {digest} to {self.name}")
        location = opened.headers.get("Location")
        if not location:
            self.client.fail(f"the registry opened an upload to {self.name} without a Location", opened)
        url = httpx.URL(str(opened.url.join(location))).copy_merge_params({"digest": digest})
        self.bytes_sent += len(data)
        self.client.request("PUT", str(url), scopes=self.scopes, ok=(201, 204), content=data,
                            headers={"Content-Type": "application/octet-stream"},
                            what=f"uploading blob {digest} to {self.name}")
        return digest
