"""A files rule's entries split into several layers, so that an edit re-tars one small layer, not them all.

Which layer a path goes to is a function of the path alone (CRC-32 of its name below the rule's source,
modulo the number of layers), and the number of layers of the number of files (one per FILES_PER_PART,
at most the rule's `split`): the layers, and so the image's digest, depend only on the inputs.
A project of a few hundred files keeps one layer.
"""

from __future__ import annotations

import zlib

from builder.project.tree import Entry

FILES_PER_PART = 256


def part_count(entries: list[Entry], split: int) -> int:
    files = sum(1 for e in entries if e.kind != "dir")
    return max(1, min(split, -(-files // FILES_PER_PART)))


def split_entries(entries: list[Entry], base: str, parts: int) -> list[list[Entry]]:
    """`entries` (sorted) in `parts` groups, each still sorted; empty groups are kept (they make no layer)."""
    groups: list[list[Entry]] = [[] for _ in range(parts)]
    cut = len(base) + 1 if base else 0
    for entry in entries:
        groups[zlib.crc32(entry.relpath[cut:].encode()) % parts].append(entry)
    return groups


def part_step(rule: str, index: int, parts: int) -> str:
    """The step name of one part: the rule's name first, as every step's (`dags:2-of-16`)."""
    return f"{rule}:{index + 1}-of-{parts}"
