"""The build server: airbuild imported once, one forked child per command (see builder/cli/client.py).

The server holds its lock file for its whole life (one server per socket), listens on a socket only
its user can reach, and forks on every connection; it never runs a command itself, so it holds no
state of any build. The child becomes the command's process: the client's stdin, stdout and stderr,
working directory, umask, environment and arguments, its own process group (the client forwards
signals to it), the signal dispositions of a fresh interpreter. If the client goes away before the
command ends, the child is interrupted as Ctrl-C would (its cleanups run). The server exits when idle
for IDLE_S, or when its socket is no longer its own.
"""

from __future__ import annotations

import atexit
import fcntl
import gc
import io
import marshal
import os
import selectors
import signal
import socket
import sys
import threading
import time
import traceback

from builder.cli.client import IDLE_S
from builder.project import tree
from builder.project.journal import Journal


def serve(sock_path: str, lock_path: str, package: str) -> None:
    lock = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return  # another server has it
    if os.path.dirname(os.path.dirname(os.path.abspath(__file__))) != package:
        return  # the path found another airbuild than the client's: serve nothing
    warm()
    # What warm() made is never freed: out of the collector's sight, a child's collections do not walk (and so
    # copy, page by page) the server's whole heap.
    gc.collect()
    gc.freeze()
    try:
        os.unlink(sock_path)  # a crashed server's
    except FileNotFoundError:
        pass
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(sock_path)
    os.chmod(sock_path, 0o600)
    listener.listen(64)
    bound = os.stat(sock_path).st_ino
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # children are reaped by the kernel
    journal = _journal(lambda message: print(f"{time.strftime('%Y-%m-%dT%H:%M:%S')} {message}", flush=True))
    reports, report_to = os.pipe2(os.O_CLOEXEC | os.O_NONBLOCK)  # children name the projects they walked
    print(f"{time.strftime('%Y-%m-%dT%H:%M:%S')} airbuild server {os.getpid()} on {sock_path}"
          f"{'' if journal else ' (no change journal: every command walks its project)'}", flush=True)
    last = time.monotonic()
    with selectors.DefaultSelector() as selector:
        selector.register(listener, selectors.EVENT_READ, "connection")
        if journal is not None:
            selector.register(journal.fd, selectors.EVENT_READ, "events")
            selector.register(reports, selectors.EVENT_READ, "reports")
        while True:
            ready = [key.data for key, _ in selector.select(timeout=30)]
            if "events" in ready:
                journal.refresh()  # promptly, so the kernel's queue does not overflow
            if "reports" in ready:
                _watch_reported(journal, reports)
            if "connection" in ready:
                conn, _ = listener.accept()
                last = time.monotonic()
                if journal is not None:
                    journal.refresh()  # every change made before the client connected
                child = os.fork()
                if child == 0:
                    try:
                        listener.close()
                        os.close(lock)
                        os.close(reports)
                        if journal is not None:
                            journal.close()  # its events are the server's to read
                            tree.use_journal(_Lookup(journal, report_to))
                        _child(conn)
                    finally:
                        os._exit(70)  # _child ends the process itself; never back into this loop
                conn.close()
                print(f"{time.strftime('%Y-%m-%dT%H:%M:%S')} command in process {child}", flush=True)
            elif time.monotonic() - last > IDLE_S or not _still_ours(sock_path, bound):
                break  # checked on the journal's events too: a project written to all the time keeps no server
    if _still_ours(sock_path, bound):
        os.unlink(sock_path)  # first, so no client queues on a socket about to close
    listener.close()


def _journal(log) -> Journal | None:
    """The change journal, or None where inotify is not to be had (each command then walks its project)."""
    if os.environ.get("AIRBUILD_JOURNAL", "1") == "0":
        return None
    try:
        return Journal(log)
    except (OSError, AttributeError):  # no inotify (not Linux), or no descriptors left
        return None


class _Lookup:
    """A command's view of the journal: the walk it keeps, and the projects it has not got reported to the
    server (which walks and watches them from then on)."""

    def __init__(self, journal: Journal, report_to: int):
        self.journal, self.report_to = journal, report_to

    def __call__(self, root: str, ignore):
        kept = self.journal.lookup(root, ignore)
        if kept is None and root not in self.journal.projects and "\n" not in root:
            try:
                os.write(self.report_to, os.fsencode(root) + b"\n")  # under PIPE_BUF: one write, never split
            except OSError:
                pass  # a full pipe: reported by a later command
        return kept


def _watch_reported(journal: Journal, reports: int) -> None:
    data = b""
    while True:
        try:
            chunk = os.read(reports, 1 << 16)
        except BlockingIOError:
            break
        if not chunk:
            break
        data += chunk
    watched = False
    for root in dict.fromkeys(os.fsdecode(line) for line in data.splitlines() if line):
        if root not in journal.projects:
            watched = journal.watch(root) or watched
    if watched:
        gc.freeze()  # the walk it keeps, out of the children's collections as warm()'s objects are


def _still_ours(sock_path: str, inode: int) -> bool:
    try:
        return os.stat(sock_path).st_ino == inode
    except OSError:
        return False


def warm() -> None:
    """Import what `build`, `plan` and `deploy` use (the SBOM libraries too), and build the manifest's validators,
    once for every child."""
    import builder.cli.main  # the point of the server: imported once, here
    builder.cli.main.prebuild_parser()  # nothing in it depends on a command's environment (prog is fixed)
    import builder.cli.commands.build  # noqa: F401  (the same)
    import builder.cli.commands.deploy  # noqa: F401  (the same: the registry client, the gates, the push)
    import builder.deploy.attestations  # noqa: F401  (the same: what a deploy's provenance is written with)
    import builder.attest.sbom_cyclonedx  # noqa: F401  (the same: about a second to import, for a new image's SBOMs)
    import builder.attest.sbom_spdx  # noqa: F401  (the same)
    from builder.engine.rules import load_rule  # the same; the default rules' validator built once
    from builder.project.manifest import Manifest  # the same; its validator built once
    Manifest.model_validate({})
    load_rule("dags")
    threads = len(os.listdir("/proc/self/task")) if os.path.isdir("/proc/self/task") else 1
    if threads != 1 or "dockerfile" in sys.modules:  # forking a process with other threads (a Go runtime) is unsafe
        raise RuntimeError(f"the server would fork with {threads} threads: it must not serve")


_done = threading.Event()  # the child's command has ended: the client going away is no interruption


def _child(conn: socket.socket) -> None:
    code = 70
    try:
        os.setpgid(0, 0)
        for signo in (signal.SIGCHLD, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT):
            signal.signal(signo, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        request = _take_request(conn)
        conn.sendall(b"P" + os.getpid().to_bytes(8, "big"))
        # Signals must reach the main thread (a blocking call there is interrupted only if it gets them): the
        # watcher starts with them blocked, and keeps them so.
        every = signal.valid_signals()
        signal.pthread_sigmask(signal.SIG_BLOCK, every)
        threading.Thread(target=_interrupt_when_gone, args=(conn,), daemon=True).start()
        signal.pthread_sigmask(signal.SIG_UNBLOCK, every)
        code = _run(request)
    except BaseException:  # noqa: BLE001 (the child must always report and exit, never return to the loop)
        traceback.print_exc()
    finally:
        _done.set()
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        except Exception:  # noqa: BLE001 (a closed pipe must not stop the report)
            pass
        try:
            conn.sendall(b"X" + bytes([code & 0xFF]))
        except OSError:
            pass
        os._exit(code & 0xFF)


def _take_request(conn: socket.socket) -> dict:
    header, fds, _, _ = socket.recv_fds(conn, 8, 3)
    if len(fds) != 3 or len(header) != 8:
        raise OSError("a request without its three streams")
    for target, fd in enumerate(fds):
        os.dup2(fd, target)
        os.close(fd)
    size = int.from_bytes(header, "big")
    body = b""
    while len(body) < size:
        chunk = conn.recv(size - len(body))
        if not chunk:
            raise OSError("the request ended early")
        body += chunk
    request = marshal.loads(body)  # client.encode_request
    os.chdir(request["cwd"])
    os.umask(request["umask"])
    os.environ.clear()
    os.environ.update(request["env"])
    sys.argv = [request["argv0"], *request["argv"]]
    _streams(request["streams"])
    return request


def _streams(described: list) -> None:
    """sys.stdin/stdout/stderr on the client's descriptors, with its encodings; line-buffered as Python
    makes them (stdout on a terminal, stderr always)."""
    def text(fd: int, mode: str, spec, line: bool):
        encoding, errors = spec or ("utf-8", "strict")
        raw = io.FileIO(fd, mode, closefd=False)
        buffered = io.BufferedReader(raw) if mode == "r" else io.BufferedWriter(raw)
        return io.TextIOWrapper(buffered, encoding=encoding, errors=errors, line_buffering=line)

    sys.stdin = sys.__stdin__ = text(0, "r", described[0], False)
    sys.stdout = sys.__stdout__ = text(1, "w", described[1], os.isatty(1))
    sys.stderr = sys.__stderr__ = text(2, "w", described[2], True)


def _interrupt_when_gone(conn: socket.socket) -> None:
    """The client sends nothing more: a read that ends means it is gone (killed): interrupt the command."""
    try:
        while conn.recv(64):
            pass
    except OSError:
        pass
    if not _done.is_set():
        os.killpg(0, signal.SIGINT)


def _run(request: dict) -> int:
    from builder.cli.main import main  # imported by warm() before the fork: a lookup, not an import
    try:
        code = main(request["argv"])
    except SystemExit as exc:  # argparse's exits
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        if isinstance(exc.code, str):
            print(exc.code, file=sys.stderr)
    except KeyboardInterrupt:
        code = 130
    atexit._run_exitfuncs()  # os._exit skips them; a command's own (temporary directories) must run
    return code
