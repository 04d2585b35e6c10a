"""An image's inventory (facts.py) as an SPDX 2.3 JSON document, built and validated by spdx-tools.

The image is the package the document DESCRIBES; it CONTAINS every Debian package and Python
distribution, is a DESCENDANT_OF its base, and airbuild is its BUILD_TOOL_OF. Licenses are
NOASSERTION: airbuild does not read them. The namespace is derived from the image digest and the
creation time is SOURCE_DATE_EPOCH, so the same image gives the same bytes.
"""

from __future__ import annotations

import io
import json
import re
import uuid

from spdx_tools.spdx.model import (Actor, ActorType, Checksum, ChecksumAlgorithm, CreationInfo, Document,
                                   ExternalPackageRef, ExternalPackageRefCategory, Package, PackagePurpose,
                                   Relationship, RelationshipType, SpdxNoAssertion)
from spdx_tools.spdx.writer.json.json_writer import write_document_to_stream

from builder.attest.facts import ImageFacts

NAMESPACE_ROOT = "https://spdx.org/spdxdocs/airbuild"
_ID_UNSAFE = re.compile(r"[^A-Za-z0-9.-]+")


def document_uuid(digest: str) -> uuid.UUID:
    """One identifier per image, the same on every machine (spec: a document namespace must be unique)."""
    return uuid.uuid5(uuid.NAMESPACE_URL, f"airbuild:{digest}")


class _Ids:
    def __init__(self) -> None:
        self.used: set[str] = set()

    def make(self, *parts: str) -> str:
        base = "SPDXRef-" + "-".join(_ID_UNSAFE.sub("-", p).strip("-") for p in parts)
        ident, n = base, 1
        while ident in self.used:
            n += 1
            ident = f"{base}-{n}"
        self.used.add(ident)
        return ident


def _purl(locator: str) -> ExternalPackageRef:
    return ExternalPackageRef(ExternalPackageRefCategory.PACKAGE_MANAGER, "purl", locator)


def _sha256(hex_or_digest: str) -> Checksum:
    return Checksum(ChecksumAlgorithm.SHA256, hex_or_digest.removeprefix("sha256:"))


def _package(ident: str, name: str, version: str, *, purl: str | None, sha256: str | None, download: str | None,
             purpose: PackagePurpose, comment: str | None = None) -> Package:
    return Package(ident, name, download or SpdxNoAssertion(), version=version, files_analyzed=False,
                   checksums=[_sha256(sha256)] if sha256 else [], license_concluded=SpdxNoAssertion(),
                   license_declared=SpdxNoAssertion(), copyright_text=SpdxNoAssertion(), supplier=SpdxNoAssertion(),
                   external_references=[_purl(purl)] if purl else [], primary_package_purpose=purpose,
                   comment=comment)


def spdx_document(facts: ImageFacts) -> Document:
    ids = _Ids()
    image_id = ids.make("image")
    info = CreationInfo(
        spdx_version="SPDX-2.3", spdx_id="SPDXRef-DOCUMENT", name=f"{facts.image_name}@{facts.digest}",
        document_namespace=f"{NAMESPACE_ROOT}/{_ID_UNSAFE.sub('-', facts.image_name)}-{document_uuid(facts.digest)}",
        creators=[Actor(ActorType.TOOL, f"airbuild-{facts.tool_version}")], created=facts.created)
    image = _package(image_id, facts.image_name, facts.digest, purl=facts.image_purl, sha256=facts.digest,
                     download=None, purpose=PackagePurpose.CONTAINER,
                     comment="the OCI image manifest; its sha256 is the image digest")
    base_id = ids.make("base")
    base = _package(base_id, facts.base_source, facts.base_digest, purl=None, sha256=None, download=None,
                    purpose=PackagePurpose.CONTAINER, comment=f"the base image, pinned in astro.lock at "
                                                          f"{facts.base_digest}")
    tool_id = ids.make("airbuild")
    tool = _package(tool_id, "airbuild", facts.tool_version, purl=facts.tool_purl, sha256=None, download=None,
                    purpose=PackagePurpose.APPLICATION, comment="the build tool that made the image")
    packages = [image, base, tool]
    relationships = [Relationship("SPDXRef-DOCUMENT", RelationshipType.DESCRIBES, image_id),
                     Relationship(image_id, RelationshipType.DESCENDANT_OF, base_id),
                     Relationship(tool_id, RelationshipType.BUILD_TOOL_OF, image_id)]
    for deb in facts.debs:
        ident = ids.make("deb", deb.name, deb.architecture)
        packages.append(_package(ident, deb.name, deb.version, purl=deb.purl, sha256=deb.sha256, download=deb.url,
                                 purpose=PackagePurpose.INSTALL, comment=f"astro.lock section {deb.section}"))
        relationships.append(Relationship(image_id, RelationshipType.CONTAINS, ident))
    for wheel in facts.wheels:
        ident = ids.make("pypi", wheel.name)
        packages.append(_package(ident, wheel.name, wheel.version, purl=wheel.purl, sha256=wheel.sha256,
                                 download=wheel.url, purpose=PackagePurpose.LIBRARY,
                                 comment=f"{wheel.filename}; astro.lock section {wheel.section}"))
        relationships.append(Relationship(image_id, RelationshipType.CONTAINS, ident))
    return Document(info, packages=packages, relationships=relationships)


def spdx_json(facts: ImageFacts, validate: bool = False) -> bytes:
    """The document as stable JSON bytes. spdx-tools' validation is quadratic in the packages (about 1 s for the
    quickstart's 250 on every deploy), so it runs when asked (the tests ask), not by default: the document is
    made from typed values whose shape does not vary with the input."""
    stream = io.StringIO()
    write_document_to_stream(spdx_document(facts), stream, validate=validate, drop_duplicates=False)
    return (json.dumps(json.loads(stream.getvalue()), indent=2, sort_keys=True) + "\n").encode()
