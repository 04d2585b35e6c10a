"""The base image's Python, found from the image itself: interpreter, version, ABI, where installs go.

Read from the image's files (no container is run): interpreters on the config's PATH,
their standard library directories, the C library version (for manylinux wheels) from
dpkg's status, and the distributions already installed (`*.dist-info`, `*.egg-info`).
"""

from __future__ import annotations

import posixpath
import re
from dataclasses import dataclass

from builder.layers.read import find_files, list_paths
from builder.bases.image import BaseImage
from builder.oci.config import ContainerConfig
from builder.common.errors import InputError
from builder.oci.descriptors import Platform
from builder.store.store import Store

_INTERPRETER = re.compile(r"^(?:usr/local/bin|usr/bin|bin|opt/[^/]+/bin)/python3\.(\d+)$")
_ARCH = {"amd64": "x86_64", "arm64": "aarch64"}
_DEFAULT_GLIBC = (2, 17)  # manylinux2014: what any glibc base of the last decade runs


@dataclass(frozen=True)
class PythonTarget:
    interpreter: str          # absolute path in the image, for shebangs
    version: tuple[int, int]
    site_packages: str        # where this layer installs distributions (absolute)
    scripts_dir: str          # where console scripts go (absolute)
    prefix: str               # the install scheme's base (data files)
    include: str              # where C headers go (pip: the interpreter's include/pythonX.Y, then the name)
    glibc: tuple[int, int]
    arch: str                 # x86_64, aarch64

    @property
    def version_text(self) -> str:
        return f"{self.version[0]}.{self.version[1]}"

    @property
    def abi(self) -> str:
        return f"cp{self.version[0]}{self.version[1]}"

    @property
    def uv_platform(self) -> str:
        return f"{self.arch}-manylinux_{self.glibc[0]}_{self.glibc[1]}"

    def describe(self) -> str:
        return f"Python {self.version_text} ({self.interpreter}, {self.abi}, glibc {self.glibc[0]}.{self.glibc[1]})"


def detect_python(base: BaseImage, store: Store, platform: Platform) -> PythonTarget:
    paths = list_paths(store, base.layers, _interesting, cache_name="python-paths")
    interpreters = {}
    for path, kind in paths.items():
        match = _INTERPRETER.match(path)
        if match and not kind.startswith("dir"):
            interpreters[posixpath.dirname(path)] = (int(match.group(1)), path)
    if not interpreters:
        raise InputError(f"the base image {base.description} has no Python 3 interpreter (looked for python3.X in "
                         "/usr/local/bin, /usr/bin, /bin, /opt/*/bin): requirements.txt needs one")
    env_path = ContainerConfig.from_oci(base.config.get("config")).env_dict().get("PATH") or \
        "/usr/local/bin:/usr/bin:/bin"
    chosen = None
    for directory in env_path.split(":"):
        if directory.strip("/") in interpreters:
            chosen = interpreters[directory.strip("/")]
            break
    minor, path = chosen or next(iter(interpreters.values()))
    bin_dir = posixpath.dirname(path)
    prefix = "/" + posixpath.dirname(bin_dir)
    version = (3, minor)
    if prefix == "/usr":
        # Debian's own Python keeps /usr/lib for its packages; pip's place is /usr/local, dist-packages.
        site, scripts, data_prefix = f"/usr/local/lib/python3.{minor}/dist-packages", "/usr/local/bin", "/usr/local"
    else:
        site, scripts, data_prefix = f"{prefix}/lib/python3.{minor}/site-packages", f"{prefix}/bin", prefix
    return PythonTarget(interpreter="/" + path, version=version, site_packages=site, scripts_dir=scripts,
                        prefix=data_prefix, include=f"{prefix}/include/python3.{minor}", glibc=_glibc(base, store),
                        arch=_ARCH.get(platform.architecture, platform.architecture))


def _site_roots(target: PythonTarget) -> tuple[str, ...]:
    minor = target.version[1]
    return ("usr/lib/python3/dist-packages/", f"usr/lib/python3.{minor}/site-packages/",
            f"usr/local/lib/python3.{minor}/dist-packages/", f"usr/local/lib/python3.{minor}/site-packages/",
            target.site_packages.strip("/") + "/")


def _metadata_file(path: str, roots: tuple[str, ...]) -> bool:
    if not path.startswith(roots):
        return False
    parent = posixpath.basename(posixpath.dirname(path))
    return (parent.endswith(".dist-info") and path.endswith("/METADATA")) or \
        (parent.endswith(".egg-info") and path.endswith("/PKG-INFO")) or \
        (path.endswith(".egg-info") and posixpath.dirname(path).rstrip("/") + "/" in roots)


def installed_distributions(base: BaseImage, store: Store, target: PythonTarget) -> dict[str, str]:
    """Normalised name -> version of what the base's Python already has, in any of its site directories."""
    minor = target.version[1]
    roots = _site_roots(target)
    found = find_files(store, base.layers, lambda path: _metadata_file(path, roots),
                       cache_name=f"python-dists-{minor}")
    dists = {}
    for content in found.values():
        name = version = None
        for line in content.decode("utf-8", "replace").splitlines():
            if line.startswith("Name:") and name is None:
                name = line[5:].strip()
            elif line.startswith("Version:") and version is None:
                version = line[8:].strip()
            elif not line.strip():
                break
        if name and version:
            dists[normalise(name)] = version
    return dists


def installed_metadata(base: BaseImage, store: Store, target: PythonTarget) -> list[tuple[str, str | None]]:
    """(METADATA or PKG-INFO text, an egg-info's requires.txt or None) of every distribution the base has."""
    minor = target.version[1]
    roots = _site_roots(target)

    def wanted(path: str) -> bool:
        return _metadata_file(path, roots) or (path.startswith(roots) and path.endswith(".egg-info/requires.txt"))

    found = find_files(store, base.layers, wanted, cache_name=f"python-metadata-{minor}")
    out = []
    for path, content in sorted(found.items()):
        if path.endswith("/requires.txt"):
            continue
        requires = found.get(posixpath.dirname(path) + "/requires.txt") if path.endswith("/PKG-INFO") else None
        out.append((content.decode("utf-8", "replace"), requires.decode("utf-8", "replace") if requires else None))
    return out


def marker_environment(base: BaseImage, store: Store, target: PythonTarget) -> dict[str, str]:
    """PEP 508 marker variables of the image's Python, as pip running there would see them."""
    full = f"{target.version_text}.{_micro(base, store, target)}"
    return {"implementation_name": "cpython", "implementation_version": full, "os_name": "posix",
            "platform_machine": target.arch, "platform_python_implementation": "CPython", "platform_release": "",
            "platform_system": "Linux", "platform_version": "", "python_full_version": full,
            "python_version": target.version_text, "sys_platform": "linux"}


def _micro(base: BaseImage, store: Store, target: PythonTarget) -> int:
    """The micro version: the official images' PYTHON_VERSION, else Debian's python3.X-minimal package, else 0."""
    env = ContainerConfig.from_oci(base.config.get("config")).env_dict()
    match = re.match(rf"^{re.escape(target.version_text)}\.(\d+)", env.get("PYTHON_VERSION", ""))
    if match is None:
        status = find_files(store, base.layers, lambda p: p == "var/lib/dpkg/status", cache_name="dpkg-status")
        text = status.get("var/lib/dpkg/status", b"").decode("utf-8", "replace")
        match = re.search(rf"^Package: python{re.escape(target.version_text)}-minimal\n(?:[^\n]+\n)*?"
                          rf"Version: {re.escape(target.version_text)}\.(\d+)", text, re.MULTILINE)
    return int(match.group(1)) if match else 0


def normalise(name: str) -> str:
    """PEP 503 name normalisation."""
    return re.sub(r"[-_.]+", "-", name).lower()


def _interesting(path: str) -> bool:
    return "python3." in path and ("/bin/" in f"/{path}" or path.startswith("bin/"))


def _glibc(base: BaseImage, store: Store) -> tuple[int, int]:
    status = find_files(store, base.layers, lambda p: p == "var/lib/dpkg/status", cache_name="dpkg-status")
    text = status.get("var/lib/dpkg/status", b"").decode("utf-8", "replace")
    match = re.search(r"^Package: libc6\n(?:[^\n]+\n)*?Version: (\d+)\.(\d+)", text, re.MULTILINE)
    return (int(match.group(1)), int(match.group(2))) if match else _DEFAULT_GLIBC
