"""Resolve requirements.txt for the image's Python with uv, the base's distributions as constraints.

uv writes a PEP 751 lock (pylock.toml) for the target platform and Python version; from
it each distribution's best wheel for the target is pinned: name, version, URL, sha256,
size. Index credentials reach uv through its environment only and are stripped from
every URL that is kept.
"""

from __future__ import annotations

import functools
import hashlib
import os
import re
import subprocess
import tempfile
import tomllib
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote, urlsplit, urlunsplit

from packaging.requirements import InvalidRequirement, Requirement
from packaging.tags import Tag, compatible_tags, cpython_tags
from packaging.utils import InvalidWheelFilename, parse_wheel_filename

from builder.common import masking
from builder.common import tools
from builder.common.errors import InputError
from builder.common.text import read_utf8
from builder.actions.python.target import PythonTarget, normalise


@dataclass(frozen=True)
class PinnedWheel:
    name: str
    version: str
    filename: str
    url: str        # never with credentials
    sha256: str
    size: int
    kind: str = "wheel"  # or "sdist": no wheel fits the target; built into a wheel at install (actions.python.sdist)

    def to_json(self) -> dict:
        data = {"name": self.name, "version": self.version, "filename": self.filename, "url": self.url,
                "sha256": self.sha256, "size": self.size}
        if self.kind != "wheel":
            data["kind"] = self.kind
        return data

    @classmethod
    def from_json(cls, data: dict) -> "PinnedWheel":
        return cls(**data)


@dataclass(frozen=True)
class Indexes:
    index_url: str | None = None
    extra_index_urls: tuple[str, ...] = ()

    def uv_args(self) -> list[str]:
        args = []
        if self.index_url:
            args += ["--index-url", with_credentials(self.index_url)]
        for url in self.extra_index_urls:
            args += ["--extra-index-url", with_credentials(url)]
        return args


_INCLUDES = ("-r", "--requirement", "-c", "--constraint", "-e", "--editable")
_OPTION = re.compile(r"\s+--?[A-Za-z]")  # where a requirement line's options (--hash=...) start
_INCLUDE = re.compile(r"^(?:-r|--requirement)(?:\s+|=)(\S+)$")


def requirement_lines(requirements: Path, _seen: frozenset[Path] = frozenset()) -> list[tuple[Path, int, Requirement]]:
    """(file, line, requirement) of each requirement a requirements file lists, its `-r` includes followed.
    Lines that are options, or that uv must read (URLs without a name), are left to uv."""
    out = []
    path = requirements.resolve()
    if path in _seen or not path.is_file():
        return out
    for number, raw in enumerate(read_utf8(path).splitlines(), start=1):
        line = raw.split(" #", 1)[0].strip()
        if not line or line.startswith("#"):
            continue
        include = _INCLUDE.match(line)
        if include:
            out += requirement_lines(path.parent / include.group(1), _seen | {path})
            continue
        if line.startswith("-"):
            continue
        try:
            out.append((requirements, number, Requirement(_OPTION.split(line, 1)[0])))
        except InvalidRequirement:
            continue  # uv reports what it cannot read, with its own message
    return out


def check_against_base(requirements: Path, base_dists: dict[str, str]) -> None:
    """A requirement the base's own version does not satisfy is an error naming both versions."""
    for path, number, requirement in requirement_lines(requirements):
        have = base_dists.get(normalise(requirement.name))
        if have is not None and requirement.specifier and not requirement.specifier.contains(have, prereleases=True):
            raise InputError(f"{requirement} conflicts with the base image, which has {requirement.name} {have}; "
                             "the base's version is kept (change the base, or drop the pin)",
                             path=path, line=number)


def resolve(requirements: Path, target: PythonTarget, base_dists: dict[str, str], indexes: Indexes,
            upgrade: bool | frozenset[str] = False, previous: tuple[PinnedWheel, ...] = (),
            added: list[str] | None = None) -> list[PinnedWheel]:
    """Pinned wheels for everything requirements.txt needs that the base does not already have.

    Earlier pins are kept where they still fit (tried as constraints first), except those
    `upgrade` names (all of them when it is True). `added`: the requirement lines the file gained
    since `previous` was resolved, when it changed in nothing else (see `added_lines`; [] when none).
    """
    check_against_base(requirements, base_dists)
    constraints = {normalise(name): version for name, version in base_dists.items()}
    kept = {} if upgrade is True else {normalise(p.name): p.version for p in previous
                                       if not (upgrade and normalise(p.name) in upgrade)}
    if added is not None and not upgrade and kept:
        if not added:  # the same requirement lines (a comment edited): the same pins
            return list(previous)
        try:
            return _added(added, requirements, previous, target, {**kept, **constraints}, base_dists, indexes)
        except InputError:
            pass
    if kept:
        try:
            return _incremental(requirements, target, {**kept, **constraints}, base_dists, indexes)
        except InputError:
            pass
        try:
            return _compile(requirements, target, {**kept, **constraints}, base_dists, indexes)
        except InputError:
            pass  # a new requirement needs to move an earlier pin: resolve afresh
    return _compile(requirements, target, constraints, base_dists, indexes)


def resolve_isolated(requirements: list[str], target: PythonTarget, indexes: Indexes, what: str) -> list[PinnedWheel]:
    """Pins for a build environment of their own (an sdist's build requirements, as pip's build isolation
    installs them): for the target's Python, nothing of the image's as constraints."""
    with tempfile.TemporaryDirectory(prefix="airbuild-resolve-build-") as tmp:
        listed = Path(tmp) / "requirements.txt"
        listed.write_text("".join(f"{line}\n" for line in requirements))
        try:
            return _compile(listed, target, {}, {}, indexes)
        except InputError as exc:
            raise InputError(f"the build requirements of {what} ({', '.join(requirements)}): {exc.message}") from None


def _added(lines: list[str], requirements: Path, previous: tuple[PinnedWheel, ...], target: PythonTarget,
           constraints: dict[str, str], base_dists: dict[str, str], indexes: Indexes) -> list[PinnedWheel]:
    """The earlier pins and what the added lines need with every earlier pin held: one `uv pip compile` of the
    added lines alone.

    The earlier pins are the closure of the lines that were there before, all of them still there, and with
    them held as constraints the rest of a whole-file resolution is what the added lines need: the same pins
    `_incremental` gives, without resolving the whole file again. Raises InputError when the added lines
    cannot be resolved with the earlier pins held (then the caller moves pins).
    """
    with tempfile.TemporaryDirectory(prefix="airbuild-resolve-added-") as tmp:
        alone = Path(tmp) / "requirements.txt"
        alone.write_text("".join(f"{line}\n" for line in lines))
        found = _compile(alone, target, constraints, base_dists, indexes, source=requirements)
    pins = {normalise(pin.name): pin for pin in previous}
    for pin in found:
        pins.setdefault(normalise(pin.name), pin)
    return list(pins.values())


def added_lines(before: list[str], now: list[str]) -> list[str] | None:
    """The lines `now` adds to the file whose lines' `line_digest`s are `before` (files as `logical_lines`), when
    it only adds requirement lines and keeps every other line as it was ([] when it adds none); else None."""
    gained = Counter(line_digest(line) for line in now)
    gained.subtract(before)
    if any(count < 0 for count in gained.values()) or any(line.startswith(_INCLUDES) for line in now):
        return None  # a line removed or changed; or an include (its file may have changed)
    lines = []
    for line in now:
        if gained[line_digest(line)] > 0:
            gained[line_digest(line)] -= 1
            lines.append(line)
    if any(line.startswith("-") for line in lines):
        return None  # an added option: resolve the whole file
    return lines


def line_digest(line: str) -> str:
    """What is kept of a requirements line to compare it later (never its text: a URL may hold credentials)."""
    return hashlib.sha256(line.encode()).hexdigest()


def logical_lines(text: str) -> list[str]:
    """A requirements file's lines without comments and blank lines (as `requirement_lines` reads them)."""
    out = []
    for raw in text.splitlines():
        line = raw.split(" #", 1)[0].strip()
        if line and not line.startswith("#"):
            out.append(line)
    return out


def _incremental(requirements: Path, target: PythonTarget, constraints: dict[str, str], base_dists: dict[str, str],
                 indexes: Indexes) -> list[PinnedWheel]:
    """The resolution `_compile` would give with these constraints, without asking the index about every pin again.

    The requirements the earlier pins do not name are resolved first (online: that fills uv's cache with
    what they need, the earlier pins holding), then the whole file offline, from uv's cache: the same
    inputs, so the same answer, in a fraction of the time (an Airflow-sized file revalidates ~150
    index pages online). Raises InputError when either step cannot (then the caller resolves online).
    """
    new = [str(r) for _, _, r in requirement_lines(requirements) if normalise(r.name) not in constraints]
    if new:
        with tempfile.TemporaryDirectory(prefix="airbuild-resolve-new-") as tmp:
            added = Path(tmp) / "requirements.txt"
            added.write_text("".join(f"{line}\n" for line in new))
            _compile(added, target, constraints, base_dists, indexes)
    return _compile(requirements, target, constraints, base_dists, indexes, offline=True)


def _compile(requirements: Path, target: PythonTarget, constraints: dict[str, str], base_dists: dict[str, str],
             indexes: Indexes, offline: bool = False, source: Path | None = None) -> list[PinnedWheel]:
    with tempfile.TemporaryDirectory(prefix="airbuild-resolve-") as tmp:
        constraints_file = Path(tmp) / "constraints.txt"
        constraints_file.write_text("".join(f"{name}=={version}\n" for name, version in sorted(constraints.items())))
        output = Path(tmp) / "pylock.toml"
        command = [tools.uv(), "pip", "compile", str(requirements), "--constraint", str(constraints_file),
                   "--python-version", target.version_text, "--python-platform", target.uv_platform,
                   "--format", "pylock.toml", "--no-header", "--quiet", "--output-file", str(output),
                   *indexes.uv_args(), *(["--offline"] if offline else [])]
        proc = subprocess.run(command, capture_output=True, text=True, env=_uv_env(), timeout=900)
        if proc.returncode != 0:
            raise InputError(f"cannot resolve requirements for {target.describe()}:\n{redact(proc.stderr.strip())}",
                             path=source or requirements)
        lock = tomllib.loads(output.read_text())
    return [_pick_wheel(package, target) for package in lock.get("packages", [])
            if normalise(package["name"]) not in base_dists]


def _pick_wheel(package: dict, target: PythonTarget) -> PinnedWheel:
    priority = _tag_priority(target)
    best = None
    for wheel in package.get("wheels", []):
        filename = wheel.get("name") or wheel["url"].rsplit("/", 1)[-1]
        try:
            tags = parse_wheel_filename(filename)[3]
        except InvalidWheelFilename:
            continue
        rank = min((priority[t] for t in tags if t in priority), default=None)
        if rank is not None and (best is None or rank < best[0]):
            best = (rank, filename, wheel)
    if best is None:
        sdist = package.get("sdist")
        if sdist is None:
            raise InputError(f"{package['name']} {package['version']} has no distribution for {target.describe()}")
        filename = sdist.get("name") or sdist["url"].rsplit("/", 1)[-1]
        return PinnedWheel(name=package["name"], version=package["version"], filename=filename,
                           url=strip_credentials(sdist["url"]), sha256=sdist["hashes"]["sha256"],
                           size=sdist.get("size", 0), kind="sdist")
    _, filename, wheel = best
    return PinnedWheel(name=package["name"], version=package["version"], filename=filename,
                       url=strip_credentials(wheel["url"]), sha256=wheel["hashes"]["sha256"], size=wheel.get("size", 0))


@functools.lru_cache(maxsize=8)
def _tag_priority(target: PythonTarget) -> dict[Tag, int]:
    """Rank of each tag the target accepts (0 best): computed once per target, not once per package."""
    return {tag: rank for rank, tag in enumerate(supported_tags(target))}


def supported_tags(target: PythonTarget) -> list[Tag]:
    """The wheel tags the target's Python accepts, best first (what pip computes on that machine)."""
    platforms = [f"manylinux_{target.glibc[0]}_{minor}_{target.arch}" for minor in range(target.glibc[1], -1, -1)]
    legacy = {(2, 17): "manylinux2014", (2, 12): "manylinux2010", (2, 5): "manylinux1"}
    platforms = [p for p in platforms] + [f"{legacy[v]}_{target.arch}" for v in legacy if v <= target.glibc]
    platforms.append(f"linux_{target.arch}")
    return list(cpython_tags(target.version, [target.abi, "abi3", "none"], platforms)) + \
        list(compatible_tags(target.version, target.abi, platforms))


# -- credentials: only ever in the environment of a subprocess or a request ------------------

def with_credentials(url: str) -> str:
    """`url` with the user and password from AIRBUILD_INDEX_USERNAME/PASSWORD, when set."""
    user, password = os.environ.get("AIRBUILD_INDEX_USERNAME"), os.environ.get("AIRBUILD_INDEX_PASSWORD")
    if not user or not password:
        return url
    parts = urlsplit(url)
    netloc = f"{quote(user, safe='')}:{quote(password, safe='')}@{parts.hostname}" + \
        (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


def strip_credentials(url: str) -> str:
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url
    return urlunsplit(parts._replace(netloc=parts.netloc.rsplit("@", 1)[1]))


def redact(text: str) -> str:
    """Remove anything that looks like credentials, and the configured secrets, from a message."""
    for key in ("AIRBUILD_INDEX_PASSWORD", "AIRBUILD_INDEX_USERNAME"):
        masking.add(os.environ.get(key))
    return masking.text(text)


def _uv_env() -> dict[str, str]:
    env = dict(os.environ)
    env.setdefault("UV_NO_PROGRESS", "1")
    return env
