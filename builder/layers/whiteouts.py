"""OCI whiteouts: the entries of a layer that delete files of the layers below it.

`DIR/.wh.NAME` deletes DIR/NAME (and all below it); `DIR/.wh..wh..opq` makes DIR opaque: nothing
the layers below put in it shows. Reading, unpacking and normalising layers all ask this module.
"""

from __future__ import annotations

import posixpath
from dataclasses import dataclass

WHITEOUT = ".wh."
OPAQUE = ".wh..wh..opq"


@dataclass(frozen=True)
class Whiteout:
    directory: str            # where the marker is
    target: str | None        # the path it deletes; None: the directory is opaque

    @property
    def opaque(self) -> bool:
        return self.target is None


def whiteout(path: str) -> Whiteout | None:
    """What the layer entry at `path` (relative, normalised) deletes, or None for an ordinary entry."""
    directory, name = posixpath.split(path)
    if name == OPAQUE:
        return Whiteout(directory, None)
    if name.startswith(WHITEOUT):
        return Whiteout(directory, posixpath.join(directory, name[len(WHITEOUT):]))
    return None


def is_whiteout(path: str) -> bool:
    return posixpath.basename(path).startswith(WHITEOUT)
