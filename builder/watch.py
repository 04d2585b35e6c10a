"""`airbuild watch`: rebuild (and validate, and optionally load or deploy) on every save.

One process, imports done once, a DAG harness kept running with Airflow imported; file
events come from watchfiles, grouped until the tree is quiet for `STEP_MS`. Events that
arrive during a build are gathered by watchfiles meanwhile and make the next build: never
two at once. A failing build (a broken DAG, a bad astro.yaml) reports and keeps the last
good image; the next save tries again. A first build that fails for a reason no save can fix
(airbuild's installation lacks a program, or a bug of airbuild's) stops the watch with its exit code.
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import watchfiles

from builder.common import crash
from builder.common.errors import AirbuildError, BuildError, SetupError
from builder.common.paths import DOCKERIGNORE_NAME, MANIFEST_NAME, OUTPUT_DIR
from builder.deploy.deploy import DeployOptions, deploy
from builder.engine.build import build
from builder.project import tree
from builder.project.ignore import IgnoreRules
from builder.project.journal import Journal
from builder.validate.memory import ValidationMemory

STEP_MS = 15           # quiet time that ends a burst of writes (an editor's save is one within it)
MAX_BURST_MS = 2000    # a burst never delays a build longer than this
WAKE_MS = 500          # how often the watcher wakes without events (to notice it started)
EDITOR_TEMP = ("4913",)
EDITOR_SUFFIXES = (".swp", ".swx", ".swo", "~", ".tmp")
# Not in any layer, but they shape the build or its validation.
ALWAYS_WATCHED = (MANIFEST_NAME, DOCKERIGNORE_NAME, "airflow_settings.yaml")


@dataclass
class WatchOptions:
    build_options: Callable[[], object]          # fresh BuildOptions for each build
    load: bool = False
    deploy_target: str | None = None
    json_lines: bool = False


@dataclass
class WatchFilter:
    project: Path
    ignore: IgnoreRules = field(init=False)

    def __post_init__(self) -> None:
        self.ignore = IgnoreRules.for_project(self.project)

    def __call__(self, change, path: str) -> bool:
        rel = os.path.relpath(path, self.project)
        name = os.path.basename(rel)
        if rel.startswith(OUTPUT_DIR + os.sep) or rel == OUTPUT_DIR:
            return False
        if name in EDITOR_TEMP or name.endswith(EDITOR_SUFFIXES) or name.startswith((".#", "#")):
            return False
        if rel in ALWAYS_WATCHED:
            if rel == DOCKERIGNORE_NAME:
                self.ignore = IgnoreRules.for_project(self.project)
            return True
        return not self.ignore.ignored(rel.replace(os.sep, "/"))


def watch(project: Path, options: WatchOptions) -> int:
    project = project.resolve()
    def emit(event: dict) -> None:
        _print(event, options.json_lines)

    emit({"event": "start", "project": str(project)})
    shipped: dict[str, str | None] = {"last": None}  # the last good deploy: what a failing save keeps
    journal = _journal()
    with ValidationMemory(serve=True) as memory:  # one harness per environment, kept between saves
        # The first (empty) yield comes once the file watches are in place: the starting image is built
        # then, so no save made after its event can be missed.
        started = False
        try:
            for changes in watchfiles.watch(project, watch_filter=WatchFilter(project), step=STEP_MS,
                                            debounce=MAX_BURST_MS, rust_timeout=WAKE_MS, yield_on_timeout=True,
                                            raise_interrupt=False):
                if started and not changes:
                    continue
                changed = sorted({os.path.relpath(path, project) for _, path in changes})
                if journal is not None:
                    _journal_current(journal, project)
                fatal = _build_once(options, changed, _event_time(project, changed) if changed else time.time(),
                                    emit, shipped, memory, first=not started)
                if fatal is not None:
                    emit({"event": "stop", "exit_code": fatal})
                    return fatal
                started = True
        except KeyboardInterrupt:  # Ctrl-C in the middle of a build is how watch is stopped too: the store is safe
            pass
        finally:
            if journal is not None:
                tree.use_journal(None)
                journal.close()
    emit({"event": "stop"})
    return 0


def _journal() -> Journal | None:
    """The build server's change journal (builder/project/journal.py), here too: a build after a save re-stats
    what changed instead of walking the project (AIRBUILD_JOURNAL=0, or no inotify: it walks)."""
    if os.environ.get("AIRBUILD_JOURNAL", "1") == "0":
        return None
    try:
        journal = Journal()
    except (OSError, AttributeError):
        return None
    tree.use_journal(journal.lookup)
    return journal


def _journal_current(journal: Journal, project: Path) -> None:
    """Every change so far read; a project it does not watch (yet, or no longer: overflowed) watched again,
    walked once for that."""
    journal.refresh()
    if str(project) not in journal.projects:
        journal.watch(str(project))


def _event_time(project: Path, changed: list[str]) -> float:
    """When the newest change was written (its mtime), so latency counts from the save itself."""
    times = []
    for rel in changed:
        try:
            times.append(os.stat(project / rel).st_mtime)
        except FileNotFoundError:
            pass
    return max(times) if times else time.time()


def _build_once(options: WatchOptions, changed: list[str], event_time: float, emit,
                shipped: dict[str, str | None], memory: ValidationMemory, first: bool) -> int | None:
    """Build and report; the exit code to stop with when the first build failed for a reason no save can fix
    (airbuild's installation lacks something, or a bug of airbuild's), else None."""

    build_options = options.build_options()
    build_options.validation_memory = memory
    if options.load:
        build_options.archive = build_options.project.resolve() / OUTPUT_DIR / "watch-image.tar"
    try:
        result = build(build_options)
    except AirbuildError as exc:
        report = getattr(exc, "report", None)
        fatal = first and isinstance(exc, SetupError)
        event = {"event": "error", "changed": changed, "error": exc.render(),
                 "errors": _validation_errors(report.to_json()) if report is not None else [],
                 "latency_s": round(time.time() - event_time, 4), "fatal": fatal}
        if options.deploy_target:
            event["deployed"], event["kept_deploy"] = None, shipped["last"]
        emit(event)
        return exc.exit_code if fatal else None
    except Exception as exc:  # a bug of ours: reported with its log; a later save may not hit it again
        log = crash.write_log(exc)
        event = {"event": "error", "changed": changed, "error": crash.summary(exc), "errors": [],
                 "latency_s": round(time.time() - event_time, 4), "fatal": first, "log": str(log) if log else None,
                 "detail": crash.where(log)}
        if options.deploy_target:
            event["deployed"], event["kept_deploy"] = None, shipped["last"]
        emit(event)
        return crash.EXIT_INTERNAL if first else None
    digest = result.manifest_digest
    latency = round(time.time() - event_time, 4)
    event = {"event": "build", "manifest_digest": digest, "tag": result.tag, "latency_s": latency,
             "changed": changed, "rebuilt_layers": [l.rule for l in result.layers if not l.cached],
             "errors": _validation_errors(result.validation) if result.validation else [],
             "validation": (result.validation or {}).get("status", "off")}
    try:
        if options.load:
            event["loaded"] = _load(result)
        if options.deploy_target:
            event["deployed"] = shipped["last"] = _deploy(build_options, options.deploy_target)
    except AirbuildError as exc:
        event["errors"].append({"file": None, "kind": "ship", "message": exc.render()})
        if options.deploy_target:
            event["deployed"], event["kept_deploy"] = None, shipped["last"]
    emit(event)


def _validation_errors(report: dict) -> list[dict]:
    errors = [{"file": f["file"], "kind": e["kind"], "message": e["message"]}
              for f in report.get("files", []) if not f.get("allowed_to_fail") for e in f["errors"]]
    errors += [{"file": ", ".join(d["files"]), "kind": "duplicate_dag_id", "message": d["dag_id"]}
               for d in report.get("duplicates", [])]
    if report.get("reason") and report.get("status") == "failed":
        errors.append({"file": None, "kind": "environment", "message": report["reason"]})
    return errors


def _load(result) -> str:
    """`docker load` the new image from the archive the build wrote."""
    proc = subprocess.run(["docker", "load", "-i", result.archive], capture_output=True, text=True)
    if proc.returncode != 0:
        raise BuildError(f"docker load failed: {proc.stderr.strip()}")
    return f"{result.image_name}:{result.tag}"


def _deploy(build_options, target: str) -> str:
    # The image the watch just built (same base, engine, build args, secrets, sandbox), validated as every
    # deploy is and never forced: failing DAGs keep the last good deploy. A developer's tree is dirty by
    # nature while watching: only the git check is waived.
    outcome = deploy(DeployOptions(build=dataclasses.replace(build_options, force=False, validate=True),
                                   target=target, allow_dirty=True,
                                   attest=False))  # snapshots of a dirty tree, one per save: not releases
    return outcome.reference


def _print(event: dict, json_lines: bool) -> None:
    if json_lines:
        print(json.dumps(event), flush=True)
        return
    kind = event["event"]
    stamp = time.strftime("%H:%M:%S")
    if kind == "start":
        print(f"[{stamp}] watching {event['project']} (Ctrl-C to stop)", flush=True)
    elif kind == "build":
        rebuilt = ", ".join(event["rebuilt_layers"]) or "nothing"
        state = "DAG errors: " + "; ".join(f"{e['file']}: {e['message']}" for e in event["errors"]) \
            if event["errors"] else f"DAGs {event['validation']}"
        print(f"[{stamp}] {event['tag']} in {event['latency_s'] * 1000:.0f} ms  rebuilt: {rebuilt}  {state}",
              flush=True)
    elif kind == "error" and event.get("fatal"):
        detail = f"\n{event['detail']}" if event.get("detail") else ""
        print(f"[{stamp}] the first build failed and no edit of the project can fix it, so watch stops: "
              f"{event['error']}{detail}", file=sys.stderr, flush=True)
    elif kind == "error":
        detail = f" ({event['detail']})" if event.get("detail") else ""
        print(f"[{stamp}] build failed, keeping the last good image: {event['error']}{detail}", file=sys.stderr,
              flush=True)
    if "kept_deploy" in event:
        kept = event["kept_deploy"] or "none yet"
        print(f"[{stamp}] not deployed; the last good deploy stays: {kept}", file=sys.stderr, flush=True)
    elif kind == "stop":
        code = event.get("exit_code")
        print(f"[{stamp}] stopped" + (f" (exit {code})" if code else ""), flush=True)
