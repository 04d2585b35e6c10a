"""SLSA v1 provenance for an image, as an in-toto Statement v1, built with in-toto-attestation's protobufs.

subject: the image manifest's digest. buildDefinition: airbuild's build type; external parameters are
what the person building chose (the commit, the astro.yaml/Dockerfile digests, the options that shape
the image); resolved dependencies are what airbuild pinned (the base's digest, astro.lock's hash).
runDetails: the builder's id (AIRBUILD_BUILDER_ID, e.g. a CI workflow's URI; else a local builder),
airbuild's version, and when the build started and finished.

`verify_provenance(envelope, public_key_pem, image_digest)` is the check `verify --key` makes: the DSSE
signature (dsse.py), the predicate type, and that the statement is about that image.
"""

from __future__ import annotations

import datetime
import os
from dataclasses import dataclass, field
from pathlib import Path

from google.protobuf import json_format
from google.protobuf.timestamp_pb2 import Timestamp
from in_toto_attestation.predicates.provenance.v1 import provenance_pb2
from in_toto_attestation.v1.resource_descriptor import ResourceDescriptor
from in_toto_attestation.v1.statement import Statement

from builder import __version__
from builder.attest.dsse import SignatureError, verify_envelope
from builder.oci.descriptors import canonical_json

PREDICATE_TYPE = "https://slsa.dev/provenance/v1"
BUILD_TYPE = "urn:airbuild:buildtype:oci-image:v1"
LOCAL_BUILDER = "urn:airbuild:builder:local"
ENV_BUILDER_ID = "AIRBUILD_BUILDER_ID"


@dataclass(frozen=True)
class BuildRun:
    """What provenance says of one build; every value a string so the JSON is exact (protobuf's Struct
    would turn numbers into floats)."""

    image_name: str
    digest: str                                   # the image manifest's
    commit: str | None                            # git HEAD of the project, None outside git
    dirty: bool                                   # the tree had uncommitted changes
    manifest_digests: dict[str, str]              # astro.yaml / Dockerfile -> sha256:...
    options: dict[str, str]                       # what shaped the image: base, platform, backend, epoch...
    base_source: str
    base_digest: str
    lock_name: str
    lock_digest: str | None                       # sha256 of astro.lock's bytes
    started: datetime.datetime
    finished: datetime.datetime
    invocation_id: str = ""
    build_args: dict[str, str] = field(default_factory=dict)


def builder_id() -> str:
    return os.environ.get(ENV_BUILDER_ID) or LOCAL_BUILDER


def _timestamp(when: datetime.datetime) -> Timestamp:
    stamp = Timestamp()
    stamp.FromDatetime(when.astimezone(datetime.timezone.utc).replace(microsecond=0))
    return stamp


def _hex(digest: str) -> dict[str, str]:
    algorithm, _, value = digest.partition(":")
    return {algorithm: value}


def provenance_statement(run: BuildRun) -> dict:
    """The statement as a JSON object (validated by in-toto-attestation)."""
    source: dict = {"dirty": run.dirty, **({"commit": run.commit} if run.commit else {})}
    external: dict = {"source": source,
                      "manifests": dict(sorted(run.manifest_digests.items())),
                      "options": dict(sorted(run.options.items()))}
    if run.build_args:
        external["buildArgs"] = dict(sorted(run.build_args.items()))
    dependencies = [ResourceDescriptor(name="base", uri=run.base_source, digest=_hex(run.base_digest)).pb]
    if run.lock_digest:
        dependencies.append(ResourceDescriptor(name=run.lock_name, digest=_hex(run.lock_digest)).pb)
    definition = provenance_pb2.BuildDefinition(build_type=BUILD_TYPE, resolved_dependencies=dependencies)
    definition.external_parameters.update(external)
    details = provenance_pb2.RunDetails(
        builder=provenance_pb2.Builder(id=builder_id(), version={"airbuild": __version__}),
        metadata=provenance_pb2.BuildMetadata(invocation_id=run.invocation_id, started_on=_timestamp(run.started),
                                              finished_on=_timestamp(run.finished)))
    predicate = json_format.MessageToDict(provenance_pb2.Provenance(build_definition=definition,
                                                                    run_details=details))
    subject = ResourceDescriptor(name=run.image_name, digest=_hex(run.digest))
    statement = Statement([subject.pb], PREDICATE_TYPE, predicate)
    statement.validate()
    return json_format.MessageToDict(statement.pb)


def subject_digests(statement: dict) -> list[str]:
    """`sha256:...` of each subject of a statement (what it is about)."""
    return [f"sha256:{s['digest']['sha256']}" for s in statement.get("subject", []) if "sha256" in s.get("digest", {})]


def provenance_json(run: BuildRun) -> bytes:
    return canonical_json(provenance_statement(run))


def verify_provenance(envelope: dict | bytes | str, public_key_pem: bytes | Path, image_digest: str) -> dict:
    """`verify --key`: the statement, once its signature checks out and it is SLSA provenance about `image_digest`."""
    statement = verify_envelope(envelope, public_key_pem).statement()
    if statement.get("predicateType") != PREDICATE_TYPE:
        raise SignatureError(f"the signed statement is not SLSA provenance ({statement.get('predicateType')!r})")
    if image_digest not in subject_digests(statement):
        raise SignatureError(f"the signed provenance is about {', '.join(subject_digests(statement)) or 'nothing'}, "
                             f"not {image_digest}")
    return statement
