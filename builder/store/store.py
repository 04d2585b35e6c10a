"""The content-addressed store shared by all builds on a machine.

    blobs/sha256/<hex>          blobs (layers, configs, manifests), named by their digest
    layers/<key>.json           layer key -> LayerRecord
    compressed/<diff_id>.<codec-id>.json   uncompressed layer -> compressed blob, per codec
    tmp/                        blobs being written (named with the writer's pid)

Every write lands by rename, so a crash leaves either the whole entry or none.
Builds hold a shared lock on `lock`; building one layer holds an exclusive lock on
its key, so two builds never compress the same layer twice.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import BinaryIO, Iterator, Protocol

from builder.common.atomic import atomic_write_bytes
from builder.common.errors import BuildError


@dataclass(frozen=True)
class LayerRecord:
    diff_id: str     # sha256:... of the uncompressed tar
    digest: str      # sha256:... of the compressed blob
    size: int        # compressed size
    media_type: str

    def to_json(self) -> bytes:
        return json.dumps(asdict(self), sort_keys=True).encode()


class BlobSource(Protocol):
    """Somewhere beyond this machine that may hold a blob by digest (builder.cache.remote.RemoteCache)."""

    def fetch_blob(self, digest: str, size: int | None) -> bool: ...


class Store:
    def __init__(self, root: Path):
        self.root = root
        self.elsewhere: BlobSource | None = None  # asked for a pinned input its origin no longer serves
        for sub in ("blobs/sha256", "layers", "compressed", "tmp"):
            (root / sub).mkdir(parents=True, exist_ok=True)
        self._lock_handle = open(root / "lock", "a+b")
        fcntl.flock(self._lock_handle, fcntl.LOCK_SH)
        self._sweep_tmp()

    def close(self) -> None:
        self._lock_handle.close()

    # -- blobs -----------------------------------------------------------------

    def blob_path(self, digest: str) -> Path:
        algorithm, _, hexdigest = digest.partition(":")
        if algorithm != "sha256" or len(hexdigest) != 64:
            raise BuildError(f"unsupported digest {digest!r}")
        return self.root / "blobs" / "sha256" / hexdigest

    def has_blob(self, digest: str, size: int | None = None) -> bool:
        try:
            st = self.blob_path(digest).stat()
        except FileNotFoundError:
            return False
        return size is None or st.st_size == size

    def put_blob(self, data: bytes) -> str:
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        path = self.blob_path(digest)
        if not path.exists():
            atomic_write_bytes(path, data, mode=0o444)
        return digest

    def read_blob(self, digest: str) -> bytes:
        """A blob's bytes, checked against its digest."""
        try:
            data = self.blob_path(digest).read_bytes()
        except FileNotFoundError:
            raise BuildError(f"blob {digest} is missing from the store {self.root}") from None
        if "sha256:" + hashlib.sha256(data).hexdigest() != digest:
            self.blob_path(digest).unlink(missing_ok=True)
            raise BuildError(f"blob {digest} in the store {self.root} is corrupt; it was removed, build again")
        return data

    def adopt(self, source: Path, digest: str, size: int) -> bool:
        """Take the blob `digest` from another store (hard-linked, else copied) once its bytes are checked;
        False when `source` is missing, of another size or not those bytes."""
        if self.has_blob(digest, size):
            return True
        try:
            if source.stat().st_size != size:
                return False
            hashed = hashlib.sha256()
            with open(source, "rb") as handle:
                while chunk := handle.read(1 << 20):
                    hashed.update(chunk)
        except OSError:
            return False
        if "sha256:" + hashed.hexdigest() != digest:
            return False
        tmp = self.root / "tmp" / f"{os.getpid()}.{os.urandom(4).hex()}.adopt"
        try:
            os.link(source, tmp)
        except OSError:
            shutil.copyfile(source, tmp)
            os.chmod(tmp, 0o444)
        os.replace(tmp, self.blob_path(digest))
        return True

    def recover_blob(self, digest: str, size: int | None = None) -> bool:
        """Whether `elsewhere` had the blob (now in the store, verified) after its origin failed."""
        return self.elsewhere is not None and self.elsewhere.fetch_blob(digest, size)

    @contextlib.contextmanager
    def blob_writer(self) -> Iterator["BlobWriter"]:
        """A writer whose bytes become a blob named by their digest on `commit()`."""
        writer = BlobWriter(self)
        try:
            yield writer
        finally:
            writer.discard()

    # -- layer keys --------------------------------------------------------------

    def get_layer(self, key: str) -> LayerRecord | None:
        try:
            record = LayerRecord(**json.loads((self.root / "layers" / f"{key}.json").read_bytes()))
        except (FileNotFoundError, ValueError, TypeError):
            return None
        return record if self.has_blob(record.digest, record.size) else None

    def put_layer(self, key: str, record: LayerRecord) -> None:
        atomic_write_bytes(self.root / "layers" / f"{key}.json", record.to_json())

    @contextlib.contextmanager
    def building(self, key: str) -> Iterator[None]:
        """Exclusive while one build produces the layer for `key`."""
        with open(self.root / "layers" / f"{key}.lock", "a+b") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            yield

    # -- compressed forms of an uncompressed layer ------------------------------------

    def get_compressed(self, diff_id: str, codec_id: str) -> LayerRecord | None:
        try:
            record = LayerRecord(**json.loads(self._compressed_path(diff_id, codec_id).read_bytes()))
        except (FileNotFoundError, ValueError, TypeError):
            return None
        return record if self.has_blob(record.digest, record.size) else None

    def put_compressed(self, codec_id: str, record: LayerRecord) -> None:
        atomic_write_bytes(self._compressed_path(record.diff_id, codec_id), record.to_json())

    def _compressed_path(self, diff_id: str, codec_id: str) -> Path:
        return self.root / "compressed" / f"{diff_id.removeprefix('sha256:')}.{codec_id}.json"

    # -- small JSON records (base image resolutions...) --------------------------------

    def get_record(self, kind: str, name: str) -> dict | None:
        try:
            return json.loads((self.root / kind / f"{name}.json").read_bytes())
        except (FileNotFoundError, ValueError):
            return None

    def put_record(self, kind: str, name: str, value: dict) -> None:
        # Records are caches: a torn one after a crash reads as missing (get_record), so no fsync.
        atomic_write_bytes(self.root / kind / f"{name}.json", json.dumps(value, sort_keys=True).encode(),
                           fsync=False)

    # -- housekeeping ------------------------------------------------------------------

    def _sweep_tmp(self) -> None:
        """Remove temp files of writers that died (a crash or Ctrl-C mid-write)."""
        for path in (self.root / "tmp").iterdir():
            pid = path.name.split(".", 1)[0]
            if pid.isdigit() and not _alive(int(pid)):
                if path.is_dir():
                    shutil.rmtree(path, ignore_errors=True)
                else:
                    path.unlink(missing_ok=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class BlobWriter:
    def __init__(self, store: Store):
        self._store = store
        self.tmp = store.root / "tmp" / f"{os.getpid()}.{id(self):x}.{os.urandom(4).hex()}"
        self._handle: BinaryIO | None = open(self.tmp, "wb")
        self._hash = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes) -> None:
        if data:
            self._hash.update(data)
            self._handle.write(data)
            self.size += len(data)

    @property
    def digest(self) -> str:
        return "sha256:" + self._hash.hexdigest()

    def commit(self) -> str:
        digest = self.digest
        self._handle.flush()
        os.fsync(self._handle.fileno())
        self._handle.close()
        self._handle = None
        os.chmod(self.tmp, 0o444)
        os.replace(self.tmp, self._store.blob_path(digest))
        return digest

    def discard(self) -> None:
        if self._handle is not None:
            self._handle.close()
            self._handle = None
        self.tmp.unlink(missing_ok=True)
