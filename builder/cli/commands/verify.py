"""`airbuild verify` (is the shipped image what the commit builds?) and `history --verify` (has a tag moved?)."""

from __future__ import annotations

import json
import re

from builder.cli.commands.options import EXIT_FAILED, EXIT_OK, build_options
from builder.common.progress import Progress
from builder.deploy.drift import STATUSES, TagCheck, check_tags
from builder.deploy.verify import VerifyOptions, VerifyResult, verify

DIGEST = re.compile(r"sha256:[0-9a-f]{64}")


def cmd_verify(args) -> int:
    result = verify(VerifyOptions(build=build_options(args), reference=args.reference, force=args.force,
                                  insecure=args.insecure, ca_bundle=args.ca_bundle, key=args.key))
    if args.json:
        print(json.dumps(result.to_json(), indent=2))
    else:
        print_verify(result)
    return EXIT_OK if result.verified else EXIT_FAILED


def print_verify(result: VerifyResult) -> None:
    for warning in result.warnings:
        print(f"warning: {warning}")
    if result.provenance is not None:
        if result.provenance["checked"]:
            print(f"provenance signed by {result.provenance['key']} checks out for {result.reference_digest}")
        else:
            print(f"PROVENANCE NOT VERIFIED with {result.provenance['key']}: {result.provenance['error']}")
    if result.verified:
        print(f"verified {result.reference} {result.reference_digest}: {result.source} builds it bit for bit "
              f"({result.layers} layers, in {result.duration_s:.2f}s)")
        return
    print(f"NOT VERIFIED: {result.reference} is {result.reference_digest}, but {result.source} builds "
          f"{result.rebuilt_digest}")
    layer = result.first_difference
    if layer is not None:
        made_by = (layer.rebuilt or layer.reference).created_by
        print(f"first differing layer: {layer.index + 1}, rule `{layer.rule}`" + (f" ({made_by})" if made_by else ""))
        if layer.rebuilt is None or layer.reference is None:
            print(f"  only {'the rebuilt image' if layer.reference is None else result.reference} has this layer")
        print(f"  {layer.paths_total} path(s) differ" + (f", the first {len(layer.paths)}:" if
                                                         layer.paths_total > len(layer.paths) else ":"))
        width = min(max((len(p.path) for p in layer.paths), default=0), 60)
        for difference in layer.paths:
            described = "; ".join(_change(change) for change in difference.changes)
            print(f"    {difference.path:<{width}}  {described}")
        if result.also_differing:
            print(f"  layers above it that differ too: {', '.join(result.also_differing)}")
    for difference in result.config_differences:
        print(f"config {difference['field']}: rebuilt {difference['rebuilt']}, {result.reference} "
              f"{difference['reference']}")
    for note in result.notes:
        print(f"note: {note}")


def _change(change) -> str:
    if change.what == "presence":
        return (f"only in the rebuilt image ({change.rebuilt})" if change.reference == "absent"
                else f"only in the reference ({change.reference})")
    return f"{change.what}: {_short(change.rebuilt)} rebuilt, {_short(change.reference)} in the reference"


def _short(text: str) -> str:
    """Digests cut to 12 hex digits, as `docker images` shows them (--json has them whole)."""
    return DIGEST.sub(lambda m: m.group(0)[:19], text)


def cmd_history_verify(args) -> int:
    checks = check_tags(args.project.resolve(), args.target, args.ca_bundle,
                        Progress(None if not args.json else False))
    bad = [c for c in checks if c.status != "ok"]
    if args.json:
        counts = {status: sum(1 for c in checks if c.status == status) for status in STATUSES}
        print(json.dumps({"checked": len(checks), **counts, "tags": [c.to_json() for c in checks]}, indent=2))
    else:
        print_drift(checks)
    return EXIT_FAILED if bad else EXIT_OK


def print_drift(checks: list[TagCheck]) -> None:
    if not checks:
        print("no tags recorded: nothing to verify")
        return
    for check in checks:
        if check.status == "ok":
            print(f"ok       {check.reference}  {check.recorded}")
        elif check.status == "moved":
            print(f"MOVED    {check.reference}: recorded {check.recorded} (deploy {check.time}, {check.target}), "
                  f"now {check.current}")
        elif check.status == "deleted":
            print(f"DELETED  {check.reference}: recorded {check.recorded} (deploy {check.time}, {check.target}), "
                  "no longer in the registry")
        else:
            print(f"ERROR    {check.reference}: recorded {check.recorded}; cannot look it up: {check.error}")
    bad = sum(1 for c in checks if c.status != "ok")
    print(f"{len(checks)} tag(s) checked, {bad} moved, deleted or not checkable" if bad
          else f"{len(checks)} tag(s) checked: each points at its recorded digest")
