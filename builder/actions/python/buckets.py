"""Which of the Python layers each distribution goes in, and who keeps a file several wheels ship.

The requirements' distributions are spread over BUCKETS layers by a stable hash of their
(normalised) name, so adding, removing or moving one distribution rebuilds only its own
layer, and every layer is a function of the lock alone (never of what was built before).
Empty buckets make no layer.

pip installs in one order and, where wheels share a file, the one installed last wins
(builder.actions.python.install_order). Split over layers, each shared file is kept only in
the layer of its winner and left out of the others, so the stacked layers hold exactly
what one `pip install` leaves whatever their order. A bucket's key therefore names its
distributions and each shared file it touches with its winner.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from builder.actions.python.wheel_files import WheelFiles

BUCKETS = 16


def bucket_of(name: str) -> int:
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:4], "big") % BUCKETS


@dataclass(frozen=True)
class Bucket:
    index: int
    names: tuple[str, ...]                     # its distributions, in pip's install order
    shared: tuple[tuple[str, str], ...]        # (path, winner) of each shared file one of its wheels ships
    drop: tuple[str, ...]                      # shared files another bucket's winner keeps

    def to_json(self) -> dict:
        return {"index": self.index, "names": list(self.names), "shared": [list(s) for s in self.shared],
                "drop": list(self.drop)}

    @classmethod
    def from_json(cls, data: dict) -> "Bucket":
        return cls(data["index"], tuple(data["names"]), tuple((p, w) for p, w in data["shared"]), tuple(data["drop"]))


def buckets(order: list[str], files: dict[str, WheelFiles]) -> list[Bucket]:
    """The non-empty buckets, by index, for distributions installed in `order` with these files."""
    shippers: dict[str, list[str]] = {}
    for name in order:
        for path in files[name].paths:
            shippers.setdefault(path, []).append(name)
    winner = {path: names[-1] for path, names in shippers.items() if len(names) > 1}
    members: dict[int, list[str]] = {}
    for name in order:
        members.setdefault(bucket_of(name), []).append(name)
    out = []
    for index in sorted(members):
        names = members[index]
        inside = set(names)
        shared = sorted((path, winner[path]) for path in winner if inside.intersection(shippers[path]))
        drop = tuple(path for path, who in shared if who not in inside)
        out.append(Bucket(index, tuple(names), tuple(shared), drop))
    return out
