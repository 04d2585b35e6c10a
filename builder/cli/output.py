"""Human-readable output for build, plan and inspect."""

from __future__ import annotations

import json
from typing import Any, Callable



def show(document: dict[str, Any] | list, as_json: bool, table: Callable[[Any], None]) -> None:
    """A command's result: one JSON document on stdout with --json, else its table."""
    if as_json:
        print(json.dumps(document, indent=2))
    else:
        table(document)

def human_size(size: int | None) -> str:
    if size is None:
        return "-"
    value = float(size)
    for unit in ("B", "KB", "MB", "GB"):
        if value < 1000 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    return f"{size} B"


def _layer_table(result: dict[str, Any], planned: bool) -> list[str]:
    rows = []
    for layer in result["layers"]:
        if layer["rule"] == "base" and not planned:
            state = "base"
        elif layer["cached"]:
            state = "remote" if layer.get("source") == "remote" else "cached"
        elif planned and layer["key"] is None:
            state = "unknown"
        elif planned and layer.get("source") == "remote":
            state = "remote"
        else:
            state = "to build" if planned else "built"
        digest = (layer["digest"] or "").removeprefix("sha256:")[:12] or "-"
        why = "" if layer["cached"] else f"  ({layer['reason']})"
        rows.append(f"  {state:<9} {layer['rule']:<24} {human_size(layer['size']):>9}  {digest}{why}")
    return rows


def print_build(result: dict[str, Any]) -> None:
    built = sum(1 for l in result["layers"] if not l["cached"])
    print(f"built {result['image_name']}:{result['tag']} in {result['duration_s']:.2f}s "
          f"({built} layer{'s' if built != 1 else ''} rebuilt)")
    print("\n".join(_layer_table(result, planned=False)))
    print(f"manifest  {result['manifest_digest']}")
    print(f"layout    {result['oci_layout']}")
    if result["archive"]:
        print(f"archive   {result['archive']}")
    if result["lock_changed"]:
        print("astro.lock updated (commit it)")
    validation = result.get("validation")
    if validation is None:
        print(f"DAGs      not validated: parse skipped ({result.get('validation_skipped') or '--no-validate'})")
    elif validation["status"] == "skipped":
        print(f"DAGs      not validated: {validation['reason']}")
    elif validation["reason"]:
        print(f"DAGs      FAILED: {validation['reason']}")
    else:
        errors = sum(1 for f in validation["files"] if f["errors"] and not f["allowed_to_fail"])
        print(f"DAGs      {len(validation['files'])} files, {errors} with errors, "
              f"{validation['imported']} imported (Airflow {validation['airflow_version']})")
    cache = result.get("cache")
    if cache:
        print(f"cache     {cache['repo']} ({cache['mode']}): {cache['hits']} layer(s) fetched, {cache['misses']} not "
              f"there, {cache['published']} written; {human_size(cache['downloaded_bytes'])} down, "
              f"{human_size(cache['uploaded_bytes'])} up" + ("" if cache["reachable"] else "; NOT REACHABLE"))
    engine = result.get("engine")
    if engine:
        print(f"engine    {engine['description'] or 'BuildKit (not reached)'}: {engine['builds']} build(s), "
              f"{engine['instructions']} Dockerfile instruction(s)")
    gc = result.get("gc")
    if gc:
        evicted = sum(kind["count"] for kind in gc["evicted"].values())
        print(f"store     over its limit: {evicted} least recently used entr{'y' if evicted == 1 else 'ies'} "
              f"evicted, {human_size(gc['before_bytes'])} -> {human_size(gc['after_bytes'])}")
    for note in result.get("notes", []):
        print(f"note: {note}")


def print_plan(result: dict[str, Any]) -> None:
    todo = sum(1 for l in result["layers"] if not l["cached"] and l["key"] is not None)
    unknown = sum(1 for l in result["layers"] if not l["cached"] and l["key"] is None)
    print(f"{result['image_name']}: {todo} layer{'s' if todo != 1 else ''} to build"
          + (f", {unknown} whose key a plan cannot know without fetching or building (a build will)"
             if unknown else ""))
    print("\n".join(_layer_table(result, planned=True)))
    for note in result.get("notes", []):
        print(f"note: {note}")


def print_inspect(info: dict[str, Any]) -> None:
    print(f"{info['source']}")
    print(f"  tag       {info['tag']}")
    print(f"  manifest  {info['manifest_digest']}")
    print(f"  config    {info['config_digest']}")
    print(f"  platform  {info['platform']}   created {info['created']}   {human_size(info['total_size'])}")
    print("  layers:")
    for layer in info["layers"]:
        print(f"    {layer['digest'].removeprefix('sha256:')[:12]}  {human_size(layer['size']):>9}  "
              f"{layer['created_by'][:80]}")
    config = info["config"]
    print("  config:")
    for key in ("User", "WorkingDir", "Entrypoint", "Cmd", "Env", "ExposedPorts", "Labels"):
        if key in config:
            print(f"    {key}: {config[key]}")


def print_validation(report: dict[str, Any]) -> None:
    for warning in report.get("warnings", []):
        print(f"warning: {warning}")
    if report["status"] == "skipped" or report["reason"]:
        print(f"DAG validation {report['status']}: {report['reason']}")
        return
    imported = report["imported"]
    where = f" in the {report['sandbox']} sandbox" if report.get("sandbox") not in (None, "none") else \
        " UNCONFINED (--no-sandbox)" if report.get("sandbox") == "none" else ""
    print(f"DAGs: Airflow {report['airflow_version']}, {len(report['files'])} files, {imported} imported{where} "
          f"({len(report['files']) - imported} from cache) in {report['duration_s']:.2f}s")
    for result in report["files"]:
        dags = ", ".join(f"{d['dag_id']} ({d['tasks']})" for d in result["dags"]) or "-"
        state = "ok" if not result["errors"] else ("allowed" if result["allowed_to_fail"] else "ERROR")
        print(f"  {state:<7} {result['file']:<40} {result['duration_s']:6.2f}s  {dags}")
        for error in result["errors"]:
            print(f"          {error['kind']}: {error['message']}")
    for duplicate in report["duplicates"]:
        print(f"  ERROR   dag_id {duplicate['dag_id']} is defined in {', '.join(duplicate['files'])}")
    for case in report.get("astro_tests", []):
        state = {"passed": "ok", "skipped": "skipped"}.get(case["outcome"], "ERROR")
        print(f"  {state:<7} astro test {case['name']}")
        if case["message"] and case["outcome"] != "passed":
            print(f"          {case['message'].splitlines()[0] if case['message'] else ''}")
    print(f"DAG validation {'passed' if report['status'] == 'ok' else 'FAILED'}")


def print_dag_run(run: dict[str, Any]) -> None:
    network = "network on" if run["network"] else "no network"
    print(f"run {run['dag_id']} {run.get('run_id') or ''}: {run['state']} in {run['duration_s']:.2f}s "
          f"(sandbox {run['sandbox']}, {network})")
    if run.get("error"):
        print(f"  error: {run['error']}")
    if run.get("available") is not None:
        print(f"  DAGs found: {', '.join(run['available']) or 'none'}")
    for path, error in (run.get("import_errors") or {}).items():
        print(f"  import error in {path}: {error.strip().splitlines()[-1] if error.strip() else ''}")
    for task in run["tasks"]:
        mapped = f"[{task['map_index']}]" if task.get("map_index", -1) >= 0 else ""
        duration = f"{task['duration_s']:.2f}s" if task.get("duration_s") is not None else "-"
        print(f"  {task['state']:<16} {task['task_id'] + mapped:<40} {duration:>8}")
        if task.get("log_tail"):
            print("    " + task["log_tail"].replace("\n", "\n    "))
    if run["state"] not in ("success",) and not run["tasks"] and run.get("log_tail"):
        print("  log (last lines):\n    " + run["log_tail"].replace("\n", "\n    "))

