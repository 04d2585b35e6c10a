"""Pull an image into the store: tag -> manifest (an index resolved to the platform's) -> config, layers.

Every manifest and blob is checked against its digest before it is kept. A manifest is
itself a store blob, so a digest-pinned reference whose blobs are all in the store needs
no network; a tag costs one HEAD request when the store already has what it points at. Blobs
download `AIRBUILD_TRANSFERS` at a time (builder/registry/concurrency.py), with progress on a terminal.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

import httpx

from builder.common.errors import InputError
from builder.oci.descriptors import DOCKER_LIST_MEDIA_TYPE, DOCKER_MANIFEST_MEDIA_TYPE, INDEX_MEDIA_TYPE, MANIFEST_MEDIA_TYPE, Platform
from builder.oci.index import INDEX_TYPES, platform_entry
from builder.registry.auth import repository_scope
from builder.registry.blob_sources import BlobSources
from builder.common.progress import Meter, transfers
from builder.registry.client import RegistryClient, RegistryError, Transient
from builder.registry.concurrency import each
from builder.registry.reference import Reference
from builder.store.store import Store

MANIFEST_TYPES = (MANIFEST_MEDIA_TYPE, INDEX_MEDIA_TYPE, DOCKER_MANIFEST_MEDIA_TYPE, DOCKER_LIST_MEDIA_TYPE)
ACCEPT = ", ".join(MANIFEST_TYPES)
READ = 1 << 20


@dataclass(frozen=True)
class PulledImage:
    digest: str           # what the reference resolved to (an index's digest for a multi-platform image)
    manifest: dict        # the platform's image manifest
    config_bytes: bytes
    manifest_digest: str = ""  # the platform's image manifest's own digest (`digest` unless that is an index)


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _stated_digest(response: httpx.Response) -> str | None:
    digest = response.headers.get("Docker-Content-Digest")
    return digest if digest and digest.startswith("sha256:") else None


def _media_type(data: bytes, header: str | None) -> str:
    try:
        declared = json.loads(data).get("mediaType")
    except (ValueError, AttributeError):
        declared = None
    return declared or (header or "").split(";")[0].strip()


def open_blob(client: RegistryClient, repository: str, digest: str, scopes, what: str) -> httpx.Response:
    """A blob's GET, streaming, its redirect (to the registry's storage) followed; one attempt."""
    response = client.send("GET", f"/v2/{repository}/blobs/{digest}", scopes=scopes, what=what,
                           ok=(200, 307, 302, 303), stream=True)
    if not response.is_redirect:
        return response
    location = response.headers["Location"]
    response.close()
    try:  # no Authorization for the storage behind the redirect
        response = client.http.send(client.http.build_request("GET", location), stream=True)
    except httpx.TransportError as exc:
        raise Transient(f"{type(exc).__name__}: {exc}") from None
    if response.status_code != 200:
        transient = client.transient_status(response)
        if transient:
            raise transient
        client.fail(what, response)
    return response


class Puller:
    def __init__(self, client: RegistryClient, store: Store, what: str = "base image"):
        self.client = client
        self.store = store
        self.what = what  # what the image is to the user, for messages

    def pull(self, ref: Reference, platform: Platform, layers: bool = True) -> PulledImage:
        """The image for `platform`, its config and (with `layers`) its layers in the store."""
        scopes = (repository_scope(ref.repository, "pull"),)
        digest = ref.digest or self._head(ref, scopes)
        data = self._manifest(ref, digest, scopes)
        top = digest or sha256(data)
        while _media_type(data, None) in INDEX_TYPES:
            data = self._manifest(ref, platform_entry(json.loads(data), platform, f"{self.what} {ref}")["digest"],
                                  scopes)
        manifest = json.loads(data)
        config = manifest["config"]
        if not self.store.has_blob(config["digest"], config["size"]):
            self._download(ref, config["digest"], config["size"], scopes)
        if layers:
            self._download_all(ref, [(blob["digest"], blob["size"]) for blob in manifest["layers"]], scopes)
        sources = BlobSources(self.store, ref.registry)
        for blob in [config, *manifest["layers"]]:
            sources.add(blob["digest"], ref.repository)
        sources.save()
        return PulledImage(top, manifest, self.store.read_blob(config["digest"]), sha256(data))

    def fetch_layers(self, ref: Reference, layers) -> None:
        """Download those of `layers` (LayerRecords of `ref`'s image) the store lacks."""
        scopes = (repository_scope(ref.repository, "pull"),)
        self._download_all(ref, [(layer.digest, layer.size) for layer in layers], scopes)

    def _download_all(self, ref: Reference, blobs: list[tuple[str, int]], scopes) -> None:
        missing = [blob for blob in dict.fromkeys(blobs) if not self.store.has_blob(*blob)]
        if not missing:
            return
        self.client.base_url  # one probe (and scheme) before the blobs go in parallel
        with transfers(f"pulling {ref}", sum(size for _, size in missing)) as meter:
            each(lambda blob: self._download(ref, blob[0], blob[1], scopes, meter), missing)

    def current_digest(self, ref: Reference) -> str | None:
        """What `ref` points at in the registry now, None when it has no such tag (or repository): the
        digest the registry states for a HEAD, else the manifest's bytes hashed."""
        scopes = (repository_scope(ref.repository, "pull"),)
        head = self._ask("HEAD", ref, scopes)
        if head is None:
            return None
        stated = _stated_digest(head)
        if stated:
            return stated
        body = self._ask("GET", ref, scopes)
        return None if body is None else sha256(body.content)

    def _ask(self, method: str, ref: Reference, scopes) -> httpx.Response | None:
        response = self.client.request(method, f"/v2/{ref.repository}/manifests/{ref.lookup}", scopes=scopes,
                                       what=f"looking up {ref}", ok=(200, 404), headers={"Accept": ACCEPT})
        return None if response.status_code == 404 else response

    def _head(self, ref: Reference, scopes) -> str | None:
        """The digest a tag points at (one HEAD), when the registry says."""
        response = self._ask("HEAD", ref, scopes)
        if response is None:
            raise InputError(f"{self.what} {ref}: not found in the registry (no such repository or tag)")
        return _stated_digest(response)

    def _manifest(self, ref: Reference, digest: str | None, scopes) -> bytes:
        if digest is not None and self.store.has_blob(digest):
            return self.store.read_blob(digest)
        response = self.client.request("GET", f"/v2/{ref.repository}/manifests/{digest or ref.lookup}",
                                       scopes=scopes, what=f"fetching the manifest of {ref}", ok=(200, 404),
                                       headers={"Accept": ACCEPT})
        if response.status_code == 404:
            raise InputError(f"{self.what} {ref}: manifest {digest or ref.lookup} not found in the registry")
        data = response.content
        actual = sha256(data)
        if digest is not None and actual != digest:
            raise RegistryError(f"the manifest of {ref} does not match its digest {digest} (got {actual})")
        self.store.put_blob(data)
        return data

    def _download(self, ref: Reference, digest: str, size: int, scopes, meter: Meter | None = None) -> None:
        what = f"downloading blob {digest} of {ref}"

        def attempt() -> None:
            response = open_blob(self.client, ref.repository, digest, scopes, what)
            try:
                with self.store.blob_writer() as blob:
                    for chunk in response.iter_bytes(READ):
                        blob.write(chunk)
                        if meter is not None:
                            meter.advance(len(chunk))
                    if blob.digest != digest or blob.size != size:
                        raise RegistryError(f"{what}: the bytes do not match the digest and size "
                                            f"({blob.digest}, {blob.size} bytes)")
                    blob.commit()
            except httpx.TransportError as exc:
                raise Transient(f"{type(exc).__name__} while downloading: {exc}") from None
            finally:
                response.close()

        self.client.retrying(what, attempt)
