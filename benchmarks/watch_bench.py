"""Benchmark `airbuild watch`: save-to-new-digest latency of a one-DAG edit, DAG validation included.

    python3 benchmarks/watch_bench.py [--dags 1000] [--edits 50] [--include-mb 50] [--cold-repeat 5] [--out FILE]

The project is build_bench.py's (N generated DAG files, which are valid Airflow 3 DAGs,
`include/` data, `plugins/`) with `requirements.txt` = `apache-airflow==3.3.2`, on
`scripts/debian-rootfs`, with AIRBUILD_CACHE_DIR at the test suite's store
(~/.cache/airbuild/test-store or $AIRBUILD_TEST_STORE), which already holds that environment.
Prints one JSON object on stdout (progress goes to stderr). See benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import re
import secrets
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import build_bench  # noqa: E402  (the project generator, the edit and the base)
from report import emit, machine  # noqa: E402

REPO = build_bench.REPO
STORE = Path(os.environ.get("AIRBUILD_TEST_STORE", Path.home() / ".cache" / "airbuild" / "test-store"))
REQUIREMENTS = "apache-airflow==3.3.2\n"
EDITED_DAG = build_bench.EDITED_DAG
RECORD_KINDS = ("dag-results", "dag-runs")  # validation records this run adds to the shared store
TARGET_S = 0.300
PAUSE_S = 0.3
RUN_ID = secrets.token_hex(4)  # in every edit: a layer built by an earlier run must not answer this one's edits


def log(message: str) -> None:
    print(f"[watch-bench] {message}", file=sys.stderr, flush=True)


def airbuild_env() -> dict[str, str]:
    return {**os.environ, "AIRBUILD_CACHE_DIR": str(STORE), "PYTHONPATH": str(REPO)}


def checked(command: list[str]) -> tuple[float, subprocess.CompletedProcess]:
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, cwd=REPO, env=airbuild_env())
    elapsed = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command[:4])} ... failed ({done.returncode}):\n"
                           f"{done.stdout[-2000:]}\n{done.stderr[-3000:]}")
    return elapsed, done


def edit_dag(project: Path, counter: int) -> None:
    with open(project / EDITED_DAG, "a") as handle:
        handle.write(f"# watch-bench edit {counter} of run {RUN_ID}\n")


def summary(values: list[float]) -> dict[str, float | int | None]:
    if not values:
        return {"n": 0, "median": None, "p95": None, "min": None, "max": None}
    ordered = sorted(values)
    p95 = ordered[max(0, -(-95 * len(ordered) // 100) - 1)]  # nearest rank
    return {"n": len(values), "median": round(statistics.median(values), 4), "p95": round(p95, 4),
            "min": round(ordered[0], 4), "max": round(ordered[-1], 4)}


# -- the watch process ----------------------------------------------------------


def running(pid: int) -> bool:
    """Alive and not a zombie (an exited sandbox init waits a moment for PID 1 to reap it)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


class Watcher:
    """`airbuild watch --json` in a child process; its events read line by line, stamped on arrival."""

    def __init__(self, project: Path, base: Path, stderr: Path):
        self.stderr_path, self.stderr = stderr, open(stderr, "w")
        self.started = time.perf_counter()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "builder", "watch", str(project), "--base", f"rootfs:{base}", "--json"],
            stdout=subprocess.PIPE, stderr=self.stderr, text=True, cwd=REPO, env=airbuild_env())
        self.events: queue.Queue = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.process.stdout:
            try:
                event = json.loads(line)
            except ValueError:
                continue
            event["_arrived"] = time.perf_counter()
            self.events.put(event)
        self.events.put({"event": "_eof", "_arrived": time.perf_counter()})

    def next(self, timeout: float) -> dict:
        try:
            event = self.events.get(timeout=timeout)
        except queue.Empty:
            raise RuntimeError(f"no watch event within {timeout} s (exit {self.process.poll()}); stderr:\n"
                               f"{self.stderr_path.read_text()[-3000:]}") from None
        if event["event"] == "_eof":
            raise RuntimeError(f"watch ended (exit {self.process.wait()}); stderr:\n"
                               f"{self.stderr_path.read_text()[-3000:]}")
        return event

    def next_build(self, timeout: float) -> dict:
        while True:
            event = self.next(timeout)
            if event["event"] in ("build", "error"):
                return event

    def drain(self) -> list[dict]:
        out = []
        while not self.events.empty():
            out.append(self.events.get())
        return out

    def descendants(self) -> list[int]:
        """Processes below watch (the sandbox and its warm DAG harness), from /proc."""
        parents: dict[int, int] = {}
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                try:
                    stat = (entry / "stat").read_text()
                except OSError:
                    continue
                parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
        found, frontier = [], [self.process.pid]
        while frontier:
            pid = frontier.pop()
            children = [child for child, parent in parents.items() if parent == pid]
            found += children
            frontier += children
        return found

    def stop(self, within_s: float = 10.0) -> dict:
        below = self.descendants()
        started = time.perf_counter()
        self.process.send_signal(signal.SIGINT)
        try:
            code = self.process.wait(timeout=within_s)
        except subprocess.TimeoutExpired:
            code = None
        stop_s = time.perf_counter() - started
        if code is None:
            self.process.kill()
            self.process.wait()
        deadline = time.monotonic() + 3  # the sandbox's processes go with their parent (--die-with-parent)
        while (left := [pid for pid in below if running(pid)]) and time.monotonic() < deadline:
            time.sleep(0.1)
        stop_event = any(e.get("event") == "stop" for e in self.drain())
        for pid in left:  # only processes this run started
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        return {"exit_code": code, "stop_s": round(stop_s, 3), "stopped_within_10s": code is not None,
                "stop_event": stop_event, "processes_below_watch": len(below), "processes_left": len(left)}

    def kill(self) -> None:
        if self.process.poll() is None:
            for pid in self.descendants():
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            self.process.kill()
            self.process.wait()
        self.stderr.close()


def timed_edits(watcher: "Watcher", project: Path, edits: int, first: int, digest: str) -> dict:
    """`edits` one-DAG edits, each waiting for its build event: the events' latencies and checks."""
    latencies, observed, events, extra = [], [], [], 0
    for n in range(first, first + edits):
        time.sleep(PAUSE_S)
        extra += sum(1 for e in watcher.drain() if e["event"] in ("build", "error"))
        edit_dag(project, n)
        written = time.perf_counter()
        event = watcher.next_build(timeout=300)
        observed.append(event["_arrived"] - written)
        latencies.append(event["latency_s"])
        rebuilt = event.get("rebuilt_layers") or []
        good = (event["event"] == "build" and len(rebuilt) == 1 and rebuilt[0].split(":")[0] == "dags"
                and event["validation"] == "ok" and not event["errors"])  # one DAG layer (`dags:K-of-N`)
        new_digest = event.get("manifest_digest")
        events.append({"good": good, "changed": event.get("changed"),
                       "new_digest": new_digest not in (None, digest)})
        digest = new_digest or digest
        if not good:
            shown = {k: v for k, v in event.items() if k != "_arrived"}
            log(f"edit {n}: unexpected event {json.dumps(shown)[:500]}")
        if (n - first + 1) % 10 == 0:
            log(f"edit {n - first + 1}/{edits}: median so far {statistics.median(latencies) * 1000:.0f} ms")
    time.sleep(PAUSE_S)
    extra += sum(1 for e in watcher.drain() if e["event"] in ("build", "error"))

    return {"latencies": latencies, "observed": observed, "events": events, "extra": extra, "digest": digest}


class cpu_hog:
    """A busy process on the last core (the watch is free to use the others) while the block runs."""

    def __enter__(self):
        cores = sorted(os.sched_getaffinity(0))
        code = "import os, sys\nos.sched_setaffinity(0, {%d})\nwhile True:\n    pass\n" % cores[-1]
        self.process = subprocess.Popen([sys.executable, "-c", code])
        time.sleep(0.5)
        return self

    def __exit__(self, *exc):
        self.process.kill()
        self.process.wait()
        return False


def bench_watch(project: Path, base: Path, work: Path, edits: int, hog: bool = False) -> dict:
    watcher = Watcher(project, base, work / "watch.stderr")
    try:
        start = watcher.next(timeout=60)
        assert start["event"] == "start", start
        log(f"watch started; waiting for the first build (validating every DAG file, {project.name})")
        first = watcher.next_build(timeout=3600)
        first_build_s = first["_arrived"] - watcher.started
        if first["event"] != "build" or first["validation"] != "ok":
            raise RuntimeError(f"the first build is not a valid image: {json.dumps(first)[:3000]}")
        log(f"first build after {first_build_s:.1f} s (rebuilt {first['rebuilt_layers']})")

        time.sleep(PAUSE_S)
        watcher.drain()
        edit_dag(project, 0)  # throwaway: the harness's first request after the full run
        warm = watcher.next_build(timeout=300)
        log(f"warm-up edit: {warm['event']} in {warm.get('latency_s')} s")
        digest = warm.get("manifest_digest", first["manifest_digest"])

        quiet = timed_edits(watcher, project, edits, 1, digest)
        digest = quiet["digest"]
        loaded = None
        if hog:
            log("the same edits with a CPU hog on the other core")
            with cpu_hog():
                loaded = timed_edits(watcher, project, edits, edits + 1, digest)

        log("stopping watch with SIGINT")
        stop = watcher.stop()
    finally:
        watcher.kill()

    events = quiet["events"] + (loaded["events"] if loaded else [])
    extra = quiet["extra"] + (loaded["extra"] if loaded else [])
    lat = summary(quiet["latencies"])
    return {
        "first_build_s": round(first_build_s, 3),
        "first_build_latency_s": first["latency_s"],
        "first_build_rebuilt_layers": first["rebuilt_layers"],
        "warmup_edit_latency_s": warm.get("latency_s"),
        "edits": edits,
        "latency_s": lat,
        "observed_latency_s": summary(quiet["observed"]),
        "loaded_other_core": None if loaded is None else {
            "latency_s": summary(loaded["latencies"]), "observed_latency_s": summary(loaded["observed"])},
        "dags_only_and_valid_fraction": round(sum(e["good"] for e in events) / len(events), 4) if events else None,
        "new_digest_every_edit": all(e["new_digest"] for e in events),
        "changed_only_the_edited_file": all(e["changed"] == [EDITED_DAG] for e in events),
        "extra_build_events": extra,
        "median_under_300ms": lat["median"] is not None and lat["median"] < TARGET_S,
        "target_median_100ms_p95_150ms": {
            "quiet": lat["median"] is not None and lat["median"] < 0.100 and lat["p95"] < 0.150,
            "loaded": None if loaded is None else
            summary(loaded["latencies"])["median"] < 0.100 and summary(loaded["latencies"])["p95"] < 0.150},
        "stop": stop,
    }


# -- the same edit without watch --------------------------------------------------


def bench_cold_process(project: Path, base: Path, repeat: int, first_counter: int) -> dict:
    wall, internal, validation, imported, rebuilt = [], [], [], [], []
    command = [sys.executable, "-m", "builder", "build", str(project), "--base", f"rootfs:{base}", "--json"]
    for n in range(repeat):
        log(f"cold process: one-DAG edit + `airbuild build` {n + 1}/{repeat}")
        time.sleep(PAUSE_S)
        edit_dag(project, first_counter + n)
        seconds, done = checked(command)
        result = json.loads(done.stdout)
        wall.append(seconds)
        internal.append(result["duration_s"])
        report = result["validation"] or {}
        validation.append(report.get("duration_s", 0.0))
        imported.append(report.get("imported"))
        rebuilt.append([layer["rule"] for layer in result["layers"] if not layer["cached"]])
    return {
        "repeat": repeat,
        "wall_s": summary(wall),
        "internal_s": summary(internal),
        "validation_s": summary(validation),
        "files_imported": imported,
        "dags_only_every_build": all(len(r) == 1 and r[0].split(":")[0] == "dags" for r in rebuilt),
    }


# -- setup and clean-up -----------------------------------------------------------


def store_records() -> set[Path]:
    return {path for kind in RECORD_KINDS if (STORE / kind).is_dir() for path in (STORE / kind).iterdir()}


def generated_record(path: Path) -> bool:
    """A validation record of the generated DAGs (not another user's of the shared store)."""
    try:
        record = json.loads(path.read_bytes())
    except (OSError, ValueError):
        return False
    if path.parent.name == "dag-runs":
        results = record.get("results") or {}
        return bool(results) and all(re.fullmatch(r"team_\d+/dag_\d+\.py", rel) for rel in results)
    return [re.fullmatch(r"dag_\d+", dag.get("dag_id", "")) is not None for dag in record.get("dags", [])] == [True]


def store_tmp() -> set[str]:
    return {path.name for path in (STORE / "tmp").iterdir()} if (STORE / "tmp").is_dir() else set()


def setup_project(project: Path, dags: int, include_mb: float, base: Path) -> int:
    files = build_bench.generate_project(project, dags, include_mb)
    (project / "requirements.txt").write_text(REQUIREMENTS)
    log("pinning the project (`airbuild lock`, not timed)")
    checked([sys.executable, "-m", "builder", "lock", str(project), "--base", f"rootfs:{base}", "--json"])
    return files


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="airbuild watch: one-DAG edit latency, validation included")
    parser.add_argument("--dags", type=int, default=1000, help="number of DAG files (default 1000)")
    parser.add_argument("--edits", type=int, default=50, help="timed edits under watch (default 50)")
    parser.add_argument("--include-mb", type=float, default=50.0, help="MiB of data under include/ (default 50)")
    parser.add_argument("--cold-repeat", type=int, default=5, help="edit + `airbuild build` runs (default 5)")
    parser.add_argument("--hog", action="store_true",
                        help="repeat the edits with a CPU hog pinned to the last core (the loaded figure)")
    parser.add_argument("--out", type=Path, help="also write the JSON to this file")
    args = parser.parse_args()
    if args.dags < 1 or args.edits < 1 or args.cold_repeat < 1 or args.include_mb < 0:
        parser.error("--dags, --edits and --cold-repeat must be at least 1, --include-mb at least 0")
    return args


def main() -> int:
    args = parse_args()
    if shutil.which("bwrap") is None:
        log("bwrap is not on PATH: DAG validation needs it")
        return 2
    base = build_bench.debian_rootfs()
    records_before = store_records()
    tmp_before = store_tmp()
    load_before = os.getloadavg()[0]
    try:
        with tempfile.TemporaryDirectory(prefix="airbuild-watch-bench-") as tmp:
            work = Path(tmp)
            project = work / "project"
            log(f"generating {args.dags} DAGs and {args.include_mb} MiB of include/ data in {work}")
            files = setup_project(project, args.dags, args.include_mb, base)
            watch_numbers = bench_watch(project, base, work, args.edits, args.hog)
            cold_numbers = bench_cold_process(project, base, args.cold_repeat, 2 * args.edits + 1)
            leftovers = sorted(store_tmp() - tmp_before)
    finally:
        added = [path for path in store_records() - records_before if generated_record(path)]
        for path in added:  # this run's validation records (keyed by its include/ mtimes: of no later use)
            path.unlink(missing_ok=True)
        log(f"removed {len(added)} validation records this run added to {STORE}")

    watch_median = watch_numbers["latency_s"]["median"]
    report = {
        "project": {"dags": args.dags, "include_mb": args.include_mb, "files": files,
                    "requirements": REQUIREMENTS.strip(), "edited": EDITED_DAG, "run_id": RUN_ID,
                    "store": str(STORE), "base": base.name},
        "watch": watch_numbers,
        "cold_process_build": cold_numbers,
        "median_under_300ms": watch_numbers["median_under_300ms"],
        "ratio_cold_process_over_watch":
            round(cold_numbers["wall_s"]["median"] / watch_median, 1) if watch_median else None,
        "store_tmp_entries_after": leftovers,
        "machine": machine(load_before),
    }
    emit(report, args.out)
    stop = watch_numbers["stop"]
    ok = (watch_numbers["dags_only_and_valid_fraction"] == 1.0 and stop["stopped_within_10s"]
          and stop["processes_left"] == 0 and cold_numbers["dags_only_every_build"])
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
