"""Java KeyStore (JKS) files with their entries' creation dates set to SOURCE_DATE_EPOCH.

A JKS file records when each entry was added (milliseconds), so the Java trust store that
ca-certificates-java writes (`/etc/ssl/certs/java/cacerts`) differs from one build to the next.
The entries' dates are rewritten and the file's integrity digest computed again with the
store's password: Debian's `changeit` (/etc/default/cacerts) unless told otherwise. A file that
is not JKS, or whose digest that password does not reproduce, is left alone.

Format (sun.security.provider.JavaKeyStore): magic FEEDFEED, version, count; each entry a tag
(1 private key, 2 trusted certificate), an alias, the date, then the key and/or certificates;
last, SHA-1 over the password (UTF-16BE), "Mighty Aphrodite" and everything before it.
"""

from __future__ import annotations

import hashlib
import struct

MAGIC = b"\xfe\xed\xfe\xed"
PASSWORDS = ("changeit",)


def _digest(password: str, body: bytes) -> bytes:
    return hashlib.sha1(password.encode("utf-16-be") + b"Mighty Aphrodite" + body).digest()


def clamp_dates(data: bytes, epoch: int, passwords: tuple[str, ...] = PASSWORDS) -> bytes | None:
    """`data` with every entry dated `epoch`, or None when it is not a JKS file this can rewrite."""
    if len(data) < 32 or not data.startswith(MAGIC):
        return None
    body, digest = data[:-20], data[-20:]
    password = next((p for p in passwords if _digest(p, body) == digest), None)
    if password is None:
        return None
    out = bytearray(body)
    try:
        version, count = struct.unpack_from(">II", body, 4)
        offset = 12

        def skip_utf() -> None:
            nonlocal offset
            (length,) = struct.unpack_from(">H", body, offset)
            offset += 2 + length

        def skip_cert() -> None:
            nonlocal offset
            if version == 2:
                skip_utf()
            (length,) = struct.unpack_from(">I", body, offset)
            offset += 4 + length

        for _ in range(count):
            (tag,) = struct.unpack_from(">I", body, offset)
            offset += 4
            skip_utf()
            struct.pack_into(">q", out, offset, epoch * 1000)
            offset += 8
            if tag == 1:
                (length,) = struct.unpack_from(">I", body, offset)
                offset += 4 + length
                (chain,) = struct.unpack_from(">I", body, offset)
                offset += 4
                for _ in range(chain):
                    skip_cert()
            elif tag == 2:
                skip_cert()
            else:
                return None
    except struct.error:
        return None
    if offset != len(body):
        return None
    return bytes(out) + _digest(password, bytes(out))
