"""`airbuild cache du | gc | verify`: what the local store holds, evicting what was least recently used, checking it."""

from __future__ import annotations

import json
import sys

from builder.cli.commands.options import EXIT_FAILED, EXIT_OK
from builder.cli.output import human_size
from builder.common.errors import InputError
from builder.common.paths import default_store_dir
from builder.layers.env_check import check_environments
from builder.layers.unpack import chain_id
from builder.store import gc, verify
from builder.store.entries import ENVIRONMENTS, usage
from builder.store.limits import Limits, configured
from builder.store.store import Store
from builder.store.sweep import sweep_all

NO_GC = Limits()  # what the store's own close() applies after these commands: nothing more


def cmd_cache(args) -> int:
    return {"du": _du, "gc": _gc, "verify": _verify}[args.cache_command](args)


def _du(args) -> int:
    store = Store(default_store_dir())
    try:
        kinds = usage(store.root)
    finally:
        store.close(NO_GC)
    total = sum(k["bytes"] for k in kinds.values())
    if args.json:
        print(json.dumps({"store": str(store.root), "total_bytes": total, "kinds": kinds}, indent=2))
        return EXIT_OK
    print(f"store {store.root}")
    for kind, counted in kinds.items():
        print(f"  {kind:<22} {counted['count']:>7}  {human_size(counted['bytes']):>10}")
    print(f"  {'total':<22} {sum(k['count'] for k in kinds.values()):>7}  {human_size(total):>10}")
    return EXIT_OK


def _gc(args) -> int:
    limits = Limits(args.max_size, args.keep_days) if args.max_size is not None or args.keep_days is not None \
        else configured()
    if not limits.any:
        raise InputError("cache gc: give --max-size SIZE and/or --keep-days N (or set AIRBUILD_CACHE_MAX_SIZE, or "
                         "max_size in the [cache] section of ~/.config/airbuild/config.toml)")

    def waiting() -> None:
        print("airbuild: waiting for the builds using the store to finish (gc holds it alone)", file=sys.stderr,
              flush=True)

    store = Store(default_store_dir(), exclusive=not args.dry_run, on_wait=waiting)
    try:
        report = gc.collect(store.root, limits, dry_run=args.dry_run)
    finally:
        store.close(NO_GC)
    if args.json:
        print(json.dumps({"store": str(store.root), **report.to_json()}, indent=2))
        return EXIT_OK
    verb = "would evict" if args.dry_run else "evicted"
    print(f"store {store.root}: {human_size(report.before)} -> {human_size(report.after)}"
          f"{' (dry run)' if args.dry_run else ''}")
    for kind, counted in report.evicted.items():
        print(f"  {verb} {counted['count']:>6} {kind:<22} {human_size(counted['bytes']):>10}")
    if not report.evicted:
        print("  nothing to evict")
    return EXIT_OK


def _verify(args) -> int:
    store = Store(default_store_dir())
    shown = {"last": -1}

    def progress(done: int, total: int) -> None:
        percent = done * 100 // max(total, 1)
        if sys.stderr.isatty() and not args.json and percent != shown["last"]:
            shown["last"] = percent
            print(f"\rverifying {done}/{total} entries ({percent}%)", end="", file=sys.stderr, flush=True)

    try:
        temps = sweep_all(store.root)
        report = verify.verify(store.root, progress)
        report.temps_removed = temps
        shown["last"] = -1
        checked, damaged = check_environments(store, chain_id, progress)
        if checked:
            report.checked[ENVIRONMENTS] = checked
        report.corrupt += [verify.Corrupt(d.path, ENVIRONMENTS, d.reason, None) for d in damaged]
    finally:
        store.close(NO_GC)
    if shown["last"] >= 0:
        print(file=sys.stderr)
    if args.json:
        print(json.dumps({"store": str(store.root), **report.to_json()}, indent=2))
    else:
        checked = ", ".join(f"{n} {kind}" for kind, n in report.checked.items()) or "nothing"
        print(f"store {store.root}: checked {checked} ({human_size(report.bytes_hashed)} hashed)")
        for bad in report.corrupt:
            where = f"moved to {bad.quarantined}" if bad.quarantined else "removed (unpacked again when next needed)"
            print(f"  CORRUPT {bad.path}: {bad.reason}; {where}")
        if not report.corrupt:
            print("  all entries are intact")
    return EXIT_FAILED if report.corrupt else EXIT_OK
