"""What installing a wheel writes, read from its zip directory without installing it.

The paths (in the image, without the leading /) that pypa's installer writes for a wheel:
the files of its root scheme (purelib/platlib), those under `<name>.data/<scheme>/`, the
console and GUI scripts its entry points ask for, and the dist-info's RECORD, INSTALLER and
REQUESTED. With the distribution's metadata (for pip's order), kept per wheel and Python
install scheme in the store (`wheel-files/`), so a plan reads a small record instead of the zip.
"""

from __future__ import annotations

import posixpath
import zipfile
from dataclasses import dataclass
from pathlib import Path

from installer.utils import parse_entrypoints

from builder.actions.python.install_order import Distribution
from builder.actions.python.target import PythonTarget
from builder.common.errors import BuildError
from builder.common.hashing import json_sha256
from builder.store.store import Store

KIND = "wheel-files"
FORMAT = 1


@dataclass(frozen=True)
class WheelFiles:
    dist: Distribution
    paths: tuple[str, ...]   # image paths (no leading /) the wheel's install writes


def scheme_for(target: PythonTarget, name: str) -> dict[str, str]:
    """pypa installer's scheme for the image's Python (pip's places)."""
    return {"purelib": target.site_packages, "platlib": target.site_packages, "scripts": target.scripts_dir,
            "data": target.prefix, "headers": f"{target.include}/{name}"}


def wheel_files(store: Store, wheel_digest: str, path: Path, filename: str, name: str,
                target: PythonTarget) -> WheelFiles:
    scheme = scheme_for(target, name)
    record = json_sha256({"format": FORMAT, "wheel": wheel_digest, "scheme": scheme})
    known = store.get_record(KIND, record)
    if known is not None:
        dist = Distribution(name=known["name"], requires=tuple(known["requires"]),
                            requires_python=known["requires_python"], extras=frozenset(known["extras"]))
        return WheelFiles(dist, tuple(known["paths"]))
    with zipfile.ZipFile(path) as archive:
        found = read(archive, filename, scheme)
    (store.root / KIND).mkdir(exist_ok=True)
    store.put_record(KIND, record, {"name": found.dist.name, "requires": list(found.dist.requires),
                                    "requires_python": found.dist.requires_python,
                                    "extras": sorted(found.dist.extras), "paths": list(found.paths)})
    return found


def read(archive: zipfile.ZipFile, filename: str, scheme: dict[str, str]) -> WheelFiles:
    names = archive.namelist()
    dist_infos = {n.split("/", 1)[0] for n in names if n.count("/") == 1 and n.endswith(".dist-info/METADATA")}
    if len(dist_infos) != 1:
        raise BuildError(f"{filename} is not a valid wheel: it has {len(dist_infos)} .dist-info/METADATA files")
    dist_info = dist_infos.pop()
    dist = Distribution.from_metadata(archive.read(f"{dist_info}/METADATA").decode("utf-8", "replace"))
    wheel_text = archive.read(f"{dist_info}/WHEEL").decode("utf-8", "replace") if f"{dist_info}/WHEEL" in names else ""
    purelib = any(line.replace(" ", "").lower() == "root-is-purelib:true" for line in wheel_text.splitlines())
    root = scheme["purelib" if purelib else "platlib"]
    data_dir = dist_info[: -len(".dist-info")] + ".data/"
    out = set()
    for name in names:
        if name.endswith("/") or "__pycache__" in name.split("/")[:-1]:
            continue  # installer skips directories and __pycache__ shipped in wheels
        if name.startswith(data_dir):
            key, _, rest = name[len(data_dir):].partition("/")
            if key in scheme and rest:
                out.add(posixpath.join(scheme[key], rest))
            continue
        out.add(posixpath.join(root, name))
    if f"{dist_info}/entry_points.txt" in names:
        text = archive.read(f"{dist_info}/entry_points.txt").decode("utf-8", "replace")
        out.update(posixpath.join(scheme["scripts"], script) for script, *_ in parse_entrypoints(text))
    out.update(posixpath.join(root, dist_info, extra) for extra in ("RECORD", "INSTALLER", "REQUESTED"))
    return WheelFiles(dist, tuple(sorted(p.lstrip("/") for p in out)))
