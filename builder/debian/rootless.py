"""The sandbox as a regular user: a user namespace whose root is the user and whose other ids are the
user's range in /etc/subuid and /etc/subgid (`unshare --map-root-user --map-auto`, through newuidmap).

On the host, a file the scripts gave uid 42 is owned by the 42nd id of that range, and a file the user
wrote outside the namespace is owned by the user (uid 0 inside). Layers record ids as the image sees
them, so ownership is always set and read from inside the namespace: `set_owners` gives the files
airbuild wrote their owners before the scripts run, `take_back` records every owner and mode of a
tree as the namespace sees them, then hands the tree to the user (uid 0 inside), so that reading the
bodies and removing the tree need no privilege.
"""

from __future__ import annotations

import functools
import json
import os
import pwd
import shutil
import subprocess
import sys
from pathlib import Path

from builder.common.errors import BuildError
from builder.layers.overlay import Recorded

UNSHARE = ("unshare", "--user", "--map-root-user", "--map-auto")
IDS_NEEDED = 65536  # uid 0 and the ids Debian packages give system users and `nobody` (65534)

# run inside the namespace by this interpreter; no imports of airbuild, reads a JSON payload on stdin
_SET_OWNERS = """
import json, os, stat, sys
for path, uid, gid, mode, mtime in json.load(sys.stdin):
    os.lchown(path, uid, gid)
    if mode is not None and not stat.S_ISLNK(os.lstat(path).st_mode):
        os.chmod(path, mode)  # after chown, which clears setuid and setgid bits
    if mtime is not None:
        os.utime(path, (mtime, mtime), follow_symlinks=False)
"""
_TAKE_BACK = """
import json, os, stat, sys
root = sys.argv[1]
seen = {}
for directory, dirnames, filenames in os.walk(root):
    for name in dirnames + filenames:
        path = os.path.join(directory, name)
        st = os.lstat(path)
        try:  # chown drops it; read here, where a namespaced capability reads as the image has it
            cap = os.getxattr(path, "security.capability", follow_symlinks=False).hex()
        except OSError:
            cap = None
        seen[os.path.relpath(path, root)] = [st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode), cap]
        if not stat.S_ISCHR(st.st_mode):
            os.lchown(path, 0, 0)
        if stat.S_ISDIR(st.st_mode):
            os.chmod(path, 0o755)
        elif stat.S_ISREG(st.st_mode):
            os.chmod(path, 0o644)
json.dump(seen, sys.stdout)
"""


def rootless() -> bool:
    return os.geteuid() != 0


def _first_range(path: Path, user: str, uid: int) -> int:
    """How many ids the user's first range in /etc/subuid (or subgid) holds: the one --map-auto maps."""
    try:
        lines = path.read_text().splitlines()
    except OSError:
        return 0
    for line in lines:
        parts = line.strip().split(":")
        if len(parts) == 3 and parts[0] in (user, str(uid)) and parts[2].isdigit():
            return int(parts[2])
    return 0


@functools.cache
def unusable() -> str | None:
    """Why this user cannot map the ids the scripts use (None when it can)."""
    uid = os.geteuid()
    try:
        user = pwd.getpwuid(uid).pw_name
    except KeyError:
        user = str(uid)
    for tool in ("newuidmap", "newgidmap"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed (apt-get install uidmap)"
    for name in ("subuid", "subgid"):
        count = _first_range(Path("/etc") / name, user, uid)
        if count < IDS_NEEDED - 1:
            return (f"user {user} has {count} ids in /etc/{name}, and needs {IDS_NEEDED - 1} "
                    f"(usermod --add-sub{name[3:]}s 100000-165535 {user})")
    return None


def _inside(code: str, args: list[str], payload: object | None = None) -> str:
    proc = subprocess.run([*UNSHARE, "--", sys.executable, "-I", "-c", code, *args],
                          input=json.dumps(payload) if payload is not None else "",
                          capture_output=True, text=True)
    if proc.returncode:
        raise BuildError(f"setting file owners in the user namespace failed: {proc.stderr.strip()[-1000:]}")
    return proc.stdout


def set_owners(entries: list[tuple[Path, int, int, int | None, int | None]]) -> None:
    """In order, give each path (uid, gid) as the namespace sees them, then its mode and mtime when not None."""
    if entries:
        _inside(_SET_OWNERS, [], [[str(p), uid, gid, mode, mtime] for p, uid, gid, mode, mtime in entries])


def take_back(root: Path) -> dict[str, Recorded]:
    """Every entry under `root` (relative path: owner, mode and file capabilities as the namespace sees
    them), then all of it owned by the user with modes it can read and remove."""
    if not root.exists():
        return {}
    seen = json.loads(_inside(_TAKE_BACK, [str(root)]))
    return {path: Recorded(uid, gid, mode, bytes.fromhex(cap) if cap else None)
            for path, (uid, gid, mode, cap) in seen.items()}
