"""A distribution published only as an sdist, built into a wheel as `pip wheel` builds it in a Dockerfile.

The build runs in the bubblewrap sandbox the Debian maintainer scripts run in (builder.debian.maintscripts):
its root is the image as built so far (the base and the layers below the Python rule, unpacked once per
machine) under a throw-away overlay, so the sdist is compiled by the image's own python3 against the
image's compilers and headers (`build-essential`, `libpq-dev` from packages.txt), as root, with no network.
The build backend's requirements (the sdist's `build-system.requires`, else setuptools and wheel) are
resolved for the image's Python and fetched as wheels on the host beforehand, then installed into a
build environment the sandbox sees (pip's build isolation, without pip); what the backend asks for only
when run (get_requires_for_build_wheel) is fetched after a first attempt, and asked for up front from then
on. `SOURCE_DATE_EPOCH` is fixed, so the wheel's entries carry the same times in every build.

The wheel is kept in the store, keyed by what decides it: the sdist's sha256, the lower filesystem's layers
(diff_ids), the Python target and the build requirements' pins, so the next build, or another project with
the same inputs, installs it without compiling again. Without the sandbox only a pure-Python wheel can be
built (on the host, with uv); an sdist that compiles code is then an error saying what is missing.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tarfile
import time
import tomllib
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

from installer import install as install_wheel
from installer.destinations import SchemeDictionaryDestination
from installer.sources import WheelFile
from packaging.utils import parse_wheel_filename

from builder.actions.python.install import fetch_all
from builder.actions.python.resolve import Indexes, PinnedWheel, redact, resolve_isolated, supported_tags
from builder.actions.python.target import PythonTarget
from builder.bases.image import BaseImage
from builder.common import progress, tools
from builder.common.errors import BuildError, InputError, NotLocal
from builder.common.hashing import json_sha256
from builder.debian import maintscripts
from builder.layers.unpack import in_root, unpacked
from builder.store.store import Store

FORMAT = 1
SOURCE_DATE_EPOCH = 315532800  # 1980-01-01, the earliest time a zip entry holds: the same for every project
DEFAULT_REQUIRES = ("setuptools>=40.8.0", "wheel")  # pip's, for an sdist without [build-system]
DEFAULT_BACKEND = "setuptools.build_meta:__legacy__"
WHEELS_KIND = "built-wheels"
REQUIRES_KIND = "sdist-build-requires"
INSIDE = "/tmp/airbuild-sdist"   # where the sandbox sees the build's directory
TIMEOUT_S = 3600
MISSING_EXIT = 3                 # the driver's exit when the backend asks for requirements the environment lacks
COMPILERS = ("usr/bin/cc", "usr/bin/gcc")

# Run by the image's python3 in the sandbox: what a PEP 517 frontend does (pypa/build's steps).
DRIVER = r'''
import importlib, json, os, re, sys
print("%s", flush=True)
from importlib.metadata import distributions
config = json.load(open(sys.argv[1]))
sys.path[:0] = [os.path.join(config["source"], p) for p in config["backend_path"]]
os.chdir(config["source"])
module, _, attr = config["backend"].partition(":")
backend = importlib.import_module(module)
for part in filter(None, attr.split(".")):
    backend = getattr(backend, part)
asked = getattr(backend, "get_requires_for_build_wheel", lambda settings=None: [])()
def norm(name):
    return re.sub(r"[-_.]+", "-", name).lower()
have = {norm(d.metadata["Name"]) for d in distributions(path=[config["env"]])}
missing = [r for r in asked if norm(re.match(r"\s*([A-Za-z0-9._-]*)", r).group(1)) not in have]
if missing:
    json.dump(missing, open(os.path.join(config["out"], "asked.json"), "w"))
    print("the build backend asks for " + ", ".join(missing) + ", which the build environment lacks")
    sys.exit(3)
name = backend.build_wheel(config["out"])
print("airbuild-built-wheel: " + name)
'''


@dataclass(frozen=True)
class BuildSite:
    """Where sdists are built: the image below the Python rule, for its Python, with the project's indexes."""

    store: Store
    target: PythonTarget
    image: BaseImage                 # the base with the layers below the Python rule
    indexes: Indexes
    index_hosts: frozenset[str]
    read_only: bool = False          # a plan: never build (NotLocal instead)
    notes: list[str] = field(default_factory=list)  # the build's notes (built, or reused from the store)
    noted: set[str] = field(default_factory=set)     # sdists (sha256) a note already speaks of


@dataclass(frozen=True)
class BuildBackend:
    """An sdist's [build-system]: what it requires, which backend builds it, where an in-tree backend lives."""

    requires: tuple[str, ...]
    backend: str
    backend_path: tuple[str, ...] = ()


@dataclass(frozen=True)
class BuildRequirements:
    """The build environment's wheels, and what the backend asked for besides its static list (learnt by a
    first build that lacked it, then resolved with the rest up front)."""

    pins: tuple[PinnedWheel, ...]
    asked: tuple[str, ...] = ()


class AskedForMore(Exception):
    """The backend's get_requires_for_build_wheel named requirements the build environment lacks."""

    def __init__(self, asked: list[str]):
        super().__init__(", ".join(asked))
        self.asked = tuple(asked)


def local_wheel(site: BuildSite, pin: PinnedWheel, path: Path) -> tuple[str, Path]:
    """(file name, path) of the wheel to install for a fetched pin: itself, or the wheel built from its sdist."""
    return wheel_from_sdist(site, pin, path) if pin.kind == "sdist" else (pin.filename, path)


def wheel_from_sdist(site: BuildSite, pin: PinnedWheel, sdist: Path) -> tuple[str, Path]:
    """(file name, path in the store) of the wheel built from `sdist`: from the store when built before."""
    why_not = maintscripts.unusable()
    if why_not is not None:
        return _pure_wheel_on_host(site, pin, sdist, why_not)
    backend = build_backend(sdist, pin)
    requirements = _build_requirements(site, pin, backend)
    stored = _stored(site, pin, _wheel_key(site, pin, backend, requirements))
    if stored is not None:
        return stored
    if site.read_only:
        raise NotLocal(f"{pin.name} {pin.version} is built from its sdist, which the store has not done yet")
    lower = [r.diff_id for r in site.image.layers]
    with site.store.building(json_sha256({"sdist": pin.sha256, "lower": lower})):  # one build compiles it
        requirements = _build_requirements(site, pin, backend)
        stored = _stored(site, pin, _wheel_key(site, pin, backend, requirements))
        if stored is not None:
            return stored
        progress.announce(f"building {pin.name} {pin.version} from its sdist in the image's sandbox")
        started = time.monotonic()
        try:
            filename, data = _build_in_work_dir(site, pin, sdist, backend, requirements)
        except AskedForMore as more:  # resolved with the rest, and remembered: next time up front
            requirements = _build_requirements(site, pin, backend, more.asked)
            try:
                filename, data = _build_in_work_dir(site, pin, sdist, backend, requirements)
            except AskedForMore as again:
                raise InputError(f"{pin.name} {pin.version}: building its sdist, the build backend still asks for "
                                 f"{again} once its earlier requests are installed") from None
        spent = time.monotonic() - started
        digest = site.store.put_blob(data)
        site.store.put_record(WHEELS_KIND, _wheel_key(site, pin, backend, requirements),
                              {"filename": filename, "digest": digest, "seconds": round(spent, 2)})
    progress.announce(f"built {filename} in {spent:.1f} s")
    site.noted.add(pin.sha256)
    site.notes.append(f"{pin.name} {pin.version}: built {filename} from its sdist in the image's sandbox "
                      f"in {spent:.1f} s")
    return filename, site.store.blob_path(digest)


def _wheel_key(site: BuildSite, pin: PinnedWheel, backend: BuildBackend, requirements: BuildRequirements) -> str:
    """What decides the wheel: the sdist, the filesystem it is built on, the Python, the build environment."""
    return json_sha256({"format": FORMAT, "sdist": pin.sha256, "lower": [r.diff_id for r in site.image.layers],
                        "python": site.target.describe(), "backend": [list(backend.requires), backend.backend,
                                                                      list(backend.backend_path)],
                        "build": [p.to_json() for p in requirements.pins], "epoch": SOURCE_DATE_EPOCH})


def _build_in_work_dir(site: BuildSite, pin: PinnedWheel, sdist: Path, backend: BuildBackend,
                       requirements: BuildRequirements) -> tuple[str, bytes]:
    wheels = fetch_all(site.store, list(requirements.pins), set(site.index_hosts))
    work = site.store.work_dir("sdist-build")
    try:
        return _build(site, pin, sdist, backend, list(zip(requirements.pins, wheels)), work.path)
    finally:
        work.release()


def _stored(site: BuildSite, pin: PinnedWheel, key: str) -> tuple[str, Path] | None:
    """The wheel built before for these inputs, from the store (noted once per build), or None."""
    known = site.store.get_record(WHEELS_KIND, key)
    if known is None or not site.store.has_blob(known["digest"]):
        return None
    if pin.sha256 not in site.noted:
        site.noted.add(pin.sha256)
        site.notes.append(f"{pin.name} {pin.version}: {known['filename']}, built from its sdist before, "
                          "from the store")
    return known["filename"], site.store.blob_path(known["digest"])


def build_backend(sdist: Path, pin: PinnedWheel) -> BuildBackend:
    """The sdist's [build-system] from its top-level pyproject.toml; pip's defaults without one."""
    text = _top_level_file(sdist, "pyproject.toml")
    if text is None:
        return BuildBackend(DEFAULT_REQUIRES, DEFAULT_BACKEND)
    try:
        system = tomllib.loads(text.decode("utf-8")).get("build-system") or {}
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise InputError(f"{pin.filename}: its pyproject.toml cannot be read: {exc}") from None
    if "build-backend" not in system:
        return BuildBackend(tuple(system.get("requires", DEFAULT_REQUIRES)), DEFAULT_BACKEND)
    return BuildBackend(tuple(system.get("requires", ())), system["build-backend"],
                        tuple(system.get("backend-path", ())))


def _top_level_file(sdist: Path, name: str) -> bytes | None:
    try:
        if zipfile.is_zipfile(sdist):
            with zipfile.ZipFile(sdist) as archive:
                names = [n for n in archive.namelist() if n.count("/") == 1 and n.endswith("/" + name)]
                return archive.read(names[0]) if names else None
        with tarfile.open(sdist) as archive:
            for member in archive:
                if member.isfile() and member.name.count("/") == 1 and member.name.endswith("/" + name):
                    return archive.extractfile(member).read()
    except (tarfile.TarError, zipfile.BadZipFile, OSError, EOFError) as exc:
        raise InputError(f"{sdist.name}: the sdist cannot be read: {exc}") from None
    return None


def _build_requirements(site: BuildSite, pin: PinnedWheel, backend: BuildBackend,
                        asked: tuple[str, ...] = ()) -> BuildRequirements:
    """Wheels for the sdist's build environment, resolved once per store for this Python (again with `asked`,
    what its backend asked for besides its static list, which the record then keeps)."""
    key = json_sha256({"sdist": pin.sha256, "requires": list(backend.requires), "python": site.target.describe(),
                       "platform": site.target.uv_platform, "indexes": [site.indexes.index_url,
                                                                        *site.indexes.extra_index_urls]})
    known = site.store.get_record(REQUIRES_KIND, key)
    if known is not None and not asked:
        return BuildRequirements(tuple(PinnedWheel.from_json(e) for e in known["pins"]), tuple(known["asked"]))
    if site.read_only:
        raise NotLocal(f"{pin.name} {pin.version} is built from its sdist; its build requirements are not resolved")
    wanted = list(backend.requires) + list(asked)
    pins = resolve_isolated(wanted, site.target, site.indexes, f"{pin.name} {pin.version}")
    for found in pins:
        if found.kind != "wheel":
            raise InputError(f"{pin.name} {pin.version} is built from its sdist, and its build requirement "
                             f"{found.name} {found.version} has no wheel for {site.target.describe()}")
    site.store.put_record(REQUIRES_KIND, key, {"pins": [p.to_json() for p in pins], "asked": list(asked)})
    return BuildRequirements(tuple(pins), tuple(asked))


def _build(site: BuildSite, pin: PinnedWheel, sdist: Path, backend: BuildBackend,
           requirements: list[tuple[PinnedWheel, Path]], scratch: Path) -> tuple[str, bytes]:
    shared = scratch / "shared"   # the sandbox's INSIDE
    for name in ("env", "out", "src"):
        (shared / name).mkdir(parents=True)
    for requirement, wheel in requirements:
        _install_into(shared / "env", requirement, wheel, site.target)
    source = _unpack(sdist, shared / "src", pin)
    (shared / "driver.py").write_text(DRIVER % maintscripts.READY)
    (scratch / "upper").mkdir()
    (shared / "config.json").write_text(json.dumps({
        "source": f"{INSIDE}/src/{source}", "out": f"{INSIDE}/out", "env": f"{INSIDE}/env",
        "backend": backend.backend, "backend_path": list(backend.backend_path)}))
    rootfs = unpacked(site.store, site.image.layers)
    env = {"PATH": maintscripts.PATH, "HOME": "/root", "LANG": "C.UTF-8",
           **site.image.env,
           "PYTHONPATH": f"{INSIDE}/env", "PYTHONDONTWRITEBYTECODE": "1", "PYTHONHASHSEED": "0",
           "SOURCE_DATE_EPOCH": str(SOURCE_DATE_EPOCH), "PIP_NO_INDEX": "1"}
    command = maintscripts.sandbox_command(rootfs, scratch / "upper", scratch, ((shared, INSIDE),)) + \
        [site.target.interpreter, f"{INSIDE}/driver.py", f"{INSIDE}/config.json"]
    try:
        proc = subprocess.run(command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              env=env, timeout=TIMEOUT_S)
    except subprocess.TimeoutExpired:
        raise InputError(f"building {pin.name} {pin.version} from its sdist ran longer than {TIMEOUT_S} s") from None
    log = proc.stdout.decode("utf-8", "replace")
    if maintscripts.READY not in log:
        raise BuildError(f"the sandbox to build {pin.name} {pin.version} from its sdist did not start "
                         f"(exit {proc.returncode}): {redact(log.strip())[-1500:]}")
    log = log.replace(maintscripts.READY + "\n", "", 1)
    if proc.returncode == MISSING_EXIT and (shared / "out" / "asked.json").is_file():
        raise AskedForMore(json.loads((shared / "out" / "asked.json").read_text()))
    built = sorted((shared / "out").glob("*.whl"))
    if proc.returncode or len(built) != 1:
        raise InputError(_failure(site, pin, rootfs, proc.returncode, log))
    tags = parse_wheel_filename(built[0].name)[3]
    if not set(tags) & set(supported_tags(site.target)):
        raise InputError(f"{pin.name} {pin.version}: its sdist built {built[0].name}, which "
                         f"{site.target.describe()} does not install")
    return built[0].name, built[0].read_bytes()


def _failure(site: BuildSite, pin: PinnedWheel, rootfs: Path, code: int, log: str) -> str:
    what = f"{pin.name} {pin.version} has no wheel for {site.target.describe()}, and building its sdist in the image"
    tail = redact(log.strip())[-2500:]
    if not any(in_root(rootfs, path).exists() for path in COMPILERS):
        return (f"{what} failed, and the image has no C compiler (no /usr/bin/cc): add build-essential, and the "
                f"-dev packages of the libraries it builds against (e.g. libpq-dev for psycopg2), to packages.txt. "
                f"The build said:\n{tail}")
    header = f"{site.target.include}/Python.h"
    if not in_root(rootfs, header).exists():
        package = "python3-dev" if site.target.interpreter.startswith("/usr/bin/") else "the Python headers' package"
        return (f"{what} failed, and the image has no {header} to compile against: add {package} (and the -dev "
                f"packages of the libraries it builds against) to packages.txt. The build said:\n{tail}")
    return (f"{what} failed (exit {code}); the -dev packages of the libraries it builds against may be missing "
            f"from packages.txt. The build said:\n{tail}")


def _install_into(env: Path, pin: PinnedWheel, wheel: Path, target: PythonTarget) -> None:
    scheme = {"purelib": str(env), "platlib": str(env), "headers": str(env / "include" / pin.name),
              "scripts": str(env / "bin"), "data": str(env / "data")}
    destination = SchemeDictionaryDestination(scheme, interpreter=target.interpreter, script_kind="posix",
                                              bytecode_optimization_levels=())
    with zipfile.ZipFile(wheel) as archive:
        archive.filename = pin.filename
        install_wheel(WheelFile(archive), destination, additional_metadata={})


def _unpack(sdist: Path, dest: Path, pin: PinnedWheel) -> str:
    """Unpack the sdist under `dest` (nothing outside it); the name of its top-level directory."""
    try:
        if zipfile.is_zipfile(sdist):
            with zipfile.ZipFile(sdist) as archive:
                for name in archive.namelist():
                    if name.startswith("/") or ".." in name.split("/"):
                        raise InputError(f"{pin.filename}: the sdist has an entry outside its directory: {name}")
                archive.extractall(dest)
        else:
            with tarfile.open(sdist) as archive:
                archive.extractall(dest, filter="data")
    except (tarfile.TarError, zipfile.BadZipFile, OSError, EOFError) as exc:
        raise InputError(f"{pin.filename}: the sdist cannot be unpacked: {exc}") from None
    tops = [p.name for p in dest.iterdir()]
    if len(tops) != 1 or not (dest / tops[0]).is_dir():
        raise InputError(f"{pin.filename}: an sdist holds one top-level directory, this one has {sorted(tops)}")
    return tops[0]


def _pure_wheel_on_host(site: BuildSite, pin: PinnedWheel, sdist: Path, why_not: str) -> tuple[str, Path]:
    """Without the sandbox: a pure-Python wheel (py3-none-any) built with uv on this host, once per sdist and
    Python version; an sdist that builds code for the host is an error saying what is missing."""
    record_name = f"{pin.sha256}-{site.target.abi}"
    known = site.store.get_record(WHEELS_KIND, record_name)
    if known is not None and site.store.has_blob(known["digest"]):
        return known["filename"], site.store.blob_path(known["digest"])
    if site.read_only:
        raise NotLocal(f"{pin.name} {pin.version} is built from its sdist, which the store has not done yet")
    work = site.store.work_dir("sdist-host")
    try:
        source, out = work.path / pin.filename, work.path / "out"
        shutil.copyfile(sdist, source)
        proc = subprocess.run([tools.uv(), "build", "--wheel", "--no-config", "--python", site.target.version_text,
                               "--out-dir", str(out), str(source)],
                              capture_output=True, text=True, timeout=TIMEOUT_S,
                              env={**os.environ, "UV_NO_PROGRESS": "1", "SOURCE_DATE_EPOCH": str(SOURCE_DATE_EPOCH)})
        wheels = sorted(out.glob("*.whl")) if proc.returncode == 0 else []
        if not wheels:
            raise InputError(f"{pin.name} {pin.version} has no wheel for {site.target.describe()}, its sdist does "
                             f"not build as pure Python, and sdists that compile are built in the image's sandbox, "
                             f"which cannot run here ({why_not}):\n{redact(proc.stderr.strip())[-2000:]}")
        tags = parse_wheel_filename(wheels[0].name)[3]
        if not all(tag.abi == "none" and tag.platform == "any" for tag in tags):
            raise InputError(f"{pin.name} {pin.version} has no wheel for {site.target.describe()}, and its sdist "
                             f"compiles code, which is built in the image's sandbox; the sandbox cannot run here "
                             f"({why_not})")
        filename, digest = wheels[0].name, site.store.put_blob(wheels[0].read_bytes())
    finally:
        work.release()
    site.store.put_record(WHEELS_KIND, record_name, {"filename": filename, "digest": digest})
    return filename, site.store.blob_path(digest)
