"""What a built image is made of and how it was made, as documents others can check.

    facts.py           the typed inventory an SBOM is written from: the image, its base, the lock's Debian
                       packages and Python distributions, airbuild itself (no scanner: airbuild resolved them)
    sbom_spdx.py       that inventory as SPDX 2.3 JSON (spdx-tools builds and validates it)
    sbom_cyclonedx.py  the same as CycloneDX 1.6 JSON (cyclonedx-python-lib)
    provenance.py      SLSA v1 provenance in an in-toto Statement v1 (in-toto-attestation's protobufs);
                       `verify_provenance(envelope, public_key_pem, image_digest)`: signed, and about that image
    dsse.py            DSSE envelopes: sign a statement with an ECDSA P-256 key; `verify_envelope` checks one

Every document is deterministic: the same image gives the same bytes (times and identifiers the specs
require come from SOURCE_DATE_EPOCH and the image digest), except provenance's run times, which say when
a build really ran.
"""

SPDX_MEDIA_TYPE = "application/spdx+json"
CYCLONEDX_MEDIA_TYPE = "application/vnd.cyclonedx+json"
IN_TOTO_MEDIA_TYPE = "application/vnd.in-toto+json"
DSSE_MEDIA_TYPE = "application/vnd.dsse.envelope.v1+json"
