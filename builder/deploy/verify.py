"""`airbuild verify`: rebuild the commit exactly as astro.lock pins it, in a fresh store, and compare.

The rebuild runs on a checkout of the commit (builder.deploy.checkout) in a store of its own under
the machine's store's `tmp/` (removed afterwards, and by the next store opened after a crash), with
no shared cache: no layer built or fetched before can stand in for one built now. Only pinned
inputs are taken from the machine's store, each checked against its sha256 first: the lock's
`.deb`s and wheels, and the blobs of a registry base the lock pins by digest. The DAGs are not
imported (validation does not change the image).

Identical manifests: verified. Otherwise the first layer whose diff_id differs is named by the
rule that made it, and its entries compared (builder.layers.diff); with the same layers, the
config's fields that differ.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import time
from dataclasses import dataclass, field
from pathlib import Path

from builder.attest import IN_TOTO_MEDIA_TYPE
from builder.attest.dsse import SignatureError, load_public_key
from builder.attest.provenance import verify_provenance
from builder.common.errors import InputError
from builder.common.paths import default_store_dir
from builder.deploy.checkout import checkout, outside_locations
from builder.deploy.gates import DeployRefused, git_state, uncommitted
from builder.deploy.reference_image import ReferenceImage, open_reference
from builder.engine.build import BuildOptions, BuildResult, build
from builder.layers.diff import PathDifference, diff_layers
from builder.oci.descriptors import Platform
from builder.project.lock import Lock
from builder.project.manifest import load_manifest
from builder.store.store import LayerRecord, Store

PATHS_SHOWN = 50


@dataclass
class VerifyOptions:
    build: BuildOptions        # the project, and what shapes the image (--base, build args, secrets, backend)
    reference: str             # REF: a registry reference, an OCI layout or an image tarball
    force: bool = False        # verify a dirty working tree as it is
    insecure: bool = False
    ca_bundle: Path | None = None
    key: Path | None = None    # check REF's signed provenance against this public key


@dataclass
class LayerSide:
    diff_id: str
    digest: str
    created_by: str


@dataclass
class LayerDifference:
    index: int                           # 0-based, base layers first
    rule: str                            # the rule that made the layer ("base": the base image's)
    rebuilt: LayerSide | None            # None: the image has no layer there
    reference: LayerSide | None
    paths: list[PathDifference]          # the first PATHS_SHOWN, by path
    paths_total: int

    def to_json(self) -> dict:
        out = dataclasses.asdict(self)
        out["paths"] = [p.to_json() for p in self.paths]
        return out


@dataclass
class VerifyResult:
    verified: bool
    reference: str
    reference_digest: str
    rebuilt_digest: str
    source: str                          # "commit <sha>" or "the working tree"
    git_commit: str | None
    layers: int                          # in the rebuilt image
    first_difference: LayerDifference | None = None
    also_differing: list[str] = field(default_factory=list)   # rules of the other layers that differ
    config_differences: list[dict] = field(default_factory=list)  # {field, rebuilt, reference}
    notes: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    seeded: int = 0                      # pinned blobs taken from the machine's store, checked
    duration_s: float = 0.0
    provenance: dict | None = None       # with --key: {key, checked, referrer_count, error}

    def to_json(self) -> dict:
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        out["first_difference"] = self.first_difference.to_json() if self.first_difference else None
        return out


def verify(options: VerifyOptions) -> VerifyResult:
    started = time.monotonic()
    project = options.build.project.resolve()
    progress = options.build.progress
    warnings: list[str] = []
    git = git_state(project)
    if git.dirty:
        if not options.force:
            raise DeployRefused(f"{uncommitted(git.dirty)}; verify rebuilds the commit, so commit them first, or "
                                "verify the working tree as it is with --force")
        warnings.append(uncommitted(git.dirty) + " (the working tree was verified, with --force)")
    manifest, _ = load_manifest(project)

    machine = Store(default_store_dir())
    held = machine.work_dir("verify")  # locked while verify runs; swept if it dies
    work = held.path
    try:
        commit = git.commit if not git.dirty else None
        progress.step(f"checking out {'the working tree' if commit is None else 'commit ' + commit[:12]}")
        tree = checkout(project, work, commit, outside_locations(manifest.base, options.build.base))
        platform, lock = _platform_and_lock(tree.project, tree.source, project)
        store = Store(work / "store")
        try:
            seeded = _seed(store, machine, lock)
            progress.step(f"reading {options.reference}")
            with open_reference(options.reference, store, platform, options.insecure, options.ca_bundle) as ref:
                progress.step(f"rebuilding {tree.source} as astro.lock pins it, in a fresh store")
                result = build(dataclasses.replace(
                    options.build, project=tree.project, locked=True, validate=False,
                    validation_skipped="verify compares images; it does not import DAGs", force=False,
                    oci_dir=options.build.oci_dir or work / "image", archive=None, store_dir=store.root,
                    shared_cache=False, scanned=None))
                outcome = _compare(store, result, ref, progress)
                if options.key is not None:
                    outcome.provenance = _check_provenance(ref, options.key)
                    outcome.verified = outcome.verified and outcome.provenance["checked"]
        finally:
            store.close()
    finally:
        held.release()
        machine.close()
    outcome.source, outcome.git_commit, outcome.seeded = tree.source, git.commit, seeded
    outcome.warnings = warnings + outcome.warnings
    outcome.duration_s = round(time.monotonic() - started, 4)
    return outcome


def _check_provenance(ref: ReferenceImage, key: Path) -> dict:
    """Whether one of REF's signed provenance referrers checks out against `key` and is about REF's digest."""
    load_public_key(key)  # an unreadable key is the user's error (exit 2), whatever is attached
    if ref.referrer_documents is None:
        raise InputError(f"--key checks the provenance attached to an image in a registry; {ref.name} is a file")
    envelopes = ref.referrer_documents(IN_TOTO_MEDIA_TYPE)
    errors = []
    for envelope in envelopes:
        try:
            verify_provenance(envelope, key, ref.digest)
            return {"key": str(key), "checked": True, "referrer_count": len(envelopes), "error": None}
        except (SignatureError, InputError) as exc:  # InputError: not an envelope (provenance deployed unsigned)
            errors.append(exc.message)
    error = "; ".join(errors) if errors else f"{ref.name} has no provenance attached (deploy attaches it)"
    return {"key": str(key), "checked": False, "referrer_count": len(envelopes), "error": error}


def _platform_and_lock(project: Path, source: str, original: Path) -> tuple[Platform, Lock]:
    manifest, _ = load_manifest(project)
    lock = Lock.read(project / manifest.lockfile)
    if lock is None:
        uncommitted = (original / manifest.lockfile).is_file()
        raise InputError(f"{source} has no {manifest.lockfile}: verify rebuilds exactly what the lock pins; "
                         + (f"the working tree has one, not committed (is it in .gitignore?): `git add -f "
                            f"{manifest.lockfile}` and commit it" if uncommitted else
                            "run `airbuild lock` (or a build) and commit the lock"))
    return Platform.parse(manifest.platform), lock


def _seed(store: Store, machine: Store, lock: Lock) -> int:
    """The pinned inputs the machine's store already holds, checked and linked in: the lock's files, and a
    registry base's manifest (index), config and layers when the lock pins it by digest."""
    count = sum(store.adopt(machine.blob_path(digest), digest, size) for digest, size in lock.pinned_files()
                if machine.has_blob(digest, size))
    pending = [(lock.base.digest, None)] if lock.base.source.startswith("image:") else []
    while pending:
        digest, size = pending.pop()
        if not machine.has_blob(digest, size) or not store.adopt(
                machine.blob_path(digest), digest, size or machine.blob_path(digest).stat().st_size):
            continue
        count += 1
        try:
            document = json.loads(store.read_blob(digest)) if (size or 0) < (4 << 20) else {}
        except ValueError:
            continue  # a layer, not a manifest
        if isinstance(document, dict):
            children = [*document.get("manifests", []), document.get("config"), *document.get("layers", [])]
            pending.extend((c["digest"], c.get("size")) for c in children if isinstance(c, dict) and "digest" in c)
    return count


# -- the comparison ---------------------------------------------------------------------------------

def _compare(store: Store, result: BuildResult, ref: ReferenceImage, progress) -> VerifyResult:
    rebuilt_digest = result.manifest_digest if ref.digest_of == "manifest" else result.config_digest
    outcome = VerifyResult(rebuilt_digest == ref.digest, ref.name, ref.digest, result.manifest_digest, "", None,
                           len(result.layers))
    if outcome.verified:
        return outcome
    config = json.loads(store.read_blob(result.config_digest))
    ours = _layers(store, result, config)
    theirs = _sides(ref.config, ref.layers)
    differing = [i for i in range(max(len(ours), len(theirs)))
                 if i >= len(ours) or i >= len(theirs) or ours[i][0].diff_id != theirs[i][0].diff_id]
    rules = [layer.rule for layer in result.layers]

    def name(index: int) -> str:
        return rules[index] if index < len(rules) else _rule_of(theirs[index][1])

    if differing:
        index = differing[0]
        rebuilt = ours[index] if index < len(ours) else None
        reference = theirs[index] if index < len(theirs) else None
        if reference is not None:
            progress.step(f"fetching layer {index + 1} of {ref.name} to compare its files")
            ref.fetch(reference[0])
        progress.step(f"comparing layer {index + 1} ({name(index)})")
        diff = diff_layers(store, rebuilt[0] if rebuilt else None, reference[0] if reference else None, PATHS_SHOWN)
        outcome.first_difference = LayerDifference(index, name(index), _side(rebuilt), _side(reference),
                                                    list(diff.paths), diff.total)
        outcome.also_differing = [name(i) for i in differing[1:]]
    else:
        outcome.config_differences = _config_differences(config, ref.config)
        if not outcome.config_differences:
            compressed = [rules[i] for i in range(len(ours)) if ours[i][0].digest != theirs[i][0].digest]
            outcome.notes.append(
                f"the same files and config, but layer(s) {', '.join(compressed)} are compressed differently"
                if compressed else "the same layers and config, but the manifests differ (media types, annotations "
                                   "or formatting)")
    epoch = _epoch(ref.config.get("created"))
    if epoch is not None and ref.config.get("created") != config.get("created"):
        outcome.notes.append(f"{ref.name} was built with SOURCE_DATE_EPOCH={epoch} (its config's `created`); "
                             f"verify with SOURCE_DATE_EPOCH={epoch} set")
    return outcome


def _layers(store: Store, result: BuildResult, config: dict) -> list[tuple[LayerRecord, str]]:
    manifest = json.loads(store.read_blob(result.manifest_digest))
    records = tuple(LayerRecord(diff_id, layer["digest"], layer["size"], layer["mediaType"])
                    for diff_id, layer in zip(config["rootfs"]["diff_ids"], manifest["layers"]))
    return _sides(config, records)


def _sides(config: dict, layers: tuple[LayerRecord, ...]) -> list[tuple[LayerRecord, str]]:
    """Each layer with the `created_by` of its history entry (when the history has one per layer)."""
    history = [h for h in config.get("history", []) if not h.get("empty_layer")]
    if len(history) != len(layers):
        history = [{}] * len(layers)
    return [(layer, entry.get("created_by", "")) for layer, entry in zip(layers, history)]


def _side(layer: tuple[LayerRecord, str] | None) -> LayerSide | None:
    return None if layer is None else LayerSide(layer[0].diff_id, layer[0].digest, layer[1])


def _rule_of(created_by: str) -> str:
    """The rule an airbuild history entry names (`airbuild RULE: ...`), else the entry itself."""
    if created_by.startswith("airbuild ") and ":" in created_by:
        return created_by.removeprefix("airbuild ").split(":", 1)[0]
    return created_by or "unknown"


def _config_differences(ours: dict, theirs: dict, prefix: str = "") -> list[dict]:
    """The image config's fields that differ (the runtime `config` field by field)."""
    found = []
    for key in sorted(ours.keys() | theirs.keys()):
        mine, other = ours.get(key), theirs.get(key)
        if key == "config" and not prefix and isinstance(mine, dict) and isinstance(other, dict):
            found.extend(_config_differences(mine, other, "config."))
        elif mine != other:
            found.append({"field": prefix + key, "rebuilt": _short(mine), "reference": _short(other)})
    return found


def _short(value) -> str:
    text = json.dumps(value, sort_keys=True)
    return text if len(text) <= 300 else text[:297] + "..."


def _epoch(created: str | None) -> int | None:
    try:
        moment = datetime.datetime.strptime(created or "", "%Y-%m-%dT%H:%M:%SZ")
    except ValueError:
        return None
    return int(moment.replace(tzinfo=datetime.timezone.utc).timestamp())
