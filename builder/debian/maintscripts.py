"""Maintainer scripts run as dpkg runs them, in a bubblewrap sandbox over the image's own filesystem.

The packages are unpacked by airbuild (builder.debian.layer) and recorded as dpkg leaves them after
`dpkg --unpack`: status `install ok unpacked`, their trigger interests registered. The sandbox's root
is an overlay: the image below (the base and the layers under this rule, unpacked once per machine)
as the lower directory, the unpacked packages as the upper one. Inside, as uid 0 with Docker's
default capabilities, no network, `DEBIAN_FRONTEND=noninteractive` (debconf's defaults), a driver
runs each `preinst install` (or `upgrade OLD`) in dependency order, activates the triggers the
unpack would have (`ldconfig`, file triggers such as fontconfig's), then `dpkg --configure --pending`,
which runs every `postinst configure` in dpkg's own dependency order and then the triggers
(`update-ca-certificates`, the Java trust store of ca-certificates-java...).

What the scripts change is left in the upper directory, which becomes the layer: its entries read back
(whiteouts for what they deleted) and normalised as RUN layers are (builder.layers.normalise).

The overlay is mounted in a private mount namespace (`unshare --mount`; as a regular user also
`--user --map-root-user --map-auto`, which needs unprivileged overlay mounts, newuidmap and a range
of ids in /etc/subuid and /etc/subgid: builder.debian.rootless), so it disappears with the run. As a
regular user a small layer between the two gives the base's files their owners (builder.debian.base_owners).
"""

from __future__ import annotations

import contextlib
import functools
import os
import shutil
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from builder.common.errors import BuildError
from builder.common.progress import announce
from builder.debian import rootless
from builder.debian.control import field_of, relations
from builder.debian.layer import Package

READY = "airbuild-sandbox-ready"
PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
# Docker's default set: what `apt-get install` in a Dockerfile's RUN has
CAPABILITIES = ("CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD", "CAP_NET_RAW",
                "CAP_SETGID", "CAP_SETUID", "CAP_SETFCAP", "CAP_SETPCAP", "CAP_NET_BIND_SERVICE",
                "CAP_SYS_CHROOT", "CAP_KILL", "CAP_AUDIT_WRITE")
TIMEOUT_S = 3600
# not --unshare-all: its user namespace would map uid 0 alone, and scripts chown to system users
UNSHARE = ("--unshare-net", "--unshare-pid", "--unshare-ipc", "--unshare-uts", "--unshare-cgroup-try")


@dataclass
class Configured:
    log: str                           # what dpkg and the scripts printed
    ran: list[str] = field(default_factory=list)  # packages whose scripts ran


@functools.cache
def unusable() -> str | None:
    """Why the sandbox cannot run here (None when it can): bwrap over an overlay mounted in a namespace."""
    if shutil.which("bwrap") is None:
        return "bubblewrap is not installed (apt-get install bubblewrap)"
    if shutil.which("unshare") is None:
        return "unshare (util-linux) is not installed"
    if rootless.rootless() and (why := rootless.unusable()) is not None:
        return f"as a regular user, the sandbox needs ids to map: {why}"
    with tempfile.TemporaryDirectory(prefix="airbuild-probe-") as tmp:
        dirs = [Path(tmp) / d for d in ("lower", "upper", "work", "merged")]
        for d in dirs:
            d.mkdir()
        (dirs[0] / "owned").touch()
        # the chown: scripts give files to system users, which a namespace mapping one uid refuses
        proc = subprocess.run(_wrapper([dirs[0]], *dirs[1:]) + ["bwrap", "--ro-bind", "/", "/", "--bind", str(dirs[3]), "/mnt",
                                                 *UNSHARE, "--die-with-parent", "chown", "1:1", "/mnt/owned"],
                              capture_output=True, text=True, timeout=60)
        if rootless.rootless():  # the file owned by a mapped id: the user can remove it only from the namespace
            with contextlib.suppress(BuildError):
                rootless.take_back(Path(tmp))
    if proc.returncode:
        return f"bwrap over an overlay did not start: {(proc.stderr.strip() or f'exit {proc.returncode}')[-300:]}"
    return None


def _wrapper(lowers: list[Path], upper: Path, work: Path, merged: Path) -> list[str]:
    """Mount the overlay (`lowers` top first) in a private mount namespace, then exec the rest of the command line."""
    user = [] if not rootless.rootless() else ["--user", "--map-root-user", "--map-auto"]
    options = (f"lowerdir={':'.join(str(p) for p in lowers)},upperdir={upper},workdir={work}"
               + ("" if not user else ",userxattr"))
    return (["unshare", "--mount", "--propagation", "private", *user, "--", "sh", "-c",
             'mount -t overlay overlay -o "$1" "$2" || exit 97; shift 2; exec "$@"', "sh", options, str(merged)])


def preinst_order(packages: list[Package]) -> list[Package]:
    """Pre-Depends and Depends before their dependants (a stable topological order; cycles broken by name)."""
    by_name = {p.name: p for p in packages}
    needs: dict[str, list[str]] = {}
    for package in packages:
        wanted = []
        for name in ("Pre-Depends", "Depends"):
            value = field_of(package.deb.control, name)
            for clause in relations(value, package.arch) if value else []:
                wanted += [dep.name for dep in clause if dep.name in by_name and dep.name != package.name]
        needs[package.name] = wanted
    out: list[Package] = []
    state: dict[str, int] = {}

    def visit(name: str) -> None:
        if state.get(name):
            return
        state[name] = 1
        for dep in needs[name]:
            visit(dep)
        state[name] = 2
        out.append(by_name[name])

    for name in sorted(by_name):
        visit(name)
    return out


def driver(packages: list[Package], upgrades: dict[str, str], triggers: list[str]) -> str:
    """The shell script the sandbox runs."""
    lines = ["set -e", f"echo {READY}", "cd /"]
    for package in preinst_order(packages):
        if "preinst" not in package.deb.control_files:
            continue
        old = upgrades.get(package.name)
        args = f"upgrade '{old}'" if old else "install"
        lines.append(f"DPKG_MAINTSCRIPT_PACKAGE='{package.name}' DPKG_MAINTSCRIPT_NAME=preinst "
                     f"DPKG_MAINTSCRIPT_ARCH='{package.arch}' DPKG_MAINTSCRIPT_PACKAGE_REFCOUNT=1 "
                     f"/var/lib/dpkg/info/{package.info_name}.preinst {args}")
    for name in triggers:
        lines.append(f"dpkg-trigger --no-await '{name}'")
    lines += ["dpkg --configure --pending", "dpkg --triggers-only --pending", ""]
    return "\n".join(lines)


def sandbox_command(lower: Path, upper: Path, scratch: Path, binds: tuple[tuple[Path, str], ...] = (),
                    owners: Path | None = None) -> list[str]:
    """The command prefix that runs a program as root (Docker's default capabilities, no network) with the
    overlay of `lower` and `upper` as its root, `binds` (host directory, path inside) mounted read-write;
    `owners`: a layer over `lower` (builder.debian.base_owners)."""
    work, merged = scratch / "work", scratch / "merged"
    work.mkdir(parents=True, exist_ok=True)
    merged.mkdir(parents=True, exist_ok=True)
    bwrap = ["bwrap", "--bind", str(merged), "/", "--dev", "/dev", "--proc", "/proc", "--tmpfs", "/tmp"]
    for source, inside in binds:
        bwrap += ["--bind", str(source), inside]
    bwrap += [*UNSHARE, "--hostname", "airbuild", "--die-with-parent", "--new-session", "--chdir", "/"]
    for cap in CAPABILITIES:
        bwrap += ["--cap-add", cap]
    return _wrapper([owners, lower] if owners is not None else [lower], upper, work, merged) + bwrap


def run_scripts(lower: Path, upper: Path, scratch: Path, script: str, env: dict[str, str],
                owners: Path | None = None, packages: int = 0) -> str:
    """Run `script` as root in the sandbox over lower(+owners)+upper; what it printed. BuildError when it fails.
    `packages`: how many dpkg configures, for the progress lines."""
    scripts = scratch / "scripts"
    scripts.mkdir(parents=True, exist_ok=True)
    (scripts / "configure.sh").write_text(script)
    environment = {"PATH": PATH, "HOME": "/root", "LANG": "C.UTF-8", **env,
                   "DEBIAN_FRONTEND": "noninteractive", "DEBCONF_NONINTERACTIVE_SEEN": "true"}
    command = sandbox_command(lower, upper, scratch, ((scripts, "/tmp/airbuild-scripts"),), owners) + \
        ["/bin/sh", "/tmp/airbuild-scripts/configure.sh"]
    log = scratch / "log"
    progress = _ConfigureProgress(packages)
    with open(log, "wb") as out, subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                                  stderr=subprocess.STDOUT, env=environment) as proc:
        timed_out = threading.Event()
        timer = threading.Timer(TIMEOUT_S, lambda: (timed_out.set(), proc.kill()))
        timer.start()
        try:
            for line in proc.stdout:
                out.write(line)
                progress.line(line)
        finally:
            timer.cancel()
        returncode = proc.wait()
    if timed_out.is_set():
        raise BuildError(f"the maintainer scripts ran longer than {TIMEOUT_S} s")
    progress.done()
    text = log.read_text(encoding="utf-8", errors="replace")
    if returncode:
        if READY not in text:
            raise BuildError(f"the sandbox for maintainer scripts did not start: {text.strip()[-1500:]}")
        raise BuildError(f"a maintainer script failed (exit {returncode}); dpkg said:\n{first_failure(text)}")
    return text.replace(READY + "\n", "", 1)


class _ConfigureProgress:
    """`configuring packages: N of M (NAME)` on stderr as dpkg sets each up, at most every few seconds."""

    EVERY_S = 3.0

    def __init__(self, total: int):
        self.total, self.count = total, 0
        self.started = self.shown = time.monotonic()

    def line(self, raw: bytes) -> None:
        if not raw.startswith(b"Setting up "):
            return
        self.count += 1
        if time.monotonic() - self.shown >= self.EVERY_S:
            self.shown = time.monotonic()
            name = raw[len(b"Setting up "):].split(b" ", 1)[0].decode(errors="replace")
            of = f" of {self.total}" if self.total else ""
            announce(f"configuring packages: {self.count}{of} ({name})")

    def done(self) -> None:
        if self.count:
            announce(f"configured {self.count} packages in {time.monotonic() - self.started:.1f} s")


def first_failure(log: str, context: int = 25) -> str:
    """The lines before dpkg's first `error processing` (where the cause is), and its closing summary."""
    lines = log.strip().splitlines()
    at = next((i for i, line in enumerate(lines) if "error processing" in line), None)
    if at is None:
        return "\n".join(lines[-context:])
    summary = next((i for i, line in enumerate(lines) if line.startswith("Errors were encountered")), len(lines))
    head = lines[max(0, at - context):at + 2]
    return "\n".join(head + (["..."] + lines[summary:] if summary > at + 2 else []))
