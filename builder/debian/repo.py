"""Debian repositories: apt sources, signed Release files, and `Packages` indexes.

Trust chain: `InRelease` is checked with gpgv against a keyring; the Release text it
signs lists the sha256 of every `Packages` index, and each index lists the sha256 of
every `.deb`. Indexes land in the store by digest, and a record keyed by the same digest keeps
each package's paragraph by name (and who provides what), so a second resolve against an
unchanged archive reads a few JSON records after fetching one small InRelease per suite. A
paragraph is read with python-debian's deb822 only when the resolution reaches its package.
"""

from __future__ import annotations

import base64
import bz2
import gzip
import lzma
import os
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from debian.deb822 import Packages, PkgRelation

from builder.debian.control import paragraphs
from builder.debian.fetch import NotFound, fetch_verified, get
from builder.common.errors import BuildError, InputError
from builder.store.store import Store

INDEX_FORMAT = 2
PARAGRAPH = re.compile(r"^Package:[ \t]*(\S+)", re.MULTILINE)
PROVIDES = re.compile(r"^Provides:[ \t]*(.*)$", re.MULTILINE)
ESSENTIAL = re.compile(r"^Essential:[ \t]*yes", re.MULTILINE | re.IGNORECASE)


@dataclass(frozen=True)
class AptSource:
    uri: str                          # archive root, no trailing slash
    suite: str
    components: tuple[str, ...]
    signed_by: str | None = None      # keyring path in the base image, or key material

    def describe(self) -> str:
        return f"{self.uri} {self.suite} {' '.join(self.components)}"


@dataclass(frozen=True)
class Candidate:
    """One binary package in an index."""

    name: str
    version: str
    arch: str
    filename: str
    size: int
    sha256: str
    uri: str = ""                    # archive root it came from
    depends: str = ""
    pre_depends: str = ""
    provides: str = ""
    conflicts: str = ""
    breaks: str = ""
    essential: str = ""
    priority: str = ""
    multi_arch: str = ""

    @property
    def url(self) -> str:
        return f"{self.uri}/{self.filename}"

    @classmethod
    def from_paragraph(cls, text: str, uri: str = "") -> "Candidate | None":
        """An index paragraph read with deb822; None if it lacks what installing it needs."""
        para = Packages(text)
        fields = {short: para.get(long, "") for long, short in CANDIDATE_FIELDS.items()}
        if not all(fields[k] for k in ("name", "version", "arch", "filename", "sha256")):
            return None
        return cls(size=int(para.get("Size") or 0), uri=uri, **fields)


CANDIDATE_FIELDS = {"Package": "name", "Version": "version", "Architecture": "arch", "Filename": "filename",
                    "SHA256": "sha256", "Depends": "depends", "Pre-Depends": "pre_depends", "Provides": "provides",
                    "Conflicts": "conflicts", "Breaks": "breaks", "Essential": "essential",
                    "Priority": "priority", "Multi-Arch": "multi_arch"}


@dataclass
class Index:
    """One `Packages` index: each package's paragraph(s) by name, and the names that provide each virtual one."""

    uri: str
    paragraphs: dict[str, list[str]]
    provides: dict[str, list[str]]
    essential: list[str]

    @classmethod
    def parse(cls, text: str, uri: str) -> "Index":
        by_name: dict[str, list[str]] = {}
        provides: dict[str, list[str]] = {}
        essential = []
        for para in re.split(r"\n[ \t]*\n", text.replace("\r\n", "\n")):
            match = PARAGRAPH.search(para)
            if match is None:
                continue
            name = match.group(1)
            by_name.setdefault(name, []).append(para.strip("\n"))
            provided = PROVIDES.search(para)
            if provided:
                for clause in PkgRelation.parse_relations(provided.group(1)):
                    for alt in clause:
                        names = provides.setdefault(alt["name"], [])
                        if name not in names:
                            names.append(name)
            if ESSENTIAL.search(para):
                essential.append(name)
        return cls(uri, by_name, provides, essential)

    def candidates(self, name: str) -> list[Candidate]:
        found = (Candidate.from_paragraph(p, self.uri) for p in self.paragraphs.get(name, ()))
        return [c for c in found if c is not None]


@dataclass
class Keyring:
    """OpenPGP public keys (binary), and where they came from (for messages)."""

    data: bytes
    origin: str


@dataclass
class Verification:
    verified: list[str] = field(default_factory=list)    # suites whose InRelease signature checked out
    unverified: list[str] = field(default_factory=list)  # and why others did not


# -- sources --------------------------------------------------------------------------------

def parse_sources(files: dict[str, bytes]) -> list[AptSource]:
    """`etc/apt/sources.list`, `sources.list.d/*.list` and `*.sources` (deb822), in apt's order."""
    found: list[AptSource] = []
    for path in sorted(files, key=lambda p: (p != "etc/apt/sources.list", p)):
        text = files[path].decode("utf-8", "replace")
        if path.endswith(".sources"):
            found += _deb822_sources(text)
        elif path.endswith(".list"):
            found += _one_line_sources(text)
    unique = []
    for source in found:
        if source not in unique:
            unique.append(source)
    return unique


def is_sources_file(path: str) -> bool:
    return path == "etc/apt/sources.list" or (
        path.startswith("etc/apt/sources.list.d/") and path.endswith((".list", ".sources")))


def _one_line_sources(text: str) -> list[AptSource]:
    out = []
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        if not line.startswith("deb "):
            continue
        options = {}
        match = re.match(r"deb\s+\[([^\]]*)\]\s+(.*)", line)
        rest = match.group(2).split() if match else line.split()[1:]
        if match:
            for option in match.group(1).split():
                key, _, value = option.partition("=")
                options[key] = value
        if len(rest) < 2:
            continue
        uri, suite, *components = rest
        out.append(AptSource(uri.rstrip("/"), suite, tuple(components), options.get("signed-by")))
    return out


def _deb822_sources(text: str) -> list[AptSource]:
    out = []
    for para in paragraphs(text):
        fields = {k.lower(): v for k, v in para.items()}
        if "deb" not in fields.get("types", "").split() or fields.get("enabled", "yes").lower() == "no":
            continue
        signed_by = fields.get("signed-by")
        for uri in fields.get("uris", "").split():
            for suite in fields.get("suites", "").split():
                out.append(AptSource(uri.rstrip("/"), suite, tuple(fields.get("components", "").split()),
                                     signed_by.strip() if signed_by else None))
    return out


# -- keyrings and signatures ------------------------------------------------------------------

def dearmor(data: bytes) -> bytes:
    """Binary OpenPGP packets from an ASCII-armored key block (binary input is returned as is)."""
    if b"-----BEGIN PGP" not in data:
        return data
    out = b""
    for block in re.findall(rb"-----BEGIN PGP[^\n]*-----\n(.*?)-----END PGP", data, re.DOTALL):
        body = block.split(b"\n\n", 1)[-1] if b"\n\n" in block else block
        lines = [ln for ln in body.strip().splitlines() if ln and not ln.startswith(b"=")]
        out += base64.b64decode(b"".join(lines))
    return out


def verify_inrelease(signed: bytes, keyring: Keyring | None, where: str) -> tuple[str, bool]:
    """The text an InRelease file signs, and whether its signature was checked.

    A bad signature is an error; no keyring or no gpgv means unchecked (the caller says so).
    """
    gpgv = shutil.which("gpgv")
    if keyring is not None and gpgv:
        with tempfile.TemporaryDirectory(prefix="airbuild-gpgv-") as tmp:
            key_path, data_path, out_path = (os.path.join(tmp, n) for n in ("keys.gpg", "InRelease", "Release"))
            Path(key_path).write_bytes(keyring.data)
            Path(data_path).write_bytes(signed)
            proc = subprocess.run([gpgv, "--homedir", tmp, "--keyring", key_path, "--output", out_path, data_path],
                                  capture_output=True, text=True)
            if proc.returncode != 0:
                raise BuildError(f"{where}: the signature does not verify against {keyring.origin}:\n"
                                 f"{proc.stderr.strip()}")
            return Path(out_path).read_text(encoding="utf-8"), True
    return _strip_clearsign(signed.decode("utf-8", "replace"), where), False


def _strip_clearsign(text: str, where: str) -> str:
    if not text.startswith("-----BEGIN PGP SIGNED MESSAGE-----"):
        return text
    match = re.search(r"\n\n(.*?)\n-----BEGIN PGP SIGNATURE-----", text, re.DOTALL)
    if not match:
        raise BuildError(f"{where}: not a clearsigned Release file")
    return "\n".join(line[2:] if line.startswith("- ") else line for line in match.group(1).split("\n")) + "\n"


# -- Release and Packages ---------------------------------------------------------------------------

def release_files(release: str) -> dict[str, tuple[str, int]]:
    """Path under dists/SUITE -> (sha256, size), from a Release file's SHA256 field."""
    para = next(paragraphs(release), {})
    out = {}
    for line in para.get("SHA256", "").splitlines():
        parts = line.split()
        if len(parts) == 3:
            out[parts[2]] = (parts[0], int(parts[1]))
    return out


def load_source(store: Store, source: AptSource, arch: str, keyring: Keyring | None,
                verification: Verification) -> list[Index]:
    """The indexes of `source` for `arch` (whose paragraphs list `all` packages too), verified."""
    dists = f"{source.uri}/dists/{source.suite}"
    where = f"{dists}/InRelease"
    try:
        signed = get(where)
    except NotFound:
        raise InputError(f"the archive has no suite {source.suite!r} ({where} is not found)") from None
    release, checked = verify_inrelease(signed, keyring, where)
    (verification.verified if checked else verification.unverified).append(source.suite)
    listed = release_files(release)
    by_hash = next(paragraphs(release), {}).get("Acquire-By-Hash", "").lower() == "yes"
    indexes: list[Index] = []
    for component in source.components:
        stem = f"{component}/binary-{arch}/Packages"
        name = next((stem + ext for ext in (".xz", ".gz", "") if stem + ext in listed), None)
        if name is None:
            raise InputError(f"{where} lists no {stem} index (component {component!r} or architecture "
                             f"{arch!r} not in the archive)")
        sha256, size = listed[name]
        indexes.append(_index(store, dists, name, sha256, size, by_hash, source.uri))
    return indexes


def _index(store: Store, dists: str, name: str, sha256: str, size: int, by_hash: bool, uri: str) -> Index:
    record_name = f"{sha256}-{INDEX_FORMAT}"
    cached = store.get_record("deb-index", record_name)
    if cached is None:
        url = f"{dists}/{os.path.dirname(name)}/by-hash/SHA256/{sha256}" if by_hash else f"{dists}/{name}"
        try:
            path = fetch_verified(store, url, sha256, size)
        except NotFound:
            path = fetch_verified(store, f"{dists}/{name}", sha256, size)
        index = Index.parse(_decompress(path.read_bytes(), name).decode("utf-8", "replace"), uri)
        cached = {"paragraphs": index.paragraphs, "provides": index.provides, "essential": index.essential}
        store.put_record("deb-index", record_name, cached)
    return Index(uri, cached["paragraphs"], cached["provides"], cached["essential"])


def _decompress(data: bytes, name: str) -> bytes:
    if name.endswith(".xz"):
        return lzma.decompress(data)
    if name.endswith(".gz"):
        return gzip.decompress(data)
    if name.endswith(".bz2"):
        return bz2.decompress(data)
    return data
