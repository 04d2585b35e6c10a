"""`airbuild promote`: an image copied by digest to another repository or registry, with its referrers.

Nothing is rebuilt and no manifest is rewritten, so the digest at the destination is the one at the
source (what a release manager pinned). `--digest` makes the copy conditional: it is refused when the
source no longer points there. The copy is appended to the project's deploy records when it is run
in a project.
"""

from __future__ import annotations

import datetime
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from builder.common.errors import BuildError, InputError
from builder.common.progress import Progress
from builder.deploy import records as deploy_record
from builder.oci.image import BuiltImage
from builder.registry.connect import open_client
from builder.registry.copy import Copier
from builder.registry.manifests import Repository
from builder.registry.reference import DIGEST, TAG, Reference, parse_reference


class PromoteRefused(BuildError):
    """The source does not point at the digest the promotion was asked for (exit 1)."""


@dataclass
class PromoteOptions:
    source: str
    to: str
    tags: list[str] = field(default_factory=list)
    digest: str | None = None
    insecure: bool = False
    ca_bundle: Path | None = None
    project: Path | None = None            # where the copy is recorded; None: nowhere
    progress: Progress = field(default_factory=lambda: Progress(False))


@dataclass
class PromoteResult:
    source: str
    reference: str                         # host/repo@sha256:... at the destination
    digest: str
    tags: list[str]
    referrers: list[dict]
    blobs_copied: int
    blobs_mounted: int
    blobs_skipped: int
    bytes_copied: int
    duration_s: float
    recorded: str | None                   # the deploy records written, if any

    def to_json(self) -> dict:
        return asdict(self)


def promote(options: PromoteOptions) -> PromoteResult:
    started = time.monotonic()
    if options.digest is not None and not DIGEST.match(options.digest):
        raise InputError(f"--digest {options.digest!r}: expected sha256: and 64 hex digits")
    source = parse_reference(options.source)
    dest = parse_reference(options.to, default_tag=False)
    if dest.digest:
        raise InputError(f"--to {options.to!r}: give host/repository (and optionally :tag), not a digest: the digest "
                         "is the source's")
    with open_client(source.registry, insecure=options.insecure, ca_bundle=options.ca_bundle) as source_client:
        same = dest.registry == source.registry
        dest_client = source_client if same else open_client(dest.registry, insecure=options.insecure,
                                                             ca_bundle=options.ca_bundle, env_registry=dest.registry)
        try:
            source_repo = Repository(source_client, source.repository)
            options.progress.step(f"resolving {source}")
            digest = _resolve(source_repo, source, options.digest)
            tags = _tags(digest, dest, options.tags)
            options.progress.step(f"copying {digest} to {dest.name} ({'mounting' if same else 'streaming'} blobs)")
            copier = Copier(source_repo, Repository(dest_client, dest.repository, writable=True))
            stats = copier.copy(digest, tags)
        finally:
            if not same:
                dest_client.close()
    pinned = source.pinned(digest)
    result = PromoteResult(
        source=str(pinned), reference=f"{dest.name}@{digest}", digest=digest, tags=tags, referrers=stats.referrers,
        blobs_copied=stats.blobs_copied, blobs_mounted=stats.blobs_mounted, blobs_skipped=stats.blobs_skipped,
        bytes_copied=stats.bytes_copied, duration_s=round(time.monotonic() - started, 4), recorded=None)
    if options.project is not None:
        project = options.project.resolve()
        deploy_record.append(project, {
            "time": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "kind": "promote", "target": "promote", "registry": dest.name, "reference": result.reference,
            "digest": digest, "tag": tags[0], "tags": tags, "source": result.source, "git_commit": None,
            "description": f"promoted from {result.source}", "bytes_uploaded": stats.bytes_copied,
            "blobs_uploaded": stats.blobs_copied,
            "attestations": [{k: r.get(k) for k in ("artifactType", "digest", "size")} for r in stats.referrers]})
        result.recorded = str(deploy_record.records_path(project))
    return result


def _resolve(repo: Repository, source: Reference, wanted: str | None) -> str:
    if source.digest and wanted and source.digest != wanted:
        raise PromoteRefused(f"{source} names {source.digest}, not --digest {wanted}")
    current = repo.resolve(source.lookup)
    if current is None:
        raise BuildError(f"{source}: no such image in the registry (no such repository, tag or digest)")
    if wanted is not None and current != wanted:
        raise PromoteRefused(f"{source} now points at {current}, not {wanted} (--digest): it was moved since that "
                             "digest was recorded; nothing was copied")
    return current


def _tags(digest: str, dest: Reference, extra: list[str]) -> list[str]:
    tags = [BuiltImage(digest, 0, "", ()).tag]
    for tag in ([dest.tag] if dest.tag else []) + list(extra):
        if not TAG.match(tag):
            raise InputError(f"--tag {tag!r}: a tag is letters, digits, '_', '.' and '-' (at most 128), not starting "
                             "with '.' or '-'")
        if tag not in tags:
            tags.append(tag)
    return tags
