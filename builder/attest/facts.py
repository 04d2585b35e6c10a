"""The inventory of an image as airbuild knows it: no scanner, only what it resolved and pinned.

Debian packages and Python distributions come from `astro.lock` (every section: the Debian base's
packages, packages.txt's, each requirements rule's), recognised by the shape of their entries; the
base is the lock's pin; the image is the manifest digest the build produced.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass

from packageurl import PackageURL

from builder import __version__
from builder.project.lock import Lock


@dataclass(frozen=True)
class DebPackage:
    name: str
    version: str
    architecture: str
    sha256: str
    url: str
    section: str          # the lock section that pins it

    @property
    def purl(self) -> str:
        return PackageURL(type="deb", namespace="debian", name=self.name, version=self.version,
                          qualifiers={"arch": self.architecture}).to_string()


@dataclass(frozen=True)
class PythonDistribution:
    name: str
    version: str
    filename: str
    sha256: str
    url: str
    section: str

    @property
    def purl(self) -> str:
        return PackageURL(type="pypi", name=self.name, version=self.version).to_string()


@dataclass(frozen=True)
class ImageFacts:
    image_name: str            # the project's image name
    digest: str                # the image manifest's digest: what every document is about
    base_source: str           # the lock's base pin
    base_digest: str
    debs: tuple[DebPackage, ...]
    wheels: tuple[PythonDistribution, ...]
    epoch: int                 # SOURCE_DATE_EPOCH: the documents' creation time
    tool_version: str = __version__

    @property
    def created(self) -> datetime.datetime:
        return datetime.datetime.fromtimestamp(self.epoch, datetime.timezone.utc)

    @property
    def image_purl(self) -> str:
        return PackageURL(type="oci", name=self.image_name.rsplit("/", 1)[-1], version=self.digest).to_string()

    @property
    def tool_purl(self) -> str:
        return PackageURL(type="pypi", name="airbuild", version=self.tool_version).to_string()


def image_facts(lock: Lock, image_name: str, digest: str, epoch: int) -> ImageFacts:
    debs, wheels = [], []
    for section_name in sorted(lock.sections):
        for entry in lock.sections[section_name].entries:
            if not isinstance(entry, dict) or not entry.get("sha256"):
                continue
            if "architecture" in entry:
                debs.append(DebPackage(entry["name"], entry["version"], entry["architecture"], entry["sha256"],
                                       entry.get("url", ""), section_name))
            elif "filename" in entry:
                wheels.append(PythonDistribution(entry["name"], entry["version"], entry["filename"], entry["sha256"],
                                                 entry.get("url", ""), section_name))
    debs.sort(key=lambda d: (d.name, d.architecture, d.version, d.section))
    wheels.sort(key=lambda w: (w.name.lower(), w.version, w.section))
    return ImageFacts(image_name, digest, lock.base.source, lock.base.digest, tuple(debs), tuple(wheels), epoch)
