"""Layer records by key as small OCI artifacts in a registry repository, the layer blobs beside them.

An entry is an image manifest tagged `layer-<key>-<codec>` (the key is the engine's: the same
on every machine for the same inputs) with the empty config and one layer, the layer's blob,
annotated with its diff_id. A lookup is one manifest GET (misses concurrently); a hit's blob is
downloaded, checked against the record's digest and size and then its diff_id against the
uncompressed bytes, before the local store takes it: an entry that fails is rejected, reported
and the layer built locally. Writes come after the build verified its layers; two runners
writing one key write the same bytes. A cache that cannot be reached or refuses the credentials
is a warning (the build goes on without it) unless it is required.
"""

from __future__ import annotations

import base64
import concurrent.futures
import hashlib
import json
import os
from dataclasses import dataclass, field

from builder.common.errors import AirbuildError, InputError
from builder.layers.compress import decompressor_for
from builder.oci.descriptors import MANIFEST_MEDIA_TYPE
from builder.registry.auth import repository_scope
from builder.registry.blob_sources import BlobSources
from builder.registry.client import RegistryClient, RegistryError
from builder.registry.connect import open_client
from builder.registry.pull import Puller
from builder.registry.push import Pusher
from builder.registry.reference import Reference, parse_repository
from builder.store.store import LayerRecord, Store

ENV_REPO = "AIRBUILD_CACHE_REPO"
ARTIFACT_TYPE = "application/vnd.airbuild.layer-record.v1+json"
RECORD_ARTIFACT_TYPE = "application/vnd.airbuild.record.v1+json"  # a result by its content key (DAG validation)
RECORD_MEDIA_TYPE = "application/json"
INPUTS_ARTIFACT_TYPE = "application/vnd.airbuild.locked-inputs.v1+json"  # a lock's .debs and wheels
EMPTY_MEDIA_TYPE = "application/vnd.oci.empty.v1+json"
EMPTY = b"{}"
EMPTY_DIGEST = "sha256:" + hashlib.sha256(EMPTY).hexdigest()
LOOKUPS = 8  # manifest GETs in flight at once
ATTEMPTS = 2  # a cache is an optimisation: one retry, then the build goes on without it
READ = 1 << 20


@dataclass(frozen=True)
class CacheSettings:
    repo: str                 # host[:port]/repository
    mode: str = "readwrite"   # or "read"
    required: bool = False    # an unreachable cache fails the build instead of warning
    insecure: bool = False

    @classmethod
    def choose(cls, flag: str | None, manifest_cache, required: bool) -> "CacheSettings | None":
        """--cache-repo, else AIRBUILD_CACHE_REPO, else the manifest's `cache`; None: no shared cache."""
        repo = flag or os.environ.get(ENV_REPO) or (manifest_cache.repo if manifest_cache else None)
        if not repo:
            if required:
                raise InputError("--cache-required, but no cache repository is set (--cache-repo, "
                                 f"{ENV_REPO} or `cache: repo:` in astro.yaml)")
            return None
        parse_repository(repo)
        mode = manifest_cache.mode if manifest_cache else "readwrite"
        return cls(repo, mode, required, bool(manifest_cache and manifest_cache.insecure))


@dataclass
class CacheStats:
    hits: int = 0
    misses: int = 0
    rejected: int = 0
    published: int = 0
    records_fetched: int = 0
    records_published: int = 0
    inputs_fetched: int = 0     # locked .debs and wheels their origin no longer served
    inputs_published: int = 0
    downloaded_bytes: int = 0
    uploaded_bytes: int = 0
    warnings: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Entry:
    key: str
    record: LayerRecord


class RemoteCache:
    def __init__(self, settings: CacheSettings, store: Store, codec_id: str):
        self.settings = settings
        self.store = store
        self.codec_id = codec_id
        self.ref: Reference = parse_repository(settings.repo)
        self.stats = CacheStats()
        self._client: RegistryClient | None = None
        self._down = False         # unreachable or refused: not asked again in this build
        self._found: dict[str, Entry | None] = {}

    # -- reading -------------------------------------------------------------------------------

    def lookup(self, keys: list[str]) -> None:
        """Ask for every key not asked yet, concurrently; answers are kept for `fetch`."""
        wanted = [k for k in dict.fromkeys(keys) if k not in self._found]
        if not wanted or self._down:
            return
        with concurrent.futures.ThreadPoolExecutor(min(LOOKUPS, len(wanted))) as pool:
            for key, entry in zip(wanted, pool.map(self._guarded_lookup, wanted)):
                self._found[key] = entry

    def has(self, key: str) -> bool:
        """The cache was asked for `key` and answered with an entry (not yet downloaded or checked)."""
        return self._found.get(key) is not None

    def lacks(self, key: str) -> bool:
        """The cache was asked for `key` and has no usable entry (so a readwrite build should write one)."""
        return self.settings.mode == "readwrite" and not self._down and key in self._found and \
            self._found[key] is None

    def fetch(self, key: str) -> LayerRecord | None:
        """The layer for `key`, in the local store and verified, or None (a miss, a rejected entry, no cache)."""
        if key not in self._found:
            self.lookup([key])
        entry = self._found.get(key)
        if entry is None:
            if not self._down:
                self.stats.misses += 1
            return None
        try:
            record = self._download(entry)
        except (AirbuildError, OSError) as exc:
            self._warn(f"could not download layer {key[:12]} from the cache: {exc}; built locally")
            return None
        if record is None:  # rejected: this build writes a good entry in its place
            self._found[key] = None
            return None
        self.stats.hits += 1
        self.store.put_compressed(self.codec_id, record)
        self.store.put_layer(key, record)
        return record

    def _guarded_lookup(self, key: str) -> Entry | None:
        try:
            return self._lookup(key)
        except (AirbuildError, OSError) as exc:
            self._unreachable(exc)
            return None

    def _lookup(self, key: str) -> Entry | None:
        if self._down:
            return None
        response = self._manifest(self.tag(key))
        if response is None:
            return None
        try:
            manifest = json.loads(response)
            layer = manifest["layers"][0]
            record = LayerRecord(layer["annotations"]["dev.airbuild.diff-id"], layer["digest"], int(layer["size"]),
                                 layer["mediaType"])
            if manifest.get("annotations", {}).get("dev.airbuild.key") != key:
                raise ValueError("the entry is for another key")
        except (ValueError, KeyError, IndexError, TypeError) as exc:
            self.stats.rejected += 1
            self._warn(f"rejected the cache's entry for layer {key[:12]}: not a layer record ({exc})")
            return None
        return Entry(key, record)

    def _download(self, entry: Entry) -> LayerRecord | None:
        record = entry.record
        if not self.store.has_blob(record.digest, record.size):
            try:
                Puller(self._connect(), self.store).fetch_layers(self.ref, [record])
            except RegistryError as exc:
                self.stats.rejected += 1
                self._warn(f"rejected the cache's entry for layer {entry.key[:12]}: {exc}; built locally")
                return None
            self.stats.downloaded_bytes += record.size
        diff_id = uncompressed_digest(self.store, record.digest)
        if diff_id != record.diff_id:
            self.stats.rejected += 1
            self._warn(f"rejected the cache's entry for layer {entry.key[:12]}: its blob unpacks to {diff_id}, "
                       f"the record says {record.diff_id}; built locally")
            return None
        sources = BlobSources(self.store, self.ref.registry)
        sources.add(record.digest, self.ref.repository)  # a deploy to the same registry mounts it from here
        sources.save()
        return record

    # -- locked inputs (.deb and wheel files by sha256): builder.store.store.BlobSource ------------

    def fetch_blob(self, digest: str, size: int | None) -> bool:
        if self._down or size is None:
            return False
        try:
            Puller(self._connect(), self.store).fetch_layers(self.ref, [LayerRecord("", digest, size, "")])
        except (AirbuildError, OSError):
            return False
        self.stats.downloaded_bytes += size
        self.stats.inputs_fetched += 1
        return True

    def publish_inputs(self, name: str, inputs: list[tuple[str, int]]) -> None:
        """The lock's files (sha256 digest, size) the local store has, under one artifact named by the lock's
        inputs (`inputs-<name>`): checked with one lookup, written once per lock, kept from the registry's GC."""
        if not inputs or not self._writable_and_missing(f"inputs-{name}"):
            return
        present = [(digest, size) for digest, size in inputs if self.store.has_blob(digest, size)]
        if len(present) < len(inputs):  # a runner that has them all writes the entry
            return
        blobs = [{"mediaType": "application/octet-stream", "digest": d, "size": s} for d, s in present]
        if self._push(f"inputs-{name}", INPUTS_ARTIFACT_TYPE, blobs, {"dev.airbuild.kind": "inputs"}):
            self.stats.inputs_published += len(present)

    # -- results by content key (validation): builder.validate.run.SharedRecords ----------------

    def get_record(self, kind: str, name: str) -> dict | None:
        if self._down:
            return None
        try:
            manifest = self._manifest(f"{kind}-{name}")
            if manifest is None:
                return None
            blob = json.loads(manifest)["layers"][0]
            data = self._connect().request("GET", f"/v2/{self.ref.repository}/blobs/{blob['digest']}",
                                           scopes=self._pull, ok=(200,),
                                           what=f"downloading {kind} {name[:12]} from the cache").content
        except (AirbuildError, OSError) as exc:
            self._unreachable(exc)
            return None
        except (ValueError, KeyError, IndexError, TypeError) as exc:
            self._warn(f"ignored the cache's {kind} entry {name[:12]}: not a record ({exc})")
            return None
        if "sha256:" + hashlib.sha256(data).hexdigest() != blob["digest"]:
            self.stats.rejected += 1
            self._warn(f"rejected the cache's {kind} entry {name[:12]}: its bytes do not match their digest")
            return None
        self.stats.downloaded_bytes += len(data)
        try:
            value = json.loads(data)
        except ValueError:
            return None
        self.stats.records_fetched += 1
        return value if isinstance(value, dict) else None

    def offer(self, kind: str, name: str, value: dict) -> None:
        """`put_record`, unless the cache has that record already (one manifest lookup)."""
        if self._writable_and_missing(f"{kind}-{name}"):
            self.put_record(kind, name, value)

    def _writable_and_missing(self, tag: str) -> bool:
        """A readwrite cache that answers and has no entry `tag` (one manifest lookup)."""
        if self.settings.mode != "readwrite" or self._down:
            return False
        try:
            return self._manifest(tag) is None
        except (AirbuildError, OSError) as exc:
            self._unreachable(exc)
            return False

    def put_record(self, kind: str, name: str, value: dict) -> None:
        if self.settings.mode != "readwrite" or self._down:
            return
        data = json.dumps(value, sort_keys=True, separators=(",", ":")).encode()
        blob = {"mediaType": RECORD_MEDIA_TYPE, "digest": self.store.put_blob(data), "size": len(data)}
        if self._push(f"{kind}-{name}", RECORD_ARTIFACT_TYPE, [blob], {"dev.airbuild.kind": kind}):
            self.stats.records_published += 1

    # -- writing -------------------------------------------------------------------------------

    def publish(self, key: str, record: LayerRecord) -> None:
        """Write the entry for a layer this build made and verified (readwrite caches only)."""
        if not self.lacks(key):
            return
        blob = {"mediaType": record.media_type, "digest": record.digest, "size": record.size,
                "annotations": {"dev.airbuild.diff-id": record.diff_id}}
        annotations = {"dev.airbuild.key": key, "dev.airbuild.codec": self.codec_id}
        if self._push(self.tag(key), ARTIFACT_TYPE, [blob], annotations):
            self.stats.published += 1

    def _manifest(self, tag: str) -> bytes | None:
        """The manifest tagged `tag` in the cache repository, or None; raises when the cache cannot answer."""
        response = self._connect().request("GET", f"/v2/{self.ref.repository}/manifests/{tag}", scopes=self._pull,
                                           ok=(200, 404), what=f"looking up {tag[:40]} in the cache",
                                           headers={"Accept": MANIFEST_MEDIA_TYPE})
        return response.content if response.status_code == 200 else None

    @property
    def _pull(self) -> tuple[str, ...]:
        return (repository_scope(self.ref.repository, "pull"),)

    def _push(self, tag: str, artifact_type: str, blobs: list[dict], annotations: dict[str, str]) -> bool:
        """One entry: the empty config, its blobs, then the manifest by tag; False (a warning) if refused."""
        pusher = Pusher(self._connect(), self.store, self.ref.repository)  # no request yet
        try:
            if not self.store.has_blob(EMPTY_DIGEST):
                self.store.put_blob(EMPTY)
            pusher.push_blobs([(EMPTY_DIGEST, len(EMPTY)), *((blob["digest"], blob["size"]) for blob in blobs)])
            manifest = _artifact(artifact_type, blobs, annotations)
            pusher.put_manifest(tag, manifest, "sha256:" + hashlib.sha256(manifest).hexdigest(), MANIFEST_MEDIA_TYPE)
        except (AirbuildError, OSError) as exc:
            self._unreachable(exc, writing=True)
            return False
        finally:
            pusher.sources.save()  # a deploy to another repository of this registry mounts these blobs from here
        self.stats.uploaded_bytes += pusher.stats.bytes_uploaded
        return True

    def tag(self, key: str) -> str:
        codec = hashlib.sha256(self.codec_id.encode()).hexdigest()[:12]
        return f"layer-{key}-{codec}"

    # -- state ---------------------------------------------------------------------------------

    def summary(self) -> dict:
        return {"repo": self.settings.repo, "mode": self.settings.mode, "reachable": not self._down,
                "hits": self.stats.hits, "misses": self.stats.misses, "rejected": self.stats.rejected,
                "published": self.stats.published, "records_fetched": self.stats.records_fetched,
                "records_published": self.stats.records_published, "inputs_fetched": self.stats.inputs_fetched,
                "inputs_published": self.stats.inputs_published, "downloaded_bytes": self.stats.downloaded_bytes,
                "uploaded_bytes": self.stats.uploaded_bytes, "warnings": list(self.stats.warnings)}

    def close(self) -> None:
        if self._client is not None:
            self._client.close()

    def _connect(self) -> RegistryClient:
        if self._client is None:
            self._client = open_client(self.ref.registry, insecure=self.settings.insecure)
            self._client.attempts = min(self._client.attempts, ATTEMPTS)
        return self._client

    def _unreachable(self, exc: Exception, writing: bool = False) -> None:
        message = (f"the shared cache {self.settings.repo} {'refused a write' if writing else 'is not usable'}: "
                   f"{exc}")
        if self.settings.required:
            raise RegistryError(f"{message} (--cache-required)")
        if not self._down:
            self._warn(message + "; building without it")
        self._down = True

    def _warn(self, message: str) -> None:
        self.stats.warnings.append(message)


def uncompressed_digest(store: Store, digest: str) -> str:
    """sha256 of a layer blob's uncompressed bytes (its diff_id), streamed."""
    hasher = hashlib.sha256()
    with open(store.blob_path(digest), "rb") as handle:
        head = handle.read(4)
        handle.seek(0)
        decompress = decompressor_for(head)
        while chunk := handle.read(READ):
            hasher.update(decompress.decompress(chunk) if decompress else chunk)
        if decompress is not None and hasattr(decompress, "flush"):
            hasher.update(decompress.flush())
    return "sha256:" + hasher.hexdigest()



def _artifact(artifact_type: str, blobs: list[dict], annotations: dict[str, str]) -> bytes:
    """An OCI 1.1 artifact manifest (an image manifest with the empty config) holding `blobs`."""
    manifest = {
        "schemaVersion": 2, "mediaType": MANIFEST_MEDIA_TYPE, "artifactType": artifact_type,
        "config": {"mediaType": EMPTY_MEDIA_TYPE, "digest": EMPTY_DIGEST, "size": len(EMPTY),
                   "data": base64.b64encode(EMPTY).decode()},
        "layers": blobs, "annotations": annotations,
    }
    return json.dumps(manifest, sort_keys=True, separators=(",", ":")).encode()
