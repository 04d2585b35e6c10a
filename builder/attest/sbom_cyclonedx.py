"""An image's inventory (facts.py) as a CycloneDX 1.6 JSON BOM, built by cyclonedx-python-lib.

The image is the BOM's metadata component (a container) depending on its base and on every
Debian package and Python distribution; airbuild is the tool. The serial number is derived from the
image digest and the timestamp is SOURCE_DATE_EPOCH, and every bom-ref is set (the library would draw
random ones), so the same image gives the same bytes. Download URLs are in the SPDX document only: as
CycloneDX external references they double the library's time (each is compared while it sorts).
"""

from __future__ import annotations

import json
import uuid

from cyclonedx.model import HashAlgorithm, HashType, Property
from cyclonedx.model.bom import Bom, BomMetaData
from cyclonedx.model.component import Component, ComponentType
from cyclonedx.model.dependency import Dependency
from cyclonedx.model.tool import ToolRepository
from cyclonedx.output.json import JsonV1Dot6
from packageurl import PackageURL

from builder.attest.facts import ImageFacts

LOCK_SECTION = "airbuild:lock-section"


def _hash(hex_or_digest: str) -> list[HashType]:
    return [HashType(alg=HashAlgorithm.SHA_256, content=hex_or_digest.removeprefix("sha256:"))]


def cyclonedx_bom(facts: ImageFacts) -> Bom:
    image = Component(name=facts.image_name, version=facts.digest, type=ComponentType.CONTAINER,
                      bom_ref=facts.image_purl, purl=PackageURL.from_string(facts.image_purl),
                      hashes=_hash(facts.digest))
    base = Component(name=facts.base_source, version=facts.base_digest, type=ComponentType.CONTAINER,
                     bom_ref=f"base:{facts.base_digest}", hashes=_hash(facts.base_digest),
                     description="the base image, pinned in astro.lock")
    tool = Component(name="airbuild", version=facts.tool_version, type=ComponentType.APPLICATION,
                     bom_ref=facts.tool_purl, purl=PackageURL.from_string(facts.tool_purl))
    components, seen = [base], {base.bom_ref.value}
    for item in (*facts.debs, *facts.wheels):
        if item.purl in seen:  # the same pin in two lock sections is one component
            continue
        seen.add(item.purl)
        components.append(Component(
            name=item.name, version=item.version, type=ComponentType.LIBRARY, bom_ref=item.purl,
            purl=PackageURL.from_string(item.purl), hashes=_hash(item.sha256),
            properties=[Property(name=LOCK_SECTION, value=item.section)]))
    bom = Bom(serial_number=uuid.uuid5(uuid.NAMESPACE_URL, f"airbuild:{facts.digest}"),
              metadata=BomMetaData(component=image, timestamp=facts.created,
                                   tools=ToolRepository(components=[tool])),
              components=components)
    # One Dependency built directly: register_dependency re-sorts the whole set per component (seconds at 250).
    bom.dependencies.add(Dependency(ref=image.bom_ref, dependencies=[Dependency(ref=c.bom_ref) for c in components]))
    return bom


def cyclonedx_json(facts: ImageFacts) -> bytes:
    text = JsonV1Dot6(cyclonedx_bom(facts)).output_as_string()
    return (json.dumps(json.loads(text), indent=2, sort_keys=True) + "\n").encode()
