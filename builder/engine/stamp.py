"""The no-op shortcut: when nothing a build reads has changed since it last ran, its outputs are current.

make's up-to-date check, on stat signatures: the project paths the ignore rules select,
the inputs outside that walk (manifest, Dockerfile, .dockerignore, lock, base, rule
files), the options and environment, and the outputs themselves. It imports nothing
heavy, so an unchanged project costs an interpreter start and a directory walk.
A path modified within the racy margin of the build is not trusted: no stamp is written.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path
from typing import Any

from builder import __version__
from builder.common.atomic import atomic_write_bytes
from builder.project.ignore import IgnoreRules
from builder.common.paths import OUTPUT_DIR
from builder.project.statcache import RACY_MARGIN_NS
from builder.project.tree import Scanned, scan_project, signature_digest

STAMP = "stamp.json"
FORMAT = 2


def settings(project: Path, base: str | None, oci: Path | None, archive: Path | None, locked: bool,
             skipped: str | None, force: bool, backend: str | None, build_args: dict[str, str],
             secrets: tuple[str, ...]) -> dict[str, Any]:
    """Everything besides files that shapes a build's outputs: the same whether the command line asks
    (the no-op check) or the build that ran records it. `skipped`: why validation is off (a new
    reason is a new output); `secrets` as given (ids and files, never values)."""
    return {
        "engine": {"backend": backend, "build_args": sorted(build_args.items()), "secrets": sorted(secrets),
                   "cwd": os.getcwd() if secrets else None},
        "validate": True if skipped is None else f"skipped: {skipped}",
        "force": force,
        "airflow_environment": sorted((k, v) for k, v in os.environ.items()
                                      if k.startswith(("AIRFLOW_CONN_", "AIRFLOW_VAR_"))),
        "version": __version__,
        "project": str(project),
        "base": base,
        "oci": str(oci.resolve()) if oci else None,
        "archive": str(archive.resolve()) if archive else None,
        "locked": locked,
        "SOURCE_DATE_EPOCH": os.environ.get("SOURCE_DATE_EPOCH", "0"),
        "AIRBUILD_CACHE_DIR": os.environ.get("AIRBUILD_CACHE_DIR"),
    }


def _path_signature(path: str) -> str:
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return f"{path}\0absent"
    except OSError as exc:  # another user's stamp (a copied project): not the same inputs
        return f"{path}\0unreadable {exc.errno}"
    return f"{path}\0{st.st_mode:o}\0{st.st_size}\0{st.st_mtime_ns}\0{st.st_ctime_ns}\0{st.st_ino}"


def fingerprint(scanned: list[Scanned], extra_paths: list[str], build_settings: dict[str, Any]) -> str:
    h = hashlib.sha256(json.dumps(build_settings, sort_keys=True).encode())
    h.update(signature_digest(scanned).encode() + b"\n")
    for path in extra_paths:
        h.update(_path_signature(path).encode() + b"\n")
    return h.hexdigest()


def check(output_dir: Path, scanned: list[Scanned], build_settings: dict[str, Any]) -> dict[str, Any] | None:
    """The last build's result when nothing has changed since, else None."""
    try:
        stamp = json.loads((output_dir / STAMP).read_bytes())
    except (FileNotFoundError, ValueError):
        return None
    if stamp.get("format") != FORMAT:
        return None
    if stamp["fingerprint"] != fingerprint(scanned, stamp["extra_paths"], build_settings):
        return None
    for path, signature in stamp["outputs"].items():
        if _path_signature(path) != signature:
            return None
    for path, size in stamp["blobs"].items():  # hard links: another build may touch their ctime
        try:
            if os.stat(path).st_size != size:
                return None
        except FileNotFoundError:
            return None
    return stamp["result"]


def write(output_dir: Path, scanned: list[Scanned], extra_paths: list[str], build_settings: dict[str, Any],
          result: dict[str, Any], outputs: list[str], blobs: list[str], started_ns: int,
          own_writes: tuple[str, ...] = ()) -> None:
    """Record a finished build, unless an input changed too recently to trust its stat.

    `own_writes` are inputs this build wrote itself (the lock): their stat is taken after the write.
    """
    stamp_path = output_dir / STAMP
    stamp_path.unlink(missing_ok=True)
    horizon = started_ns - RACY_MARGIN_NS
    for item in scanned:
        if item.st.st_mtime_ns >= horizon or item.st.st_ctime_ns >= horizon:
            return
    for path in extra_paths:
        if path in own_writes:
            continue
        try:
            st = os.stat(path)
        except FileNotFoundError:
            continue
        if st.st_mtime_ns >= horizon or st.st_ctime_ns >= horizon:
            return
    noop = dict(result, lock_changed=False, engine=None, cache=None,
                layers=[layer if layer["rule"] == "base" else
                        dict(layer, cached=True, reason="unchanged", files_read=0, source="local")
                        for layer in result["layers"]])
    payload = {"format": FORMAT, "fingerprint": fingerprint(scanned, extra_paths, build_settings),
               "extra_paths": extra_paths, "outputs": {p: _path_signature(p) for p in outputs},
               "blobs": {p: os.stat(p).st_size for p in blobs}, "result": noop}
    atomic_write_bytes(stamp_path, json.dumps(payload).encode(), fsync=False)


def try_noop(project: Path, build_settings: dict[str, Any]) -> tuple[dict[str, Any] | None, list[Scanned] | None]:
    """(the up-to-date result, or None; the scan, for the full build to reuse)."""
    if not (project / OUTPUT_DIR / STAMP).exists():
        return None, None
    started = time.monotonic()
    scanned = scan_project(project, IgnoreRules.for_project(project))
    result = check(project / OUTPUT_DIR, scanned, build_settings)
    if result is not None:
        result = dict(result, duration_s=round(time.monotonic() - started, 4))
    return result, scanned
