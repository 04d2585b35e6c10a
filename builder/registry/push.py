"""Push an image from the store: each blob the registry lacks, then the manifest by digest and by tag.

Blobs go `AIRBUILD_TRANSFERS` at a time (builder/registry/concurrency.py), with progress on a
terminal. Per blob: HEAD (present: skipped); a cross-repository mount when the blob is known in
another repository of the registry (a 202 answer opens an upload instead); then a
monolithic PUT for a blob up to the chunk size, else PATCH chunks with Content-Range,
streamed from disk. An interrupted upload asks the registry how far it got (GET on the
upload URL) and resumes there; an upload the registry forgot starts again. The manifest
goes last, PUT once per tag (which also makes it reachable by digest; the registry's
Docker-Content-Digest must match), so a failed push leaves no tag pointing at a partial image.
"""

from __future__ import annotations

import json
import os
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import httpx

from builder.common.errors import InputError
from builder.registry.auth import repository_scope
from builder.registry.blob_sources import BlobSources
from builder.common.progress import Meter, transfers
from builder.registry.client import RegistryClient, RegistryError, Transient
from builder.registry.concurrency import each
from builder.registry.manifests import RawManifest, Repository
from builder.store.store import Store

ENV_CHUNK = "AIRBUILD_UPLOAD_CHUNK_BYTES"
DEFAULT_CHUNK = 16 << 20
READ = 1 << 20


@dataclass
class PushStats:
    blobs_uploaded: int = 0
    blobs_skipped: int = 0
    blobs_mounted: int = 0
    bytes_uploaded: int = 0          # body bytes sent, retries included
    uploaded: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def count(self, what: str, n: int = 1) -> None:
        with self.lock:
            setattr(self, what, getattr(self, what) + n)


def chunk_size() -> int:
    raw = os.environ.get(ENV_CHUNK)
    if raw is None:
        return DEFAULT_CHUNK
    if not raw.isdigit() or int(raw) < 1024:
        raise InputError(f"{ENV_CHUNK} must be a whole number of bytes, at least 1024")
    return int(raw)


def _file_body(path: Path, start: int, length: int, stats: PushStats, meter: Meter | None) -> Iterator[bytes]:
    with open(path, "rb") as handle:
        handle.seek(start)
        left = length
        while left > 0:
            data = handle.read(min(READ, left))
            if not data:
                raise RegistryError(f"blob {path.name} in the store is shorter than expected")
            left -= len(data)
            stats.count("bytes_uploaded", len(data))
            if meter is not None:
                meter.advance(len(data))
            yield data


class Pusher:
    def __init__(self, client: RegistryClient, store: Store, repository: str):
        self.client = client
        self.store = store
        self.repository = repository
        self.scopes = (repository_scope(repository, "pull,push"),)
        self.sources = BlobSources(store, client.registry)
        self.stats = PushStats()
        self.chunk = chunk_size()
        self.meter: Meter | None = None
        self._sources_lock = threading.Lock()

    @property
    def name(self) -> str:
        return f"{self.client.registry}/{self.repository}"

    def push(self, manifest_digest: str, tags: list[str]) -> PushStats:
        manifest_bytes = self.store.read_blob(manifest_digest)
        manifest = json.loads(manifest_bytes)
        self.push_blobs([(blob["digest"], blob["size"]) for blob in [manifest["config"], *manifest["layers"]]])
        # Only now, with every blob in: a manifest never points at a blob the registry lacks.
        media_type = manifest.get("mediaType", "application/vnd.oci.image.manifest.v1+json")
        for ref in tags or [manifest_digest]:  # a PUT by tag also makes the manifest reachable by its digest
            self.put_manifest(ref, manifest_bytes, manifest_digest, media_type)
        return self.stats

    # -- blobs -------------------------------------------------------------------------------------

    def push_blobs(self, blobs: list[tuple[str, int]]) -> None:
        """Each (digest, size) the registry lacks, several at a time; `uploaded` then lists them in this order."""
        unique = list(dict.fromkeys(blobs))
        self.client.base_url  # one probe (and scheme) before the blobs go in parallel
        try:
            with transfers(f"pushing to {self.name}", sum(size for _, size in unique)) as self.meter:
                each(lambda blob: self.push_blob(*blob), unique)
        finally:
            self.meter = None
            self.sources.save()
            order = {digest: n for n, (digest, _) in enumerate(unique)}
            self.stats.uploaded.sort(key=lambda digest: order.get(digest, len(order)))

    def blob_exists(self, digest: str, size: int) -> bool:
        response = self.client.request("HEAD", f"/v2/{self.repository}/blobs/{digest}", scopes=self.scopes,
                                       what=f"checking for blob {digest} in {self.name}", ok=(200, 404))
        return response.status_code == 200 and int(response.headers.get("Content-Length", size)) == size

    def push_blob(self, digest: str, size: int) -> None:
        path = self.store.blob_path(digest)
        if not self.store.has_blob(digest, size):
            raise RegistryError(f"blob {digest} is missing from the store {self.store.root}; build again")
        if self.blob_exists(digest, size):
            self.stats.count("blobs_skipped")
            self._known(digest, size)
            return
        location = None
        with self._sources_lock:
            sources = self.sources.repositories(digest, self.repository)
        for source in sources:
            location = self._mount(digest, source)
            if location is None:
                self.stats.count("blobs_mounted")
                self._known(digest, size)
                return
            break
        self._upload(path, digest, size, location)
        self.stats.count("blobs_uploaded")
        with self.stats.lock:
            self.stats.uploaded.append(digest)
        with self._sources_lock:
            self.sources.add(digest, self.repository)

    def _known(self, digest: str, size: int) -> None:
        """The registry has the blob without an upload: remembered, and its bytes no longer left to send."""
        with self._sources_lock:
            self.sources.add(digest, self.repository)
        if self.meter is not None:
            self.meter.shrink(size)

    def _mount(self, digest: str, source: str) -> str | None:
        """None when mounted; else the upload URL the registry opened instead."""
        scopes = self.scopes + (repository_scope(source, "pull"),)
        response = self.client.request("POST", f"/v2/{self.repository}/blobs/uploads/", scopes=scopes,
                                       params={"mount": digest, "from": source}, ok=(201, 202),
                                       what=f"mounting blob {digest} from {source} into {self.name}")
        if response.status_code == 201:
            return None
        return self._location(response)

    def _location(self, response: httpx.Response) -> str:
        location = response.headers.get("Location")
        if not location:
            self.client.fail(f"the registry opened an upload to {self.name} without a Location", response)
        return str(response.url.join(location))

    def _start(self, digest: str) -> str:
        response = self.client.request("POST", f"/v2/{self.repository}/blobs/uploads/", scopes=self.scopes,
                                       ok=(202,), what=f"starting the upload of blob {digest} to {self.name}")
        return self._location(response)

    def _upload(self, path: Path, digest: str, size: int, location: str | None) -> None:
        what = f"uploading blob {digest} ({size} bytes) to {self.name}"
        state = {"location": location, "offset": 0}

        def attempt() -> None:
            if state["location"] is None:
                state["location"], state["offset"] = self._start(digest), 0
            elif state["offset"] is None:
                state["offset"] = self._resume_offset(state["location"])
                if state["offset"] is None:  # the registry forgot this upload: finished after all, or start again
                    if self.blob_exists(digest, size):
                        return
                    state["location"], state["offset"] = self._start(digest), 0
            try:
                if size <= self.chunk and state["offset"] == 0:
                    self._finish(state["location"], digest, path, 0, size)
                    return
                while state["offset"] < size:
                    end = min(state["offset"] + self.chunk, size)
                    state["location"], state["offset"] = self._patch(state["location"], path, state["offset"], end,
                                                                     what)
                self._finish(state["location"], digest, path, size, 0)
            except Transient:
                state["offset"] = None  # ask the registry where to go on from
                raise

        self.client.retrying(what, attempt)

    def _patch(self, location: str, path: Path, start: int, end: int, what: str) -> tuple[str, int]:
        response = self.client.send(
            "PATCH", location, scopes=self.scopes, ok=(202,), what=what,
            headers={"Content-Type": "application/octet-stream", "Content-Length": str(end - start),
                     "Content-Range": f"{start}-{end - 1}"},
            content=lambda: _file_body(path, start, end - start, self.stats, self.meter))
        received = _range_end(response)
        return self._location(response), (received if received is not None else end)

    def _finish(self, location: str, digest: str, path: Path, start: int, length: int) -> None:
        """The closing PUT, with the rest of the blob (`length` bytes from `start`) as its body."""
        url = httpx.URL(location).copy_merge_params({"digest": digest})
        response = self.client.send(
            "PUT", str(url), scopes=self.scopes, ok=(201, 204), what=f"completing the upload of blob {digest}",
            headers={"Content-Type": "application/octet-stream", "Content-Length": str(length)},
            content=lambda: _file_body(path, start, length, self.stats, self.meter))
        got = response.headers.get("Docker-Content-Digest")
        if got and got != digest:
            raise RegistryError(f"the registry {self.client.registry} stored blob {digest} as {got}")

    def _resume_offset(self, location: str) -> int | None:
        """How many bytes of an interrupted upload the registry holds; None if it has forgotten the upload."""
        response = self.client.request("GET", location, scopes=self.scopes, ok=(204, 200, 404, 400),
                                       what="asking the registry how far an interrupted upload got")
        if response.status_code in (404, 400):
            return None
        end = _range_end(response)
        return 0 if end is None else end

    # -- manifests -----------------------------------------------------------------------------------

    def put_manifest(self, ref: str, data: bytes, digest: str, media_type: str) -> None:
        self.stats.count("bytes_uploaded", len(data))
        Repository(self.client, self.repository, writable=True).put_manifest(ref, RawManifest(digest, media_type, data))


def _range_end(response: httpx.Response) -> int | None:
    """Bytes received so far from a `Range: 0-N` header (N inclusive)."""
    value = response.headers.get("Range")
    if not value or "-" not in value:
        return None
    end = value.split("-", 1)[1]
    if not end.isdigit():
        return None
    return 0 if value == "0-0" else int(end) + 1  # "0-0" is also what a registry says of an empty upload
