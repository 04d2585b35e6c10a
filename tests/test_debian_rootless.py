"""The system-packages layer built by a regular user, as CI runners build: maintainer scripts in the
rootless sandbox (a user namespace mapping /etc/subuid's range), and the same image as root builds.

The suite runs as root; these tests make two users (idempotently): `airbuild-ci`, with a range of
subordinate ids, and `airbuild-nosub`, without one, and run the CLI as them with `runuser`. The
interpreter running the suite may sit under a directory they cannot enter (/root is 0700): each build
runs in a private mount namespace in which such directories are made traversable (an overlay over
them, chmod o+x), so nothing on the host changes.

uuid-runtime's postinst runs adduser (a system user and group `uuidd`, written into /etc/passwd,
/etc/group and /etc/shadow, which the base has as root:shadow 0640) and gives /var/lib/libuuid to it.
"""

from __future__ import annotations

import io
import json
import os
import pwd
import shlex
import shutil
import stat
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from tests.helpers import REPO, run, run_cli
from tests.projects import make_project

USER = "airbuild-ci"
NO_IDS_USER = "airbuild-nosub"
IDS = 65536
PACKAGES = "uuid-runtime\n"


def _ranges(path: Path) -> list[tuple[str, int, int]]:
    out = []
    for line in path.read_text().splitlines() if path.exists() else []:
        parts = line.strip().split(":")
        if len(parts) == 3 and parts[1].isdigit() and parts[2].isdigit():
            out.append((parts[0], int(parts[1]), int(parts[2])))
    return out


def _ensure_user(name: str, with_ids: bool) -> None:
    try:
        pwd.getpwnam(name)
    except KeyError:
        proc = run(["useradd", "-m", "-K", "SUB_UID_COUNT=0", "-K", "SUB_GID_COUNT=0", name], check=False)
        if proc.returncode and proc.returncode != 9:  # 9: made meanwhile
            pytest.fail(f"cannot make the test user {name}: useradd said {proc.stderr.strip()}", pytrace=False)
    for kind in ("uid", "gid"):
        path = Path(f"/etc/sub{kind}")
        mine = [(start, count) for owner, start, count in _ranges(path) if owner == name]
        if with_ids and sum(c for _, c in mine) < IDS - 1:
            start = max([100000] + [s + c for _, s, c in _ranges(path)])
            proc = run(["usermod", f"--add-sub{kind}s", f"{start}-{start + IDS - 1}", name], check=False)
            if proc.returncode:
                pytest.fail(f"cannot give {name} subordinate {kind}s: usermod said {proc.stderr.strip()}",
                            pytrace=False)
        for start, count in mine if not with_ids else []:
            run(["usermod", f"--del-sub{kind}s", f"{start}-{start + count - 1}", name])


@pytest.fixture(scope="module")
def users():
    for tool in ("useradd", "usermod", "runuser", "unshare", "newuidmap", "newgidmap"):
        if shutil.which(tool) is None:
            pytest.fail(f"{tool} is not installed: run the suite with scripts/test (which installs uidmap)",
                        pytrace=False)
    _ensure_user(USER, with_ids=True)
    _ensure_user(NO_IDS_USER, with_ids=False)
    probe = run(["runuser", "-u", USER, "--", "unshare", "--user", "--map-root-user", "--map-auto", "--",
                 "cat", "/proc/self/uid_map"], cwd="/", check=False)
    if probe.returncode or len(probe.stdout.strip().splitlines()) < 2:
        pytest.fail(f"{USER} cannot map its subordinate ids (unprivileged user namespaces disabled?): "
                    f"{probe.stderr.strip() or probe.stdout.strip()}", pytrace=False)
    return USER, NO_IDS_USER


def _closed_directories(paths: list[Path]) -> list[Path]:
    """Directories on the way to `paths` others may not enter, top first."""
    out: list[Path] = []
    for path in paths:
        for directory in reversed(path.resolve().parents):
            if not os.stat(directory).st_mode & stat.S_IXOTH and directory not in out:
                out.append(directory)
    return out


def as_user(user: str, args: list[str], env: dict[str, str], scratch: Path, cwd: Path,
            readable: list[Path]) -> subprocess.CompletedProcess:
    """`args` run by `user` with only `env` (plus PATH and HOME), `readable` reachable."""
    mounts = []
    for i, directory in enumerate(_closed_directories([Path(sys.executable), *readable])):
        upper, work = scratch / f"open-{i}" / "upper", scratch / f"open-{i}" / "work"
        upper.mkdir(parents=True)
        work.mkdir()
        mounts.append(f"mount -t overlay overlay -o lowerdir={directory},upperdir={upper},workdir={work} "
                      f"{directory} && chmod o+x {directory}")
    home = pwd.getpwnam(user).pw_dir
    environment = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "HOME": home, **env}
    command = shlex.join(["runuser", "-u", user, "--", "env", "-i",
                          *(f"{k}={v}" for k, v in environment.items()), *args])
    script = " && ".join([*mounts, f"cd {shlex.quote(str(cwd))}", f"exec {command}"])
    return subprocess.run(["unshare", "--mount", "--propagation", "private", "--", "sh", "-c", script],
                          capture_output=True, text=True)


def user_dir(tmp_path: Path, user: str) -> Path:
    """A directory under /tmp the user owns (pytest's own is root's, 0700)."""
    path = Path(f"/tmp/airbuild-rootless-{tmp_path.name}-{user}")
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(mode=0o755)
    os.chown(path, pwd.getpwnam(user).pw_uid, pwd.getpwnam(user).pw_gid)
    return path


def give(tree: Path, user: str) -> None:
    entry = pwd.getpwnam(user)
    for directory, dirnames, filenames in os.walk(tree):
        for name in [".", *dirnames, *filenames]:
            os.lchown(os.path.join(directory, name), entry.pw_uid, entry.pw_gid)


def build_as(user: str, project: Path, store: Path, base: Path, scratch: Path) -> subprocess.CompletedProcess:
    return as_user(user, [sys.executable, "-m", "builder", "build", str(project), "--base", f"rootfs:{base}",
                          "--no-validate", "--json", "--locked"],
                   {"PYTHONPATH": str(REPO), "AIRBUILD_CACHE_DIR": str(store)}, scratch, project, [base, REPO])


def layer_members(store: Path, result: dict, rule: str) -> tuple[dict[str, tarfile.TarInfo], dict[str, str]]:
    """The layer's entries by path, and the text of its etc/passwd and etc/group."""
    digest = next(l["digest"] for l in result["layers"] if l["rule"] == rule)
    blob = store / "blobs" / "sha256" / digest.removeprefix("sha256:")
    with tarfile.open(fileobj=io.BytesIO(blob.read_bytes())) as tar:
        members = {m.name.rstrip("/"): m for m in tar.getmembers()}
        texts = {name: tar.extractfile(members[name]).read().decode() for name in ("etc/passwd", "etc/group")}
    return members, texts


def ids_of(table: str, name: str) -> int:
    return next(int(line.split(":")[2]) for line in table.splitlines() if line.startswith(name + ":"))


@pytest.fixture(scope="module")
def root_build(module_tmp, debian_rootfs):
    """The project built by root: (project with its astro.lock, store, result)."""
    work = module_tmp("rootless-root")
    project = make_project(work / "project")
    (project / "packages.txt").write_text(PACKAGES)
    proc = run_cli(["build", project, "--base", f"rootfs:{debian_rootfs}", "--no-validate", "--json"],
                   env={"AIRBUILD_CACHE_DIR": str(work / "store")}, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return project, work / "store", json.loads(proc.stdout)


def test_a_regular_user_builds_the_image_root_builds(users, root_build, debian_rootfs, tmp_path):
    user, _ = users
    project, root_store, root_result = root_build
    home = user_dir(tmp_path, user)
    _copied_project(root_build, home, user)
    proc = build_as(user, home / "project", home / "store", debian_rootfs, tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout)
    assert any("dpkg configured" in n and "bubblewrap" in n for n in result["notes"]), result["notes"]
    assert not any(n.startswith("warning") for n in result["notes"]), result["notes"]

    assert result["manifest_digest"] == root_result["manifest_digest"]

    # what the scripts made has the owners it has in the root build, as the image sees them
    members, texts = layer_members(home / "store", result, "system-packages")
    uuidd_uid, uuidd_gid = ids_of(texts["etc/passwd"], "uuidd"), ids_of(texts["etc/group"], "uuidd")
    assert uuidd_uid > 0 and uuidd_gid > 0
    libuuid = members["var/lib/libuuid"]
    assert (libuuid.uid, libuuid.gid) == (uuidd_uid, uuidd_gid)
    shadow = members["etc/shadow"]  # adduser rewrote it: it keeps the base's group
    assert (shadow.uid, shadow.gid, shadow.mode) == (0, ids_of(texts["etc/group"], "shadow"), 0o640)
    root_members, _ = layer_members(root_store, root_result, "system-packages")
    assert {n: (m.uid, m.gid, m.mode) for n, m in members.items()} == \
        {n: (m.uid, m.gid, m.mode) for n, m in root_members.items()}

    # nothing in the store the user does not own (a file left with a subordinate id could not be removed),
    # nothing left in its tmp/
    uid = pwd.getpwnam(user).pw_uid
    foreign = [os.path.join(d, n) for d, dirs, files in os.walk(home / "store") for n in dirs + files
               if os.lstat(os.path.join(d, n)).st_uid != uid]
    assert not foreign, foreign[:10]
    assert not [p for p in (home / "store" / "tmp").iterdir() if not p.name.endswith(".lock")]
    shutil.rmtree(home)


SCRIPT = """set -e
rm /etc/debian_version
rm -r /etc/skel
mkdir /etc/skel
echo new > /etc/skel/new
chown 42:42 /etc/skel/new
chmod 4750 /etc/skel/new
"""
SANDBOX = """
import json, sys
from pathlib import Path
from builder.debian.maintscripts import run_scripts
from builder.debian.rootless import rootless, take_back
from builder.layers.overlay import read_upper
lower, scratch = Path(sys.argv[1]), Path(sys.argv[2])
(scratch / "upper").mkdir(parents=True)
run_scripts(lower, scratch / "upper", scratch, sys.argv[3], {})
recorded = take_back(scratch / "upper") if rootless() else None
print(json.dumps([[i.path, i.kind, i.uid, i.gid, i.mode] for i in read_upper(scratch / "upper", recorded)]))
"""


def unpacked_rootfs(store: Path) -> Path:
    return next(p for p in (store / "rootfs").iterdir() if p.is_dir() and not p.name.endswith(".tmp"))


def test_deletes_become_whiteouts_and_owners_read_as_root_reads_them(users, root_build, debian_rootfs, tmp_path):
    """A script deletes a base file, replaces a base directory, chowns and sets a setuid bit: the user's upper
    directory (whiteouts as 0:0 devices, user.overlay.opaque, ids in the subordinate range) reads as root's."""
    user, _ = users
    _, root_store, _ = root_build
    as_root = run([sys.executable, "-c", SANDBOX, unpacked_rootfs(root_store), tmp_path / "root", SCRIPT],
                  env={"PYTHONPATH": str(REPO)}, check=False)
    assert as_root.returncode == 0, as_root.stderr[-3000:]
    expected = json.loads(as_root.stdout)
    assert ["etc/.wh.debian_version", "file", 0, 0, 0o644] in expected
    assert ["etc/skel/.wh..wh..opq", "file", 0, 0, 0o644] in expected
    assert ["etc/skel/new", "file", 42, 42, 0o4750] in expected

    home = user_dir(tmp_path, user)
    store = home / "store"
    proc = build_as(user, _copied_project(root_build, home, user), store, debian_rootfs, tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    proc = as_user(user, [sys.executable, "-c", SANDBOX, str(unpacked_rootfs(store)), str(home / "scratch"), SCRIPT],
                   {"PYTHONPATH": str(REPO)}, tmp_path / "sandbox", home, [REPO])
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert json.loads(proc.stdout) == expected
    shutil.rmtree(home)


def _copied_project(root_build, home: Path, user: str) -> Path:
    # .airbuild: the root build's stamp, which names its store (the stamp's check must not choke on it)
    shutil.copytree(root_build[0], home / "project", symlinks=True)
    give(home / "project", user)
    return home / "project"


def test_without_subordinate_ids_scripts_are_emulated_with_a_warning(users, root_build, debian_rootfs, tmp_path):
    _, user = users
    home = user_dir(tmp_path, user)
    proc = build_as(user, _copied_project(root_build, home, user), home / "store", debian_rootfs, tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr
    notes = json.loads(proc.stdout)["notes"]
    warning = next(n for n in notes if n.startswith("warning: maintainer scripts need a sandbox"))
    assert "/etc/subuid" in warning and user in warning and "uuid-runtime" in warning
    shutil.rmtree(home)
