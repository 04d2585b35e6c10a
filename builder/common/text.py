"""A project's text file read as UTF-8, or an input error naming the file and the line of the first bad byte."""

from __future__ import annotations

from pathlib import Path

from builder.common.errors import InputError


def read_utf8(path: Path, what: str | None = None) -> str:
    """`path`'s text; an InputError (exit 2) for bytes that are not UTF-8 or a file that cannot be read."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise InputError(f"cannot read{' the ' + what if what else ''}: {exc.strerror}", path=path) from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise InputError(f"not UTF-8 text (byte 0x{data[exc.start]:02x} at offset {exc.start}); save it as UTF-8",
                         path=path, line=line) from None
