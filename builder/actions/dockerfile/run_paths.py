"""Which project files a RUN instruction uses, read from its command's words.

Astro applies a Dockerfile's own instructions after its ONBUILD `COPY . .`, so a RUN may use
project files (`pip install ./include/mypkg`, `sh include/setup.sh`). A word that names a path
of the project (relative to the RUN's working directory, or absolute under the project's
workdir in the image) makes files visible to the RUN, in its key and in the filesystem it runs
on: a directory with everything under it; a file with the rest of its directory (a script or a
requirements file usually reads its neighbours), or alone at the project's top level. `.` (or
the workdir itself) is the whole project.
"""

from __future__ import annotations

import posixpath
import re
import shlex

from builder.project.dockerfile import Instruction
from builder.project.ignore import compile_pattern
from builder.project.tree import Entry, ProjectTree

_GLOB = re.compile(r"[*?\[]")
_EXTRAS = re.compile(r"\[[A-Za-z0-9_,.\- ]*\]$")  # pip's `./pkg[extra]`


def words(inst: Instruction) -> list[str]:
    if inst.json_form:
        return list(inst.args)
    text = " ".join(inst.args)
    try:
        return shlex.split(text, comments=False, posix=True)
    except ValueError:  # unbalanced quotes: the shell will say so; take the plain words
        return text.split()


def candidates(word: str) -> list[str]:
    """The path-like parts of a word: itself, an option's value (`--requirement=x`), a shell redirect target."""
    parts = [word]
    if "=" in word:
        parts.append(word.split("=", 1)[1])
    for separator in (";", "&&", "||", "|", "<", ">"):
        parts = [piece for part in parts for piece in part.split(separator)]
    return [p for p in parts if p and not p.startswith("-") and "://" not in p and "$" not in p]


def used_entries(inst: Instruction, tree: ProjectTree, cwd: str, project_dir: str) -> dict[str, Entry]:
    """The project entries the RUN's words name (directories with their contents), by path."""
    found: dict[str, Entry] = {}
    for word in words(inst):
        for text in candidates(word):
            relative = _project_relative(_EXTRAS.sub("", text), cwd, project_dir)
            if relative is not None:
                found.update(_select(tree, relative))
    return found


def _project_relative(text: str, cwd: str, project_dir: str) -> str | None:
    absolute = posixpath.normpath(text if text.startswith("/") else posixpath.join(cwd or "/", text))
    root = project_dir.rstrip("/") or "/"
    if absolute == root:
        return "."
    if not absolute.startswith(root.rstrip("/") + "/"):
        return None
    return absolute[len(root.rstrip("/")) + 1:]


def _select(tree: ProjectTree, relative: str) -> dict[str, Entry]:
    if relative == ".":
        return dict(tree.entries)
    if _GLOB.search(relative):
        regex = compile_pattern(relative)
        roots = [path for path in tree.entries if regex.match(path)]
    else:
        roots = [relative] if relative in tree.entries else []
    chosen: dict[str, Entry] = {}
    for root in roots:
        if tree.entries[root].kind != "dir" and "/" in root:
            root = posixpath.dirname(root)
        chosen[root] = tree.entries[root]
        if tree.entries[root].kind == "dir":
            chosen.update((e.relpath, e) for e in tree.select(root, None))
    return chosen
