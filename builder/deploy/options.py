"""What a deploy is asked to do and what it answers, wherever it ships (a registry, Astro)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

from builder.engine.build import BuildOptions


@dataclass
class DeployOptions:
    build: BuildOptions                   # the image, as `airbuild build` makes it; its force also waives a
                                          # dirty git tree and failing tests
    target: str | None = None
    to: str | None = None
    astro: str | None = None              # --astro DEPLOYMENT_ID (organization from $ASTRO_ORGANIZATION_ID)
    insecure: bool = False
    pytest: bool = False
    dags_only: bool = False
    description: str | None = None
    ca_bundle: Path | None = None
    allow_dirty: bool = False             # a dirty git tree is fine (watch), and nothing else is waived
    attest: bool = True                   # attach SBOMs and provenance as referrers (--no-attest: not)
    sign_key: Path | None = None          # --sign-key: the provenance goes in a DSSE envelope signed with it


@dataclass
class DeployResult:
    target: str
    reference: str | None                 # what was pushed, host/repo@sha256:...; None when no image was
    manifest_digest: str | None
    tag: str | None
    blobs_uploaded: int
    blobs_skipped: int
    blobs_mounted: int
    bytes_uploaded: int
    duration_s: float
    tags: list[str]
    dags_only: bool
    git_commit: str | None
    description: str
    warnings: list[str]
    validation_skipped: str | None = None  # why the DAGs were not imported before the push
    attestations: list[dict] = field(default_factory=list)  # referrers attached: artifactType, digest, size
    attestation_bytes: int = 0            # what attaching them sent: documents, their manifests, the referrers index
    astro: dict | None = None             # an Astro deploy: its id, type, imageTag, dagTarballVersion... (astro.py)

    def to_json(self) -> dict:
        return asdict(self)
