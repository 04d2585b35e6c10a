"""`/etc/ld.so.cache` without running ldconfig: glibc's "glibc-ld.so.cache1.1" format.

The cache maps a library's soname to the path of its soname link. Entries are sorted
the way glibc's binary search expects (descending by `_dl_cache_libcmp`, which compares
digit runs as numbers). An image layer that adds libraries gets a cache holding the
base's entries plus its own, exactly as `ldconfig` run in the image would list them.
"""

from __future__ import annotations

import functools
import struct
from dataclasses import dataclass

MAGIC = b"glibc-ld.so.cache1.1"
HEADER = struct.Struct("<20sIIB3xI12x")   # magic+version, nlibs, len_strings, flags, extension offset
ENTRY = struct.Struct("<iIIIQ")            # flags, key, value, osversion, hwcap
ENDIAN_LITTLE = 2
FLAG_ELF_LIBC6 = 0x0003
MACHINE_FLAGS = {62: 0x0300, 183: 0x0a00}  # EM_X86_64, EM_AARCH64
DT_SONAME, DT_STRTAB, PT_LOAD, PT_DYNAMIC = 14, 5, 1, 2


@dataclass(frozen=True)
class CacheEntry:
    flags: int
    key: str      # soname
    value: str    # path of the soname link
    hwcap: int = 0


def parse_cache(data: bytes) -> list[CacheEntry]:
    """Entries of a new-format cache (an old-format prefix is skipped); [] when unreadable."""
    start = data.find(MAGIC)
    if start < 0 or len(data) < start + HEADER.size:
        return []
    _, count, _, _, _ = HEADER.unpack_from(data, start)
    out = []
    for i in range(count):
        flags, key, value, _, hwcap = ENTRY.unpack_from(data, start + HEADER.size + i * ENTRY.size)
        out.append(CacheEntry(flags, _cstr(data, start + key), _cstr(data, start + value), hwcap))
    return out


def write_cache(entries: list[CacheEntry]) -> bytes:
    unique = sorted(set(entries), key=functools.cmp_to_key(_order))
    strings = bytearray()
    offsets: dict[str, int] = {}
    table_start = HEADER.size + len(unique) * ENTRY.size

    def offset(text: str) -> int:
        if text not in offsets:
            offsets[text] = table_start + len(strings)
            strings.extend(text.encode() + b"\0")
        return offsets[text]

    body = b"".join(ENTRY.pack(e.flags, offset(e.key), offset(e.value), 0, e.hwcap) for e in unique)
    return HEADER.pack(MAGIC, len(unique), len(strings), ENDIAN_LITTLE, 0) + body + bytes(strings)


def _order(a: CacheEntry, b: CacheEntry) -> int:
    res = libcmp(b.key, a.key)           # descending, as ldconfig sorts
    if res:
        return res
    if a.flags != b.flags:
        return -1 if a.flags > b.flags else 1
    if a.hwcap != b.hwcap:
        return -1 if a.hwcap > b.hwcap else 1
    return (a.value > b.value) - (a.value < b.value)


def libcmp(p1: str, p2: str) -> int:
    """glibc's _dl_cache_libcmp: runs of digits compare as numbers."""
    i = j = 0
    while i < len(p1):
        c1, c2 = p1[i], p2[j] if j < len(p2) else ""
        if c1.isdigit():
            if c2 and c2.isdigit():
                i2, j2 = i, j
                while i2 < len(p1) and p1[i2].isdigit():
                    i2 += 1
                while j2 < len(p2) and p2[j2].isdigit():
                    j2 += 1
                v1, v2 = int(p1[i:i2]), int(p2[j:j2])
                if v1 != v2:
                    return v1 - v2
                i, j = i2, j2
                continue
            return 1
        if c2 and c2.isdigit():
            return -1
        if c1 != c2:
            return ord(c1) - (ord(c2) if c2 else 0)
        i += 1
        j += 1
    return 0 - (ord(p2[j]) if j < len(p2) else 0)


def _cstr(data: bytes, offset: int) -> str:
    end = data.index(b"\0", offset)
    return data[offset:end].decode("utf-8", "replace")


def elf_soname(data: bytes) -> tuple[str | None, int] | None:
    """(soname, cache flags) of an ELF shared object, None when `data` is not one."""
    if data[:4] != b"\x7fELF" or len(data) < 64:
        return None
    is64, little = data[4] == 2, data[5] == 1
    end = "<" if little else ">"
    e_type, e_machine = struct.unpack_from(end + "HH", data, 16)
    if e_type != 3:  # ET_DYN
        return None
    if is64:
        phoff, = struct.unpack_from(end + "Q", data, 32)
        phentsize, phnum = struct.unpack_from(end + "HH", data, 54)
        ph = struct.Struct(end + "IIQQQQQQ")  # type, flags, offset, vaddr, paddr, filesz, memsz, align
        dyn = struct.Struct(end + "qQ")
    else:
        phoff, = struct.unpack_from(end + "I", data, 28)
        phentsize, phnum = struct.unpack_from(end + "HH", data, 42)
        ph = struct.Struct(end + "IIIIIIII")  # type, offset, vaddr, paddr, filesz, memsz, flags, align
        dyn = struct.Struct(end + "iI")
    loads, dynamic = [], None
    for i in range(phnum):
        fields = ph.unpack_from(data, phoff + i * phentsize)
        if is64:
            p_type, _, offset, vaddr, _, filesz, _, _ = fields
        else:
            p_type, offset, vaddr, _, filesz, _, _, _ = fields
        if p_type == PT_LOAD:
            loads.append((vaddr, offset, filesz))
        elif p_type == PT_DYNAMIC:
            dynamic = (offset, filesz)
    flags = FLAG_ELF_LIBC6 | (MACHINE_FLAGS.get(e_machine, 0) if is64 else 0)
    if dynamic is None:
        return None, flags
    soname_offset = strtab = None
    for pos in range(dynamic[0], dynamic[0] + dynamic[1], dyn.size):
        tag, value = dyn.unpack_from(data, pos)
        if tag == 0:
            break
        if tag == DT_SONAME:
            soname_offset = value
        elif tag == DT_STRTAB:
            strtab = value
    if soname_offset is None or strtab is None:
        return None, flags
    for vaddr, offset, filesz in loads:
        if vaddr <= strtab < vaddr + filesz:
            return _cstr(data, strtab - vaddr + offset + soname_offset), flags
    return None, flags
