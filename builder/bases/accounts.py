"""Who owns project files in the image: names resolved through the base's /etc/passwd and /etc/group."""

from __future__ import annotations

from dataclasses import dataclass

from builder.layers.read import find_files
from builder.bases.image import BaseImage
from builder.common.errors import InputError
from builder.store.store import Store

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
    """Name -> id maps from the base's /etc/passwd and /etc/group."""
    found = find_files(store, base.layers, lambda path: path in FILES, cache_name="accounts")
    return {"passwd": _parse(found.get("etc/passwd", b"")), "group": _parse(found.get("etc/group", b""))}


def _parse(content: bytes) -> dict[str, int]:
    out = {}
    for line in content.decode("utf-8", "replace").splitlines():
        fields = line.split(":")
        if len(fields) >= 3 and fields[2].isdigit():
            out.setdefault(fields[0], int(fields[2]))
    return out
