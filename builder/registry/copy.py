"""Copy an image by digest from one repository to another, with its referrers, without rebuilding.

Every manifest (an index's children first) keeps its bytes, so the digest is the same at the
destination. Each blob the destination lacks is mounted from the source repository when both are on
one registry (no bytes move), else streamed from the source's GET into the destination's PUT (never
through the disk); a streamed copy is checked by the destination against the digest. Referrers (found
through the API or the fallback tag) go over the same way and are attached again at the destination.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import httpx

from builder.oci.index import INDEX_TYPES
from builder.registry.client import RegistryError, Transient
from builder.registry.manifests import RawManifest, Repository
from builder.registry.pull import open_blob
from builder.registry.referrers import Referrers

READ = 1 << 20


@dataclass
class CopyStats:
    blobs_copied: int = 0
    blobs_mounted: int = 0
    blobs_skipped: int = 0
    bytes_copied: int = 0
    manifests: int = 0
    referrers: list[dict] = field(default_factory=list)


class Copier:
    def __init__(self, source: Repository, dest: Repository):
        self.source = source
        self.dest = dest
        self.same_registry = source.client.registry == dest.client.registry
        self.stats = CopyStats()

    def copy(self, digest: str, tags: list[str], referrers: bool = True) -> CopyStats:
        manifest = self._get(digest)
        self._copy_tree(manifest)
        for tag in tags:
            self.dest.put_manifest(tag, manifest)
        if referrers:
            self._copy_referrers(manifest.digest)
        return self.stats

    def _get(self, digest: str) -> RawManifest:
        manifest = self.source.get_manifest(digest)
        if manifest is None:
            raise RegistryError(f"{self.source.name}@{digest}: no such manifest")
        return manifest

    def _copy_tree(self, manifest: RawManifest) -> None:
        """A manifest and everything it names, the leaves first, so the registry never sees a dangling one."""
        body = manifest.json
        if manifest.media_type in INDEX_TYPES:
            for child in body.get("manifests", []):
                self._copy_tree(self._get(child["digest"]))
        else:
            for blob in [body["config"], *body.get("layers", [])]:
                self.copy_blob(blob["digest"], blob["size"])
        self.dest.put_manifest(manifest.digest, manifest)
        self.stats.manifests += 1

    def _copy_referrers(self, digest: str) -> None:
        manifests = []
        for entry in Referrers(self.source).list(digest):
            manifest = self._get(entry["digest"])
            for blob in [manifest.json["config"], *manifest.json.get("layers", [])]:
                self.copy_blob(blob["digest"], blob["size"])
            manifests.append(manifest)
        if manifests:
            self.stats.referrers = Referrers(self.dest).put_referrers(digest, manifests)
            self.stats.manifests += len(manifests)

    # -- blobs ------------------------------------------------------------------------------------------

    def copy_blob(self, digest: str, size: int) -> None:
        if self.dest.has_blob(digest):
            self.stats.blobs_skipped += 1
            return
        location = None
        if self.same_registry:
            response = self.dest.client.request(
                "POST", f"/v2/{self.dest.repository}/blobs/uploads/", scopes=self.dest.scopes + self.source.scopes,
                params={"mount": digest, "from": self.source.repository}, ok=(201, 202),
                what=f"mounting blob {digest} from {self.source.name} into {self.dest.name}")
            if response.status_code == 201:
                self.stats.blobs_mounted += 1
                return
            location = self._location(response)
        self._stream(digest, size, location)
        self.stats.blobs_copied += 1

    def _location(self, response: httpx.Response) -> str:
        location = response.headers.get("Location")
        if not location:
            self.dest.client.fail(f"the registry opened an upload to {self.dest.name} without a Location", response)
        return str(response.url.join(location))

    def _stream(self, digest: str, size: int, location: str | None) -> None:
        what = f"copying blob {digest} ({size} bytes) from {self.source.name} to {self.dest.name}"
        state = {"location": location}

        def attempt() -> None:
            if state["location"] is None:
                opened = self.dest.client.send("POST", f"/v2/{self.dest.repository}/blobs/uploads/",
                                               scopes=self.dest.scopes, ok=(202,), what=what)
                state["location"] = self._location(opened)
            download = open_blob(self.source.client, self.source.repository, digest, self.source.scopes, what)
            url = httpx.URL(state["location"]).copy_merge_params({"digest": digest})
            state["location"] = None  # a failed upload is not resumed: the next attempt opens a new one
            try:
                self.dest.client.send("PUT", str(url), scopes=self.dest.scopes, ok=(201, 204), what=what,
                                      headers={"Content-Type": "application/octet-stream",
                                               "Content-Length": str(size)},
                                      content=lambda: self._counted(download))
            finally:
                download.close()

        self.dest.client.retrying(what, attempt)

    def _counted(self, download: httpx.Response):
        try:
            for chunk in download.iter_bytes(READ):
                self.stats.bytes_copied += len(chunk)
                yield chunk
        except httpx.TransportError as exc:
            raise Transient(f"{type(exc).__name__} while reading the source: {exc}") from None
