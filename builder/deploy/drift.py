"""`airbuild history --verify`: does every tag the deploy records name still point where it was pushed?

A tag is expected at the digest of the last recorded deploy that pushed it (a `latest` that each
deploy moves is expected at the newest one). Each is looked up in its registry (a HEAD, or the
manifest's bytes hashed when the registry states no digest): `ok`, `moved` (it points elsewhere),
`deleted` (the registry no longer has it), or `error` (the registry could not be asked).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

from builder.common.errors import AirbuildError
from builder.common.progress import Progress
from builder.deploy import records as deploy_record
from builder.engine.build import insecure_registries
from builder.project.manifest import load_manifest
from builder.registry.connect import open_client
from builder.registry.pull import Puller
from builder.registry.reference import parse_reference, parse_repository
from builder.store.store import Store
from builder.common.paths import default_store_dir

STATUSES = ("ok", "moved", "deleted", "error")


@dataclass
class TagCheck:
    repository: str            # host/repo
    tag: str
    recorded: str              # the digest the last deploy that pushed the tag recorded
    current: str | None        # where it points now (None: deleted, or not known after an error)
    status: str                # ok | moved | deleted | error
    target: str
    time: str                  # of that deploy
    error: str | None = None

    @property
    def reference(self) -> str:
        return f"{self.repository}:{self.tag}"

    def to_json(self) -> dict:
        return {**asdict(self), "reference": self.reference}


def expected_tags(records: list[dict]) -> list[TagCheck]:
    """(repository, tag) -> the last record that pushed it, in the order tags were first pushed."""
    found: dict[tuple[str, str], TagCheck] = {}
    for record in records:
        repository, digest = record.get("registry"), record.get("digest")
        if not repository or not digest:
            continue  # a deploy that pushed no image (Astro's DAG-only)
        for tag in record.get("tags") or []:
            found[(repository, tag)] = TagCheck(repository, tag, digest, None, "unchecked", record.get("target", ""),
                                                record.get("time", ""))
    return list(found.values())


def check_tags(project: Path, target: str | None, ca_bundle: Path | None = None,
               progress: Progress | None = None) -> list[TagCheck]:
    checks = expected_tags(deploy_record.read(project, target))
    insecure = _insecure(project)
    by_registry: dict[str, list[TagCheck]] = {}
    for check in checks:
        by_registry.setdefault(parse_repository(check.repository).registry, []).append(check)
    store = Store(default_store_dir())
    try:
        for registry, group in by_registry.items():
            with open_client(registry, insecure=registry in insecure, ca_bundle=ca_bundle,
                             env_registry=registry) as client:
                puller = Puller(client, store, what="tag")
                for check in group:
                    if progress is not None:
                        progress.step(f"looking up {check.reference}")
                    _check(puller, check)
    finally:
        store.close()
    return checks


def _check(puller: Puller, check: TagCheck) -> None:
    try:
        check.current = puller.current_digest(parse_reference(check.reference))
    except AirbuildError as exc:
        check.status, check.error = "error", exc.render()
        return
    check.status = "deleted" if check.current is None else "ok" if check.current == check.recorded else "moved"


def _insecure(project: Path) -> frozenset[str]:
    """Registries astro.yaml's targets mark `insecure: true` (plain HTTP allowed, as for their deploys)."""
    try:
        manifest, _ = load_manifest(project)
    except AirbuildError:
        return frozenset()
    return insecure_registries(manifest)
