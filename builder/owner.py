"""Who owns project files in the image: names resolved through the base's /etc/passwd and /etc/group."""

from __future__ import annotations

import hashlib
import tarfile
import zlib
from dataclasses import dataclass

from builder.base_image import BaseImage
from builder.compress import decompressor_for
from builder.errors import InputError
from builder.store import Store

FILES = ("etc/passwd", "etc/group")


@dataclass(frozen=True)
class Ownership:
    uid: int
    gid: int


def resolve_owner(user: str | int | None, group: str | int | None, base: BaseImage, store: Store,
                  where: str) -> Ownership:
    """`user[:group]` as Docker reads USER and --chown; names need the base's passwd/group files."""
    if user is None or user == "":
        return Ownership(0, 0 if group is None else _id(group, "group", base, store, where))
    if isinstance(user, str) and ":" in user and group is None:
        user, group = user.split(":", 1)
    uid = _id(user, "user", base, store, where)
    gid = 0 if group is None else _id(group, "group", base, store, where)
    return Ownership(uid, gid)


def _id(name: str | int, kind: str, base: BaseImage, store: Store, where: str) -> int:
    if isinstance(name, int) or name.isdigit():
        return int(name)
    table = base_accounts(base, store)["passwd" if kind == "user" else "group"]
    if name not in table:
        raise InputError(f"{where}: {kind} {name!r} is not in the base image's /etc/{'passwd' if kind == 'user' else 'group'}")
    return table[name]


def base_accounts(base: BaseImage, store: Store) -> dict[str, dict[str, int]]:
    """Name -> id maps from the base's /etc/passwd and /etc/group (cached per base)."""
    name = hashlib.sha256(("accounts|" + "|".join(r.diff_id for r in base.layers)).encode()).hexdigest()
    cached = store.get_record("accounts", name)
    if cached is not None:
        return cached
    found: dict[str, bytes] = {}
    for layer in reversed(base.layers):  # the top layer's copy wins
        found = {**_find_in_layer(store, layer.digest, [f for f in FILES if f not in found]), **found}
        if len(found) == len(FILES):
            break
    accounts = {"passwd": _parse(found.get("etc/passwd", b"")), "group": _parse(found.get("etc/group", b""))}
    store.put_record("accounts", name, accounts)
    return accounts


def _parse(content: bytes) -> dict[str, int]:
    out = {}
    for line in content.decode("utf-8", "replace").splitlines():
        fields = line.split(":")
        if len(fields) >= 3 and fields[2].isdigit():
            out.setdefault(fields[0], int(fields[2]))
    return out


def _find_in_layer(store: Store, digest: str, wanted: list[str]) -> dict[str, bytes]:
    if not wanted:
        return {}
    path = store.blob_path(digest)
    with open(path, "rb") as raw:
        head = raw.read(4)
    mode = "r|gz" if head[:2] == b"\x1f\x8b" else "r|"
    out: dict[str, bytes] = {}
    if decompressor_for(head) is not None and mode == "r|":
        import zstandard

        stream = zstandard.ZstdDecompressor().stream_reader(open(path, "rb"), closefd=True)
        archive = tarfile.open(fileobj=stream, mode="r|")
    else:
        archive = tarfile.open(path, mode=mode)
    try:
        for member in archive:
            name = member.name.removeprefix("./").lstrip("/")
            if name in wanted and member.isfile():
                out[name] = archive.extractfile(member).read()
                if len(out) == len(wanted):
                    break
    except (tarfile.TarError, zlib.error, OSError) as exc:
        raise InputError(f"cannot read base layer {digest}: {exc}") from None
    finally:
        archive.close()
    return out
