"""The `airbuild` entry point: a build handed to a warm build server when one runs, else run here.

Starting Python and importing what a build needs (pydantic, the engine, the registry client) costs
more than a small build itself. So, as Gradle's and Bazel's clients do, `build`, `plan` and `deploy` go to a
server that has it all imported (builder/cli/server.py): it forks one child per command, which takes
this process's stdin, stdout and stderr (passed over the socket), working directory, umask,
environment and arguments, runs the command as `airbuild` would here, and reports its exit code.
Ctrl-C and other signals are forwarded to that child's process group. A child is a fresh process
each time: nothing of one build is left for the next.

The first command starts the server (in the background, with its own session) and runs in this
process meanwhile. One server runs per user and per version: Python, its path and flags, and the
stat of airbuild's own source files and of the path's directories (a `pip install` changes a
site-packages directory) name its socket, so changed code gets a new server; an old one exits when
idle for IDLE_S. AIRBUILD_SERVER=0 runs every command here.

This module imports only what a client needs, never the rest of airbuild: modules built into the
interpreter or one C extension each (`_socket`, `_signal`, `marshal`, `fcntl`), not `socket`, `signal`
or `json`, whose Python halves import `enum` and `re` (10-40 ms on a busy 2-core machine; the whole
served command's budget is 100 ms). The request travels as `marshal` data: the server runs the same
interpreter (its version is part of the socket's name).
"""

from __future__ import annotations

import _signal
import _socket
import fcntl
import marshal
import os
import stat
import sys

SERVED = frozenset({"build", "plan", "deploy"})
IDLE_S = 300
LOG_LIMIT = 1 << 20  # server.log (a line per server and per command) starts again past this
PROTOCOL = 1


def main() -> int:
    argv = sys.argv[1:]
    if _served(argv):
        code = _via_server(argv)
        if code is not None:
            return code
    # The whole command line, here: only now, since it imports everything a command needs.
    from builder.cli.main import main as run_here
    return run_here(argv)


def _served(argv: list[str]) -> bool:
    if os.environ.get("AIRBUILD_SERVER", "1") == "0" or not sys.executable:
        return False
    command = next((a for a in argv if not a.startswith("-")), None)
    return command in SERVED and "--help" not in argv and "-h" not in argv


# -- where the server is ---------------------------------------------------------------------------

def runtime_dir() -> str | None:
    """A directory only this user can use (created 0700), or None when that cannot be had."""
    uid = os.getuid()
    base = os.environ.get("XDG_RUNTIME_DIR")
    path = os.path.join(base, "airbuild") if base and os.path.isdir(base) else f"/tmp/airbuild-{uid}"
    try:
        os.mkdir(path, 0o700)
    except FileExistsError:
        pass
    except OSError:
        return None
    st = os.lstat(path)
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != uid or st.st_mode & 0o077:
        return None  # someone else's, or open to others: no server
    return path


def import_path() -> list[str]:
    """sys.path without the working directory `python -m` puts first (the server serves every directory), with
    the directory airbuild itself came from."""
    path = sys.path[1:] if sys.path and sys.path[0] in ("", os.getcwd()) else list(sys.path)
    home = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    return path if home in path else [home, *path]


def version_key() -> str:
    """What the server's code and environment are: changed source, interpreter, path or flags, new key."""
    package = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    path = import_path()
    parts = [str(PROTOCOL), sys.executable, sys.version, repr(sys.flags), repr(sys.warnoptions), package,
             repr(path), str(os.getuid())]
    for entry in path:
        try:
            st = os.stat(entry or ".")
            parts.append(f"{entry}\0{st.st_mtime_ns}\0{st.st_ino}")
        except OSError:
            parts.append(f"{entry}\0-")
    for directory, dirs, files in os.walk(package):
        dirs[:] = sorted(d for d in dirs if d != "__pycache__")
        for name in sorted(files):
            if name.endswith(".py"):
                st = os.stat(os.path.join(directory, name))
                parts.append(f"{directory}/{name}\0{st.st_mtime_ns}\0{st.st_size}\0{st.st_ino}")
    return _sha256("\n".join(parts).encode())[:20]


def _sha256(data: bytes) -> str:
    try:
        from _sha256 import sha256  # the built-in module: hashlib's OpenSSL import costs a few ms a command
    except ImportError:
        from hashlib import sha256  # Python builds without it (3.12 renamed it): the usual way
    return sha256(data).hexdigest()


def paths() -> tuple[str, str] | None:
    """(socket, lock file) of this version's server."""
    directory = runtime_dir()
    if directory is None:
        return None
    key = version_key()
    sock_path = os.path.join(directory, f"server-{key}.sock")
    if len(os.fsencode(sock_path)) > 100:  # a Unix socket's path has 107 bytes at most
        return None
    return sock_path, os.path.join(directory, f"server-{key}.lock")


# -- talking to it ---------------------------------------------------------------------------------

def _via_server(argv: list[str]) -> int | None:
    """The command's exit code from the server, or None: run it here (no server yet, or it could not start it)."""
    where = paths()
    if where is None:
        return None
    sock_path, lock_path = where
    conn = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
    try:
        try:
            conn.connect(sock_path)
        except OSError:
            _start_server(sock_path, lock_path)
            return None
        try:
            _send_request(conn, argv)
            child = _read_pid(conn)
        except OSError:
            return None
        if child is None:
            return None  # the server went away before the command started: nothing ran
        return _wait(conn, child)
    finally:
        conn.close()


def encode_request(argv: list[str]) -> bytes:
    """What the server needs to run the command as this process would (decoded by server._take_request)."""
    umask = os.umask(0)
    os.umask(umask)
    request = {"argv0": sys.argv[0], "argv": argv, "cwd": os.getcwd(), "env": dict(os.environ), "umask": umask,
               "streams": [[s.encoding, s.errors] if s is not None and hasattr(s, "encoding") else None
                           for s in (sys.stdin, sys.stdout, sys.stderr)]}
    return marshal.dumps(request)


def _send_request(conn: _socket.socket, argv: list[str]) -> None:
    body = encode_request(argv)
    fds = b"".join(fd.to_bytes(4, sys.byteorder) for fd in (0, 1, 2))  # SCM_RIGHTS carries C ints
    conn.sendmsg([len(body).to_bytes(8, "big")], [(_socket.SOL_SOCKET, _socket.SCM_RIGHTS, fds)])
    conn.sendall(body)


def _read_pid(conn: _socket.socket) -> int | None:
    data = _read_exact(conn, 9)
    if data is None or data[:1] != b"P":
        return None
    return int.from_bytes(data[1:], "big")


def _read_exact(conn: _socket.socket, size: int) -> bytes | None:
    data = b""
    while len(data) < size:
        chunk = conn.recv(size - len(data))
        if not chunk:
            return None
        data += chunk
    return data


def _wait(conn: _socket.socket, child: int) -> int:
    """Forward signals to the command's process group until it reports its exit code."""
    forwarded: list[int] = []

    def forward(signo, _frame):
        forwarded.append(signo)
        try:
            os.killpg(child, signo)
        except ProcessLookupError:
            pass

    for signo in (_signal.SIGINT, _signal.SIGTERM, _signal.SIGHUP, _signal.SIGQUIT):
        _signal.signal(signo, forward)
    try:
        data = _read_exact(conn, 2)
    except OSError:
        data = None
    if data is not None and data[:1] == b"X":
        return data[1]
    if forwarded:  # killed by what we passed on: end the same way
        _signal.signal(forwarded[-1], _signal.SIG_DFL)
        os.kill(os.getpid(), forwarded[-1])
    print("airbuild: error: the build server's process for this command ended without an exit status "
          "(AIRBUILD_SERVER=0 runs commands without the server)", file=sys.stderr)
    return 70


def _start_server(sock_path: str, lock_path: str) -> None:
    """Start this version's server in the background, unless one holds its lock (starting, or stopping)."""
    try:
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    except OSError:
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        return
    os.close(fd)  # released: the server takes it
    log = os.path.join(os.path.dirname(sock_path), "server.log")
    try:
        if os.stat(log).st_size > LOG_LIMIT:
            os.unlink(log)
    except OSError:
        pass
    code = ("import sys, marshal; sys.path[:] = marshal.loads(bytes.fromhex(sys.argv[1])); "
            "from builder.cli.server import serve; serve(sys.argv[2], sys.argv[3], sys.argv[4])")
    try:
        os.posix_spawn(sys.executable, [sys.executable, "-c", code, marshal.dumps(import_path()).hex(), sock_path,
                                        lock_path, os.path.dirname(os.path.dirname(os.path.abspath(__file__)))],
                       dict(os.environ),
                       file_actions=[(os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
                                     (os.POSIX_SPAWN_OPEN, 1, log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600),
                                     (os.POSIX_SPAWN_DUP2, 1, 2)],
                       setsid=True)
    except OSError:
        pass  # no server: this and later commands run in their own process
