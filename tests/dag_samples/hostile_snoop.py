"""airflow dag that looks for the host's secrets from inside the sandbox and reports what it found.

The findings travel hex-encoded in the exception, so airbuild's masking of known secrets in
reports cannot hide from the test what the DAG could read.
"""
import ctypes
import json
import os

places = json.load(open(os.path.join(os.path.dirname(__file__), "places.json")))
libc = ctypes.CDLL(None, use_errno=True)  # past the harness's audit hook: the kernel must refuse
found = {"pid": str(os.getpid()), "environ": {}, "cmdline": {}, "readable": {}, "listable": {}, "fd_writable": []}


def read(path, limit=1 << 16):
    fd = libc.open(path.encode(), os.O_RDONLY)
    if fd < 0:
        raise OSError(ctypes.get_errno(), path)
    buffer = ctypes.create_string_buffer(limit)
    size = libc.read(fd, buffer, limit)
    libc.close(fd)
    if size < 0:
        raise OSError(ctypes.get_errno(), path)
    return buffer.raw[:size]


for pid in sorted(p for p in os.listdir("/proc") if p.isdigit()):
    for what in ("environ", "cmdline"):
        try:
            found[what][pid] = read(f"/proc/{pid}/{what}").decode("utf-8", "replace")
        except OSError:
            pass
    try:
        for fd in os.listdir(f"/proc/{pid}/fd"):
            opened = libc.open(f"/proc/{pid}/fd/{fd}".encode(), os.O_WRONLY)
            if opened >= 0:
                libc.close(opened)
                found["fd_writable"].append(f"{pid}/{fd}")
    except OSError:
        pass
for path in places["files"]:
    try:
        found["readable"][path] = read(path, 4096).decode("utf-8", "replace")
    except OSError:
        pass
for path in places["directories"] + ["/sys", "/dev"]:
    try:
        found["listable"][path] = sorted(os.listdir(path))
    except OSError:
        pass
raise RuntimeError("FINDINGS " + json.dumps(found).encode().hex())

from airflow.sdk import DAG  # noqa: E402
